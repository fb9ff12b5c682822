"""A run folder: the one layout `aql train`, `aql finetune` and `aql make-dataset`'s behaviour run share.

    RUN/SETTINGS.json                 what the run was asked (train.json, finetune.json, ...)
    RUN/checkpoints/step-NNNNNNNNN/   learner, optimisers, preprocessing and the trainer's own state (RNG
                                      streams, counters) at that step
    RUN/latest.json                   the newest complete checkpoint: {"checkpoint": ..., "step": ...}
    RUN/metrics.csv, eval.csv, ...    one table per `RunFolder.table`; TensorBoard events in RUN/tensorboard/
    RUN/NAME.npz                      arrays the trainer keeps beside its checkpoints (a replay buffer)

Every file is written whole and moved into place (`os.replace`), and `latest.json` moves last, so an
interrupted run resumes from a consistent checkpoint; tables are cut back to the step resumed from, so rows
written after that checkpoint are written again, not twice. A folder holding a run is never overwritten unless
the caller resumes it, and never by two processes at once: `FolderLock` (RUN/.lock) refuses a second run, or a
`--resume`, while the first is still going; the operating system drops the lock when its process ends, even
on `kill -9`, so there is never a stale lock to delete.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from aql_agent.errors import AqlError


class MetricLog:
    """A CSV table (and optionally TensorBoard): one row per step, columns fixed by the first row."""

    def __init__(self, path: str, tensorboard_dir: str | None, resume_step: int):
        self.path, self.fields = path, None
        if resume_step and os.path.exists(path):  # drop rows written after the checkpoint we resume from
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
            self.fields = list(rows[0]) if rows else None
            self._rewrite(rows)
        elif os.path.exists(path):
            os.remove(path)
        self.writer = None
        if tensorboard_dir is not None:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(tensorboard_dir, purge_step=resume_step or None)

    def _rewrite(self, rows: list[dict]) -> None:
        with open(self.path, "w", newline="") as f:
            if self.fields:
                writer = csv.DictWriter(f, self.fields)
                writer.writeheader()
                writer.writerows(rows)

    def write(self, step: int, values: Mapping[str, float], prefix: str = "train") -> None:
        row = {"step": step, **{k: f"{v:.6g}" for k, v in values.items()}}
        new = self.fields is None
        if new:
            self.fields = list(row)
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, self.fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(f"{prefix}/{key}", value, step)

    def scalar(self, key: str, value: float, step: int) -> None:
        """One extra TensorBoard scalar (evaluation figures beside the training curves)."""
        if self.writer is not None:
            self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class FolderLock:
    """An exclusive lock on a folder for as long as one process works in it (`flock` on POSIX, `msvcrt`
    on Windows). Taken before anything in the folder is read or written; released by `release` or when the
    process ends, however it ends."""

    FILE = ".lock"

    def __init__(self, folder: str, what: str = "a run"):
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, self.FILE)
        self.file = open(path, "a+")
        try:
            _lock_exclusively(self.file)
        except OSError:
            self.file.seek(0)
            holder = self.file.read().strip() or "unknown"
            self.file.close()
            raise AqlError(f"{folder} is in use by another process (pid {holder}) working on {what}: wait for it to "
                           "finish (or stop it), or pick another --out") from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(str(os.getpid()))
        self.file.flush()

    def release(self) -> None:
        if not self.file.closed:
            self.file.close()  # closing the descriptor drops the lock


def _lock_exclusively(file: Any) -> None:
    """Raise OSError when another process holds the lock; never wait."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        file.seek(0)
        msvcrt.locking(file.fileno(), msvcrt.LK_NBLCK, 1)
        return
    fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


class RunFolder:
    """One run's folder (see the module docstring), locked against other processes until `close`.
    `resume=False` refuses a folder that already holds a run; `resume=True` continues from its latest
    checkpoint (or starts fresh when there is none yet)."""

    def __init__(self, path: str, resume: bool, what: str = "a run"):
        self.path = os.fspath(path)
        self.lock = FolderLock(self.path, what)
        try:
            latest = self.latest()
            if latest is not None and not resume:
                raise AqlError(f"{self.path} already holds {what}: pass --resume to continue it, or pick a new --out")
        except BaseException:
            self.lock.release()
            raise
        self.resumed_from = latest if resume else None
        self.tables: list[MetricLog] = []

    @property
    def start_step(self) -> int:
        return 0 if self.resumed_from is None else self.resumed_from[1]

    def latest(self) -> tuple[str, int] | None:
        """(checkpoint folder, step) named by latest.json, or None; a hand-edited one is a clear error."""
        from aql_agent.checkpoint import read_latest

        return read_latest(self.path)

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def write_json(self, name: str, record: Mapping[str, Any]) -> None:
        """Write RUN/NAME whole (settings, cards), replacing the old one only once complete."""
        staging = self.file(name + ".tmp")
        with open(staging, "w") as f:
            json.dump(record, f, indent=2, default=str)
        os.replace(staging, self.file(name))

    def save_arrays(self, name: str, **arrays: np.ndarray) -> None:
        """RUN/NAME (.npz, compressed), replaced whole: what a checkpoint's trainer state refers to."""
        staging = self.file(name + ".tmp")
        with open(staging, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(staging, self.file(name))

    def load_arrays(self, name: str) -> dict[str, np.ndarray]:
        path = self.file(name)
        if not os.path.exists(path):
            raise AqlError(f"cannot resume {self.path}: {name} is missing beside its checkpoints; start a new --out")
        with np.load(path) as arrays:
            return {key: arrays[key] for key in arrays.files}

    def checkpoint_dir(self, step: int) -> str:
        return checkpoint_path(self.path, step)

    def save_checkpoint(self, learner: Any, preprocessing: Any, step: int, trainer_state: Mapping[str, Any]
                        ) -> str:
        """Save checkpoints/step-N (learner and `trainer_state`: tensors only), then point latest.json at it."""
        from aql_agent.checkpoint import save_checkpoint

        folder = self.checkpoint_dir(step)
        os.makedirs(os.path.dirname(folder), exist_ok=True)
        save_checkpoint(folder, learner, preprocessing, step, extra_state=dict(trainer_state))
        self.write_json("latest.json", {"checkpoint": os.path.relpath(folder, self.path), "step": step})
        return folder

    def table(self, name: str, step: int | None = None, tensorboard: bool = False) -> MetricLog:
        """RUN/NAME as a `MetricLog` cut back to `step` (default: the step resumed from); closed by `close`."""
        log = MetricLog(self.file(name), self.file("tensorboard") if tensorboard else None,
                        self.start_step if step is None else step)
        self.tables.append(log)
        return log

    def close(self) -> None:
        for log in self.tables:
            log.close()
        self.lock.release()

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def checkpoint_path(run: str, step: int) -> str:
    """RUN/checkpoints/step-N: where a run folder keeps its checkpoint of update `step`."""
    return os.path.join(run, "checkpoints", f"step-{step:09d}")


def read_settings(run: str, name: str = "train.json") -> dict[str, Any]:
    """RUN/NAME as `RunFolder.write_json` wrote it (what the run was asked); one AqlError where it cannot be read."""
    path = os.path.join(run, name)
    try:
        with open(path) as f:
            record = json.load(f)
    except FileNotFoundError:
        raise AqlError(f"{path} is missing: is {run} a run folder written by aql?") from None
    except (OSError, ValueError) as error:
        raise AqlError(f"cannot read {path} ({error}): restore it or start a new run") from None
    if not isinstance(record, dict):
        raise AqlError(f"{path} is not a JSON object: restore it or start a new run")
    return record


def due(step: int, every: int, last: int) -> bool:
    """Whether a periodic event (evaluation, checkpoint, log row) falls at `step`; the last step always counts."""
    return step % every == 0 or step == last
