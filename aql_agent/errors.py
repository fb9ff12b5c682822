"""Typed errors: each one says what was wrong and what to do about it."""

from __future__ import annotations

import os


class AqlError(Exception):
    """Base class of every error aql-agent raises on bad input."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (what service and container managers send): handled like Ctrl-C, so every command keeps what it
    has done (the games recorded, the last checkpoint) and stops."""


class ReplayLogError(AqlError):
    """A replay log cannot be read or written: names the file and the byte offset where known."""

    def __init__(self, message: str, path: str | os.PathLike | None = None, offset: int | None = None):
        self.path = None if path is None else os.fspath(path)
        self.offset = offset
        where = ""
        if self.path is not None:
            where = self.path + (f" at byte {offset}" if offset is not None else "") + ": "
        super().__init__(where + message)


class ReplayLogWarning(UserWarning):
    """Something was recovered but not everything: a truncated or unfinished log."""


class DatasetError(AqlError):
    """A dataset file or array set is malformed or of an unsupported kind."""


class SpaceError(AqlError):
    """A space cannot be described in the replay format, or a value does not fit its space."""


class MissingFileError(AqlError, FileNotFoundError):
    """An input path does not exist."""


def require_exists(path: str | os.PathLike, what: str) -> None:
    """Raise one clear `MissingFileError` instead of a traceback deep in a reader."""
    if not os.path.exists(path):
        raise MissingFileError(f"{what} not found: {os.fspath(path)} (check the path)")


def require_number(flag: str, value: object, low: float | None = None, high: float | None = None, *,
                   whole: bool = False, above_low: bool = False) -> None:
    """One clear error for a setting outside its range (`--steps -5`, `--reward-scale nan`), named by its flag."""
    import math

    kind = "a whole number" if whole else "a finite number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (whole and not isinstance(value, int)) \
            or not math.isfinite(value):
        raise AqlError(f"{flag} must be {kind}, got {value!r}")
    if low is not None and (value <= low if above_low else value < low):
        raise AqlError(f"{flag} must be {'above' if above_low else 'at least'} {low}, got {value!r}")
    if high is not None and value > high:
        raise AqlError(f"{flag} must be at most {high}, got {value!r}")


def require_device(device: str) -> None:
    """A torch device that exists here (`cpu`, `cuda`, `cuda:1`, `mps`), or one clear error."""
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise AqlError(f"--device {device!r} is not a torch device ({error}); use cpu, cuda or cuda:N") from None
    if parsed.type == "cuda" and (not torch.cuda.is_available()
                                  or (parsed.index or 0) >= torch.cuda.device_count()):
        raise AqlError(f"--device {device}: no such CUDA device here (found {torch.cuda.device_count()}); use cpu")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise AqlError(f"--device {device}: MPS is not available here; use cpu")


#: the seeds numpy, torch and gymnasium all take
MAX_SEED = 2**32 - 1
