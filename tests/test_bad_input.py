"""Every command, every flag, given bad input: one `aql: error:` line naming what was wrong, exit status 2.

The table walks the parser itself: every numeric flag of every command gets the generic bad values (text, an
empty string, NaN, infinities, and the negative or zero values its range excludes), and the flags that take
names, paths or endpoints get the bad values listed in BAD_VALUES below. Each case starts from a baseline
command line that works (checked by its own test) and changes one thing, so an error can only come from that
one thing. A bad value that is accepted shows up as exit status 0 (budgets are tiny, and serving is stopped
before it starts), a traceback as an exception escaping `main`.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import pytest
from conftest import write_moba_log, write_single_agent_log

from aql_agent.cli import build_parser, main


class Accepted(Exception):
    """Raised where a long-running command would start serving or playing: its input was all accepted."""


# A working command line per command; {names} are filled from the fixtures below, {out} is fresh per case.
BASELINES: dict[str, list[str]] = {
    "convert": ["{log}", "{out}/x.npz"],
    "inspect": ["{log}"],
    "train": ["--algo", "bc", "--data", "{data}", "--out", "{out}/run", "--steps", "2", "--no-progress",
              "--no-tensorboard"],
    "finetune": ["--checkpoint", "{checkpoint}", "--env", "Pendulum-v1", "--out", "{out}/tune", "--steps", "2",
                 "--round-steps", "2", "--eval-every", "2", "--eval-episodes", "1", "--no-progress",
                 "--no-tensorboard"],
    "eval": ["--checkpoint", "{checkpoint}", "--env", "Pendulum-v1", "--episodes", "1", "--no-progress"],
    "record": ["--env", "Pendulum-v1", "--player", "random", "--episodes", "1", "--out", "{out}/logs",
               "--no-progress"],
    "make-dataset": ["--env", "Pendulum-v1", "--out", "{out}/sets", "--train-steps", "4", "--snapshot-every", "2",
                     "--transitions", "4", "--learning-starts", "2", "--eval-episodes", "1", "--no-progress",
                     "--kinds", "random", "--min-gain=-inf"],
    "deploy": ["--policy", "random", "--bind", "ipc://{out}/agent.sock"],
    "engine": ["--env", "Pendulum-v1", "--connect", "tcp://127.0.0.1:5999", "--games", "1", "--no-progress"],
    "export": ["--checkpoint", "{checkpoint}", "--out", "{out}/policy.onnx", "--check", "2"],
    "demo": ["--out", "{out}/demo", "--quick"],
}

# Values a numeric flag's range allows although the generic list would call them bad.
ALLOWED: dict[tuple[str, str], set[str]] = {
    **{(command, "--seed"): {"0"} for command in BASELINES},
    ("make-dataset", "--learning-starts"): {"0"},
    ("make-dataset", "--min-gain"): {"-1", "0", "-inf"},  # -inf: take whatever training reached
    ("finetune", "--offline-ratio"): {"0"},
    ("finetune", "--exploration"): {"0"},
    ("finetune", "--constraint-final"): {"0"},
    ("finetune", "--online-warmup"): {"0"},  # 0: no warm-up
    ("finetune", "--ramp-steps"): {"0"},  # 0: the full online share at once
    ("record", "--fps"): {"0"},  # 0: no waiting
}

MISSING = "{out}/no-such-file"
BAD_VALUES: dict[tuple[str, str], list[str]] = {
    ("convert", "source"): [MISSING, "{empty}", "{garbage}", "{directory}", "{cut_header}", "{text}"],
    ("convert", "destination"): ["{out}/x.unknown", "{garbage}", "{out}/no/such/folder/x.npz"],
    ("convert", "--agent"): ["nobody"],
    ("convert", "--address"): ["bogus"],
    ("inspect", "path"): [MISSING, "{empty}", "{garbage}", "{directory}", "{cut_header}", "{text}"],
    ("train", "--data"): [MISSING, "{empty}", "{garbage}", "{directory}", "{text}", "{moba}"],
    ("train", "--out"): ["{garbage}"],
    ("train", "--env"): ["NoSuchEnv-v0", "CartPole-v1", "Hopper", "pettingzoo:no.such.module"],
    ("train", "--agent"): ["nobody"],
    ("train", "--opponent"): ["bt:bogus"],
    ("train", "--device"): ["bogus", "cuda:99", ""],
    ("train", "--set"): ["novalue", "=1", "batch_size=0", "batch_size=abc", "learning_rate=nan", "gamma=1.5",
                         "no_such_setting=1", "hidden=[0]"],
    ("finetune", "--checkpoint"): [MISSING, "{garbage}", "{directory}"],
    ("finetune", "--env"): ["NoSuchEnv-v0", "CartPole-v1", ""],
    ("finetune", "--out"): ["{garbage}"],
    ("finetune", "--data"): [MISSING, "{garbage}", "{moba}"],
    ("finetune", "--agent"): ["nobody"],
    ("finetune", "--opponent"): ["bt:bogus"],
    ("finetune", "--eval-opponent"): ["bt:bogus"],
    ("finetune", "--device"): ["bogus", "cuda:99"],
    ("finetune", "--set"): ["novalue", "hidden=[8]", "critics=3", "no_such_setting=1", "tau=2",
                            "actor_learning_rate=-1", "target_subset=3", "target_subset=0", "target_subset=1.5"],
    ("finetune", "--recipe"): ["bogus", ""],
    ("eval", "--checkpoint"): [MISSING, "{garbage}", "{directory}"],
    ("eval", "--env"): ["NoSuchEnv-v0", "CartPole-v1", "", "pettingzoo:no.such.module"],
    ("eval", "--opponent"): ["bt:bogus"],
    ("eval", "--address"): ["bogus"],
    ("record", "--env"): ["NoSuchEnv-v0", "", "pettingzoo:no.such.module"],
    ("record", "--player"): ["bogus", "agent:{out}/none", "agent:{garbage}", "bt:bogus", "human"],
    ("record", "--opponent"): ["bt:bogus"],
    ("record", "--side"): ["bogus"],
    ("record", "--hero"): ["bogus"],
    ("record", "--opponent-hero"): ["bogus"],
    ("record", "--out"): ["{garbage}"],
    ("record", "--set"): ["novalue", "frame_skip=abc", "max_frames=-1"],
    ("record", "--address"): ["bogus"],
    ("train", "--address"): ["bogus"],
    ("finetune", "--address"): ["bogus"],
    ("engine", "--address"): ["bogus"],
    ("make-dataset", "--env"): ["NoSuchEnv-v0", "CartPole-v1", ""],
    ("make-dataset", "--out"): ["{garbage}"],
    ("make-dataset", "--kinds"): ["bogus"],
    ("make-dataset", "--hidden"): ["0", "-1", "abc"],
    ("make-dataset", "--name"): ["../x", "", ".", "a/b"],
    ("deploy", "--checkpoint"): [MISSING, "{garbage}", "{directory}"],
    ("deploy", "--policy"): ["bogus", "bt:bogus", "agent:{out}/none"],
    ("deploy", "--bind"): ["bogus", "tcp://", "tcp://127.0.0.1:99999", "tcp://127.0.0.1:-1", "http://127.0.0.1:80",
                           "tcp://0.0.0.0:5555", ""],
    ("deploy", "--record"): ["{garbage}"],
    ("deploy", "--curve-secret-key"): [MISSING, "{garbage}", "{directory}"],
    ("engine", "--env"): ["NoSuchEnv-v0", "", "pettingzoo:no.such.module"],
    ("engine", "--connect"): ["bogus", "tcp://", "tcp://127.0.0.1:99999", ""],
    ("engine", "--opponent"): ["bt:bogus"],
    ("engine", "--side"): ["bogus"],
    ("engine", "--set"): ["novalue"],
    ("engine", "--curve-server-key"): [MISSING, "{garbage}"],
    ("export", "--checkpoint"): [MISSING, "{garbage}", "{directory}"],
    ("export", "--out"): ["{directory}", "{out}/no/such/folder/x.onnx"],
    ("demo", "--opponent"): ["bt:bogus", "bogus"],
    ("demo", "--out"): ["{garbage}"],
}

NO_BAD_VALUE = {"--overwrite", "--json", "--no-progress", "--no-tensorboard", "--resume", "--normalize-observations",
                "--public", "--quick", "--through-bridge", "--version", "--no-protect-actions",
                "--act-with-targets"}  # its bad use (a checkpoint that cannot) has its own test below


def _actions(command: str) -> list[argparse.Action]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [a for a in sub.choices[command]._actions if not isinstance(a, argparse._HelpAction)]


def _name(action: argparse.Action) -> str:
    return action.option_strings[0] if action.option_strings else action.dest


def _generic(command: str, action: argparse.Action) -> list[str]:
    if action.choices:
        return ["bogus"]
    if action.type is int:
        values = ["abc", "", "1.5", "-1", "0"]
        if _name(action) in ("--seed", "--threads"):
            values.append(str(2 ** 70))
    elif action.type is float:
        values = ["abc", "", "nan", "inf", "-inf", "-1", "0"]
    else:
        return []
    return [v for v in values if v not in ALLOWED.get((command, _name(action)), set())]


def _cases() -> list[tuple[str, str, str]]:
    cases = []
    for command in BASELINES:
        for action in _actions(command):
            name = _name(action)
            for value in dict.fromkeys(_generic(command, action) + BAD_VALUES.get((command, name), [])):
                cases.append((command, name, value))
    return cases


CASES = _cases()


def test_the_table_covers_every_flag_of_every_command():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == set(BASELINES)
    for command in BASELINES:
        for action in _actions(command):
            name = _name(action)
            covered = _generic(command, action) or BAD_VALUES.get((command, name)) or name in NO_BAD_VALUE
            assert covered, f"aql {command} {name} has no bad values in the table"
    assert len(CASES) >= 300


@pytest.fixture(scope="module")
def files(tmp_path_factory, pendulum_data) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad-input")
    log = write_single_agent_log(str(root / "single.aqlog")).path
    moba = write_moba_log(str(root / "moba.aqlog")).path
    assert main(["train", "--algo", "sac", "--data", pendulum_data, "--out", str(root / "ckpt"), "--steps", "2",
                 "--no-progress", "--no-tensorboard", "--set", "hidden=[16,16]"]) == 0
    (root / "empty").write_bytes(b"")
    (root / "garbage").write_bytes(np.random.default_rng(0).bytes(300))
    (root / "notes.txt").write_text("not data\n")
    (root / "folder").mkdir()
    (root / "cut.aqlog").write_bytes(open(log, "rb").read()[:20])
    return {"log": log, "moba": moba, "data": pendulum_data, "checkpoint": str(root / "ckpt"),
            "empty": str(root / "empty"), "garbage": str(root / "garbage"), "text": str(root / "notes.txt"),
            "directory": str(root / "folder"), "cut_header": str(root / "cut.aqlog")}


@pytest.fixture
def stop_before_serving(monkeypatch):
    """deploy, engine and demo would serve or play for minutes: stop them where their input was all taken."""
    from aql_agent import demo
    from aql_agent.adapters.bridge import AgentServer, EngineClient

    def accepted(*args, **kwargs):
        raise Accepted()

    monkeypatch.setattr(AgentServer, "serve", accepted)
    monkeypatch.setattr(EngineClient, "connect", accepted)
    monkeypatch.setattr(demo, "run_demo", accepted)


def _argv(command: str, flag: str | None, value: str | None, names: dict[str, str]) -> list[str]:
    argv = [part.format(**names) for part in BASELINES[command]]
    if flag is None:
        return [command, *argv]
    value = value.format(**names)
    positionals = [a.dest for a in _actions(command) if not a.option_strings]
    if flag in positionals:
        argv[positionals.index(flag)] = value
        return [command, *argv]
    for given in (flag, "--policy" if command == "deploy" and flag == "--checkpoint" else None):  # exclusive pair
        if given in argv:
            index = argv.index(given)
            del argv[index:index + 2]
    argv = [part for part in argv if not part.startswith(flag + "=")]
    return [command, *argv, f"{flag}={value}"]  # `--flag=-1`: argparse would take a bare -1 or -inf for a flag


@pytest.mark.parametrize("command", list(BASELINES))
def test_every_baseline_works(command, files, tmp_path, stop_before_serving, capsys):
    """Each case changes one thing of a command line that works: an error can come only from that thing."""
    argv = _argv(command, None, None, {**files, "out": str(tmp_path)})
    if command in ("deploy", "engine", "demo"):
        with pytest.raises(Accepted):
            main(argv)
    else:
        assert main(argv) == 0, capsys.readouterr().err


@pytest.mark.parametrize(("command", "flag", "value"), CASES, ids=[f"{c} {f} {v!r}" for c, f, v in CASES])
def test_bad_input_is_one_error_line(command, flag, value, files, tmp_path, stop_before_serving, capsys):
    names = {**files, "out": str(tmp_path)}
    argv = _argv(command, flag, value, names)
    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse's own refusals
        status = exit_.code
    except Accepted:
        status = 0
    err = capsys.readouterr().err
    assert status != 0, f"accepted: aql {' '.join(argv)}"
    lines = [line for line in err.splitlines() if not line.startswith("aql: warning:")]
    assert status == 2 and len(lines) == 1 and lines[0].startswith("aql: error: "), err
    shown = value.format(**names)
    named = flag.lstrip("-") in lines[0] or (shown and shown in lines[0]) or os.path.basename(shown) in lines[0]
    assert named, f"the error does not name {flag} or {shown!r}: {lines[0]}"


def test_acting_on_target_networks_a_checkpoint_has_none_of_is_one_error_line(files, capsys):
    """`aql eval --act-with-targets` on a SAC checkpoint (no target policy to act with): one error line."""
    argv = _argv("eval", None, None, {**files, "out": ""})
    assert main([*argv, "--act-with-targets"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("aql: error: --act-with-targets: sac has no option"), err
