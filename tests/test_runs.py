"""The run folder every training loop shares: refusal to overwrite, atomic latest.json, tables cut back on resume,
hand-edited files named in one error."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from aql_agent.checkpoint import Preprocessing, load_learner
from aql_agent.errors import AqlError
from aql_agent.learners import make_learner
from aql_agent.runs import RunFolder, due, read_settings


def rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_run_folder_saves_resumes_and_cuts_its_tables_back(tmp_path):
    learner = make_learner("bc", 3, 1, {"hidden": [8]})
    run = RunFolder(str(tmp_path), resume=False)
    table = run.table("metrics.csv")
    for step in (10, 20, 30):
        table.write(step, {"loss": 1.0 / step})
        if step == 20:
            run.save_arrays("buffer.npz", rows=np.arange(6.0).reshape(3, 2))
            run.save_checkpoint(learner, Preprocessing.identity(3, 1), step, {"seen": torch.tensor(3)})
    run.close()
    with pytest.raises(AqlError, match="already holds a run: pass --resume"):
        RunFolder(str(tmp_path), resume=False)
    again = RunFolder(str(tmp_path), resume=True)
    assert again.start_step == 20 and again.resumed_from[0] == again.checkpoint_dir(20)
    again.table("metrics.csv").write(30, {"loss": 0.5})  # the row after the checkpoint is written again, not twice
    again.close()
    assert [r["step"] for r in rows(tmp_path / "metrics.csv")] == ["10", "20", "30"]
    np.testing.assert_array_equal(again.load_arrays("buffer.npz")["rows"], np.arange(6.0).reshape(3, 2))
    _, info, state = load_learner(str(tmp_path))
    assert info["step"] == 20 and int(state["seen"]) == 3
    assert not list(tmp_path.glob("*.tmp"))  # every file was moved into place whole


def test_hand_edited_run_files_are_one_clear_error(tmp_path):
    (tmp_path / "latest.json").write_text('{"checkpoint": 7}')
    with pytest.raises(AqlError, match="not a latest.json written by aql"):
        RunFolder(str(tmp_path), resume=True)
    (tmp_path / "latest.json").write_text('{"checkpoint": "checkpoints/step-000000005", "step": 5}')
    with pytest.raises(AqlError, match="which is not a checkpoint folder in"):
        RunFolder(str(tmp_path), resume=True)
    with pytest.raises(AqlError, match="buffer.npz is missing"):
        RunFolder(str(tmp_path / "fresh"), resume=True).load_arrays("buffer.npz")
    with pytest.raises(AqlError, match="train.json is missing"):
        read_settings(str(tmp_path))
    (tmp_path / "train.json").write_text('{"settings": {"seed": 1')  # cut short
    with pytest.raises(AqlError, match="cannot read .*train.json"):
        read_settings(str(tmp_path))
    (tmp_path / "train.json").write_text("[1, 2]")
    with pytest.raises(AqlError, match="not a JSON object"):
        read_settings(str(tmp_path))


def test_periodic_events_fall_on_multiples_and_the_last_step():
    assert [s for s in range(1, 26) if due(s, 10, 25)] == [10, 20, 25]


def test_hand_edited_checkpoint_folders_are_one_clear_error_in_every_command(tmp_path, capsys):
    import json
    import shutil

    from aql_agent.cli import main

    learner = make_learner("bc", 3, 1, {"hidden": [8]})
    run = RunFolder(str(tmp_path / "run"), resume=False)
    folder = run.save_checkpoint(learner, Preprocessing.identity(3, 1), 5, {})
    info = json.loads(open(f"{folder}/checkpoint.json").read())
    edits = {"std zero": {**info, "preprocessing": {**info["preprocessing"], "obs_std": [1.0, 0.0, 1.0]}},
             "algo": {**info, "algo": {"nested": []}}, "dims": {**info, "obs_dim": "3"},
             "short mean": {**info, "preprocessing": {**info["preprocessing"], "obs_mean": [0.0]}},
             "empty": None}
    for name, edited in edits.items():
        damaged = tmp_path / name
        shutil.copytree(folder, damaged)
        (damaged / "checkpoint.json").write_text("" if edited is None else json.dumps(edited))
        for argv in (["eval", "--checkpoint", str(damaged), "--env", "Pendulum-v1", "--episodes", "1"],
                     ["export", "--checkpoint", str(damaged), "--out", str(tmp_path / "x.onnx")],
                     ["record", "--env", "Pendulum-v1", "--player", f"agent:{damaged}", "--out", str(tmp_path / "l")]):
            assert main(argv) == 2, (name, argv)
            error = capsys.readouterr().err
            assert error.startswith("aql: error: ") and error.count("\n") == 1, error
    weights = tmp_path / "weights"
    shutil.copytree(folder, weights)
    torch.save({"learner": {"nets": {}}}, weights / "model.pt")
    assert main(["eval", "--checkpoint", str(weights), "--env", "Pendulum-v1"]) == 2
    error = capsys.readouterr().err
    assert "does not fit a bc learner" in error and error.count("\n") == 1


def test_a_run_folder_is_locked_while_a_process_works_in_it(tmp_path, capsys, pendulum_data):
    import subprocess
    import sys

    from aql_agent.cli import main
    from aql_agent.runs import FolderLock

    folder = str(tmp_path / "run")
    first = RunFolder(folder, resume=False)
    with pytest.raises(AqlError, match="in use by another process"):
        RunFolder(folder, resume=True)
    for extra in ([], ["--resume"]):  # a second `aql train` into the same --out, or a resume, while it runs
        assert main(["train", "--algo", "bc", "--data", pendulum_data, "--out", folder, "--steps", "2", *extra]) == 2
        error = capsys.readouterr().err
        assert error.startswith("aql: error: ") and "in use by another process" in error and error.count("\n") == 1
    first.close()
    assert main(["train", "--algo", "bc", "--data", pendulum_data, "--out", folder, "--steps", "2",
                 "--no-progress"]) == 0
    # A process killed with SIGKILL leaves no stale lock: the operating system drops it with the process.
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from aql_agent.runs import FolderLock; "
                               f"lock = FolderLock({folder!r}); print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(AqlError, match=f"pid {holder.pid}"):
            FolderLock(folder)
    finally:
        holder.kill()
        holder.wait()
    FolderLock(folder).release()


def test_make_dataset_locks_its_folder(tmp_path, capsys):
    from aql_agent.cli import main
    from aql_agent.runs import FolderLock

    lock = FolderLock(str(tmp_path / "data"))
    try:
        assert main(["make-dataset", "--env", "Pendulum-v1", "--out", str(tmp_path / "data"), "--train-steps", "10",
                     "--snapshot-every", "10", "--no-progress"]) == 2
        assert "in use by another process" in capsys.readouterr().err
    finally:
        lock.release()
