import dataclasses
import json
import os
import subprocess
import sys

import pytest
from conftest import write_moba_log, write_single_agent_log

from aql_agent.cli import build_parser, main
from aql_agent.data import load_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_inspect_a_log_shows_env_spaces_episodes_returns_and_players(capsys, moba_log):
    assert main(["inspect", moba_log.path]) == 0
    out = capsys.readouterr().out
    assert "moba-1v1-test" in out and "MultiDiscrete([3, 2])" in out and '"level": "hard"' in out
    assert main(["inspect", "--json", moba_log.path]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["episodes"] == 2 and summary["finalised"] is True
    assert summary["agents"]["blue"]["outcomes"] == {"win": 2}
    assert summary["agents"]["red"]["steps"] == sum(moba_log.lengths)


def test_convert_round_trips_log_npz_hdf5_and_back(tmp_path, capsys, single_log):
    npz, hdf5, log = (str(tmp_path / n) for n in ("a.npz", "a.hdf5", "b.aqlog"))
    assert main(["convert", single_log.path, npz]) == 0
    assert main(["convert", npz, hdf5]) == 0
    assert main(["convert", hdf5, log, "--compression", "zstd"]) == 0
    assert load_dataset(log) == load_dataset(single_log.path)
    assert main(["inspect", "--json", npz]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    summary = json.loads("\n".join(lines[lines.index("{"):]))
    assert summary["transitions"] == len(single_log.steps["agent"]) and summary["episodes"] == 3


def test_bad_input_is_one_error_line_and_exit_status_2(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "missing.aqlog")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("aql: error: input not found") and "Traceback" not in err and err.count("\n") == 1
    bad = tmp_path / "bad.aqlog"
    bad.write_bytes(b"\x89AQL\r\n\x1a\n" + b"\x00" * 40)
    assert main(["inspect", str(bad)]) == 2
    assert "corrupt chunk header" in capsys.readouterr().err
    log = write_moba_log(str(tmp_path / "m.aqlog"))
    assert main(["convert", log.path, str(tmp_path / "m.npz")]) == 2
    assert "choose one with agent=" in capsys.readouterr().err
    assert main(["convert", log.path, str(tmp_path / "m.npz"), "--agent", "red"]) == 0
    assert main(["convert", log.path, str(tmp_path / "m.npz"), "--agent", "red"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_a_cut_log_warns_on_stderr_and_still_converts(tmp_path, capsys):
    rec = write_single_agent_log(str(tmp_path / "a.aqlog"), episodes=3, lengths=[4, 4, 4])
    data = open(rec.path, "rb").read()
    cut = tmp_path / "cut.aqlog"
    cut.write_bytes(data[:-100])
    assert main(["convert", str(cut), str(tmp_path / "cut.npz")]) == 0
    err = capsys.readouterr().err
    assert "aql: warning:" in err and "cut off" in err


def test_tools_convert_and_python_dash_m_run_from_the_checkout(tmp_path, single_log):
    out = str(tmp_path / "tool.npz")
    result = subprocess.run([os.path.join(ROOT, "tools", "convert"), single_log.path, out],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert os.path.exists(out) and "transitions:" in result.stdout
    result = subprocess.run([sys.executable, "-m", "aql_agent", "inspect", out], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and "episodes:" in result.stdout


def test_demo_quick_runs_the_whole_story(tmp_path, capsys):
    """The README demo in CI's reduced mode: record, train, deploy over ZeroMQ, fine-tune through the bridge,
    before/after table and plot; a budget flag overrides the quick budget."""
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--quick", "--train-steps", "150"]) == 0
    printed = capsys.readouterr().out
    assert "before / after" in printed and "fine-tuned" in printed
    result = json.loads((out / "before-after.json").read_text())
    assert result["budget"]["eval_games"] == 1 and result["budget"]["train_steps"] == 150
    for arm in ("offline", "finetuned"):
        assert result[arm]["games"] == 1 and result[arm]["wins"] + result[arm]["losses"] + result[arm]["draws"] == 1
        assert result[arm]["bridge"]["fallbacks"] == 0
    assert os.path.getsize(out / "before-after.png") > 10_000
    assert os.listdir(out / "finetuned" / "online" / "round-0000")  # the bridge recorded the round's game


def test_a_rerun_demo_replaces_its_own_files_but_nothing_else(tmp_path, capsys):
    from aql_agent.demo import _clear_earlier_demo

    out = tmp_path / "demo-output"
    (out / "offline" / "checkpoints").mkdir(parents=True)
    (out / "offline" / "latest.json").write_text("{}")
    (out / "before-after.json").write_text("{}")
    _clear_earlier_demo(str(out))
    assert os.listdir(out) == [] and "replacing the earlier demo" in capsys.readouterr().out
    (out / "notes.txt").write_text("mine")
    assert main(["demo", "--out", str(out), "--quick"]) == 2
    assert "notes.txt" in capsys.readouterr().err and (out / "notes.txt").exists()


def test_demo_refuses_a_budget_that_is_not_positive(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--train-steps", "0"]) == 2
    assert "--train-steps must be above 0" in capsys.readouterr().err


def test_adapters_install_inside_the_aql_agent_namespace(tmp_path):
    """`adapters/` must import as aql_agent.adapters, never as a top-level `adapters` (another PyPI package)."""
    code = ("import importlib.util, aql_agent.adapters.gym as g; "
            "print(importlib.util.find_spec('adapters') is None, g.__name__)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert result.stdout.split() == ["True", "aql_agent.adapters.gym"], result.stderr


@pytest.mark.skipif(not os.path.exists(os.path.join(ROOT, "pyproject.toml")), reason="needs the source tree")
def test_the_wheel_maps_adapters_into_the_package(tmp_path):
    import zipfile

    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                             "-w", str(tmp_path), ROOT], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    wheel = next(p for p in os.listdir(tmp_path) if p.endswith(".whl"))
    names = zipfile.ZipFile(tmp_path / wheel).namelist()
    assert "aql_agent/adapters/gym.py" in names and "aql_agent/adapters/moba/env.py" in names
    assert "aql_agent/learners/aql.py" in names
    assert not any(n.startswith("adapters/") for n in names)


def test_training_commands_take_their_flags_defaults_and_help_from_the_settings_dataclasses():
    from aql_agent.finetune import FinetuneSettings
    from aql_agent.flags import field_docs, settings_from_args
    from aql_agent.make_dataset import MakeDatasetSettings
    from aql_agent.training import TrainSettings

    parser = build_parser()
    cases = [(TrainSettings, ["train", "--algo", "aql", "--data", "d", "--out", "o"], {"learner": {}}),
             (FinetuneSettings, ["finetune", "--checkpoint", "c", "--env", "Hopper-v5", "--out", "o"], {}),
             (MakeDatasetSettings, ["make-dataset", "--env", "Hopper-v5", "--out", "o"], {})]
    for cls, argv, extra in cases:
        args = parser.parse_args(argv)
        required = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        assert settings_from_args(cls, args, **extra) == cls(**required, **extra)  # every default is the field's
        undocumented = [f.name for f in dataclasses.fields(cls) if f.name not in field_docs(cls)]
        assert not undocumented, f"{cls.__name__} fields without a docstring (their --help): {undocumented}"
    args = parser.parse_args(["make-dataset", "--env", "e", "--out", "o", "--kinds", "random", "expert",
                              "--no-progress", "--medium-fraction", "0.5"])
    settings = settings_from_args(MakeDatasetSettings, args)
    assert settings.kinds == ("random", "expert") and not settings.progress and settings.medium_fraction == 0.5


@pytest.mark.parametrize("argv, message", [
    (["train", "--algo", "bc", "--data", "d.npz", "--out", "o", "--steps", "-5"], "--steps must be at least 1"),
    (["train", "--algo", "bc", "--data", "d.npz", "--out", "o", "--seed", "-1"], "--seed must be at least 0"),
    (["train", "--algo", "bc", "--data", "d.npz", "--out", "o", "--seed", str(2**64)], "--seed must be at most"),
    (["train", "--algo", "bc", "--data", "d.npz", "--out", "o", "--eval-episodes", "0"], "--eval-episodes must be"),
    (["train", "--algo", "bc", "--data", "d.npz", "--out", "o", "--reward-scale", "nan"], "finite number"),
    (["train", "--algo", "bc", "--data", "d.npz", "--out", "o", "--device", "bogus"], "not a torch device"),
    (["train", "--algo", "bc", "--data", "d.npz", "--out", "o", "--threads", "-2"], "--threads must be at least 1"),
    (["finetune", "--checkpoint", "c", "--env", "Hopper-v5", "--out", "o", "--exploration", "-1"],
     "--exploration must be at least 0"),
    (["finetune", "--checkpoint", "c", "--env", "Hopper-v5", "--out", "o", "--offline-ratio", "1.5"],
     "--offline-ratio must be at most 1"),
    (["make-dataset", "--env", "Pendulum-v1", "--out", "o", "--name", "../../x"], "--name is a file prefix"),
    (["make-dataset", "--env", "Pendulum-v1", "--out", "o", "--medium-fraction", "0"],
     "--medium-fraction must be above"),
    (["export", "--checkpoint", "c", "--out", "x.onnx", "--check", "0"], "--check must be at least 1"),
    (["eval", "--checkpoint", "c", "--env", "Pendulum-v1", "--games", "0"], "--episodes/--games must be at least 1"),
    (["record", "--env", "Pendulum-v1", "--player", "random", "--seed", "-3"], "--seed must be at least 0"),
    (["record", "--env", "Pendulum-v1", "--player", "random", "--episodes", "0"], "--episodes must be at least 1")])
def test_bad_numbers_and_names_are_one_clear_error_before_anything_runs(argv, message, tmp_path, capsys,
                                                                       monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.startswith("aql: error: ") and message in error and error.count("\n") == 1
    assert not os.listdir(tmp_path)  # nothing was written
