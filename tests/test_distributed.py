"""Parallel play on Ray (the `ray` extra): evaluation on workers gives exactly the serial result, in every kind
of game. A local Ray of 2 CPUs is started inside the test, its files and HOME in a temporary folder."""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import pytest

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.xdist_group("ray")  # one local Ray at a time (see conftest)

from aql_agent.adapters.games import game_kind  # noqa: E402
from aql_agent.checkpoint import load_policy, policy_from_weights, policy_weights  # noqa: E402
from aql_agent.cli import main  # noqa: E402
from aql_agent.distributed import evaluate_parallel  # noqa: E402

SHORT_MOBA = {"max_frames": 300}


@pytest.fixture(scope="module")
def local_ray():
    # Short: Ray's socket paths must fit in 107 bytes, which pytest's (per-worker under xdist) tmp paths overrun.
    folder = tempfile.mkdtemp(prefix="ray")
    saved = {key: os.environ.get(key) for key in ("RAY_TMPDIR", "HOME", "RAY_AUTH_MODE")}
    os.environ.update({"RAY_TMPDIR": str(folder), "HOME": str(folder), "RAY_AUTH_MODE": "disabled"})
    ray.init(num_cpus=2, object_store_memory=80 * 1024 * 1024, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    shutil.rmtree(folder, ignore_errors=True)


def _train(tmp_path, data: str, algo: str, *extra: str) -> str:
    out = str(tmp_path / f"{algo}-run")
    assert main(["train", "--algo", algo, "--data", data, "--out", out, "--steps", "20", "--no-progress",
                 "--no-tensorboard", "--set", "hidden=[32,32]", *extra]) == 0
    return out


def _same(serial: dict, parallel: dict, rel: float | None = None) -> None:
    """Equal results; with `rel`, equal to that relative rounding (a policy ranking sampled proposals in one
    batched critic pass rounds by torch's thread count, which differs between Ray's workers and the caller)."""
    assert parallel.pop("workers") == 2
    if rel is None:
        assert parallel == serial
    else:
        assert parallel.keys() == serial.keys()
        for key, value in serial.items():
            assert parallel[key] == (value if isinstance(value, str) else pytest.approx(value, rel=rel)), key


def test_weights_rebuild_the_same_policy(tmp_path, pendulum_data):
    import numpy as np

    policy = load_policy(_train(tmp_path, pendulum_data, "sac"))
    rebuilt = policy_from_weights(json.loads(json.dumps(policy_weights(policy), default=lambda a: a.tolist())))
    observations = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)
    np.testing.assert_array_equal(rebuilt.act(observations), policy.act(observations))


@pytest.mark.parametrize("algo", ["sac", "bcq"])  # bcq: a policy that draws at random when it acts
def test_parallel_evaluation_equals_serial_in_a_gymnasium_env(local_ray, tmp_path, pendulum_data, algo):
    policy = load_policy(_train(tmp_path, pendulum_data, algo))
    serial = game_kind("Pendulum-v1").evaluate(policy, 5, seed=3)
    assert game_kind("Pendulum-v1").evaluate(policy, 5, seed=3) == serial  # in one process: bit for bit
    _same(serial, evaluate_parallel("Pendulum-v1", policy, 5, seed=3, workers=2, progress=False),
          rel=None if algo == "sac" else 1e-6)


def test_parallel_evaluation_equals_serial_in_moba_and_connect_four(local_ray, tmp_path):
    for game, settings, opponent in (("moba-1v1", SHORT_MOBA, "bt:easy"), ("connect-four", {}, "random")):
        kind = game_kind(game, settings)
        log = kind.record(str(tmp_path / game), kind.default_opponent, episodes=2, seed=0, progress=False)
        policy = load_policy(_train(tmp_path / game, log, "bc-discrete", "--agent", "all"))
        serial = kind.evaluate(policy, 5, seed=11, opponent=opponent)
        _same(serial, evaluate_parallel(game, policy, 5, seed=11, opponent=opponent, workers=2, settings=settings,
                                        progress=False))


def test_aql_eval_takes_workers(local_ray, tmp_path, pendulum_data, capsys):
    run = _train(tmp_path, pendulum_data, "sac")
    capsys.readouterr()
    assert main(["eval", "--checkpoint", run, "--env", "Pendulum-v1", "--episodes", "3", "--no-progress"]) == 0
    serial = json.loads(capsys.readouterr().out)
    assert main(["eval", "--checkpoint", run, "--env", "Pendulum-v1", "--episodes", "3", "--workers", "2",
                 "--no-progress"]) == 0
    parallel = json.loads(capsys.readouterr().out)
    assert parallel.pop("workers") == 2 and parallel == serial


def _steps(path: str) -> dict:
    from aql_agent.replay import ReplayReader

    reader = ReplayReader(path)
    columns = reader.columns()
    return {"episodes": [(e.index, e.seed, e.outcomes) for e in columns.episodes],
            "agents": {agent: (columns.agents[agent].observations, columns.agents[agent].actions,
                               columns.agents[agent].rewards, columns.agents[agent].episode)
                       for agent in reader.header.agents}}


def _equal(a, b) -> None:
    import numpy as np

    assert a["episodes"] == b["episodes"]
    for agent in a["agents"]:
        for x, y in zip(a["agents"][agent], b["agents"][agent]):
            if isinstance(x, dict):
                for key in x:
                    np.testing.assert_array_equal(x[key], y[key])
            else:
                np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize(("game", "settings", "player", "opponent"), [
    ("moba-1v1", SHORT_MOBA, "bt:medium", "random"), ("connect-four", {}, "random", "greedy"),
    ("Pendulum-v1", {}, "random", None)])
def test_parallel_recording_writes_the_serial_log(local_ray, tmp_path, game, settings, player, opponent):
    from aql_agent.distributed import record_parallel

    kind = game_kind(game, settings)
    serial = kind.record(str(tmp_path / "serial"), player, opponent, episodes=4, seed=4, progress=False)
    parallel = record_parallel(game, str(tmp_path / "parallel"), player, opponent, episodes=4, seed=4, workers=2,
                               settings=settings, progress=False)
    assert os.path.basename(parallel) == os.path.basename(serial)
    assert os.listdir(tmp_path / "parallel") == [os.path.basename(parallel)]  # no scratch parts left behind
    _equal(_steps(serial), _steps(parallel))


def test_aql_record_takes_workers(local_ray, tmp_path, capsys):
    out = str(tmp_path / "logs")
    assert main(["record", "--env", "connect-four", "--player", "random", "--opponent", "greedy", "--episodes", "3",
                 "--workers", "2", "--out", out, "--no-progress"]) == 0
    capsys.readouterr()
    (log,) = os.listdir(out)
    assert len(_steps(os.path.join(out, log))["episodes"]) == 3
    assert main(["record", "--env", "connect-four", "--player", "human", "--episodes", "3", "--workers", "2",
                 "--out", out, "--no-progress"]) == 2
    assert "a human plays in one process" in capsys.readouterr().err


def test_parallel_conversion_writes_shards_holding_the_serial_rows(local_ray, tmp_path, capsys):
    import numpy as np

    from aql_agent.data import load_dataset
    from aql_agent.data.shards import ShardedDataset
    from conftest import write_moba_log

    logs = tmp_path / "logs"
    logs.mkdir()
    for i in range(5):
        write_moba_log(str(logs / f"game-{i}.aqlog"), episodes=1 + i % 2, seed=i)
    assert main(["convert", str(logs), str(tmp_path / "serial.npz"), "--agent", "all"]) == 0
    assert main(["convert", str(logs), str(tmp_path / "shards"), "--agent", "all", "--workers", "2"]) == 0
    capsys.readouterr()
    sharded = ShardedDataset(tmp_path / "shards")
    assert len(sharded.shards) > 1 and sum(len(part) for part in sharded.iter_shards()) == len(sharded)
    serial, joined = load_dataset(tmp_path / "serial.npz"), load_dataset(tmp_path / "shards")
    with np.load(tmp_path / "serial.npz") as arrays:
        keys = {key: (str(arrays[key].dtype), list(arrays[key].shape[1:])) for key in arrays.files}
    assert {k: tuple(v) for k, v in sharded.manifest["keys"].items()} == {k: v for k, v in keys.items()
                                                                           if k != "aql_metadata"}
    for name in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts", "action_masks"):
        np.testing.assert_array_equal(getattr(joined, name), getattr(serial, name))
        assert getattr(joined, name).dtype == getattr(serial, name).dtype
    assert main(["inspect", str(tmp_path / "shards")]) == 0  # every command reads the folder as one dataset
    summary = [line for line in capsys.readouterr().out.splitlines() if line.startswith("transitions")]
    assert summary and summary[0].split()[-1] == str(len(serial))


def test_data_parallel_training_equals_one_process_and_its_checkpoint_loads_without_ray(local_ray, tmp_path,
                                                                                      pendulum_data, capsys):
    import signal
    import subprocess
    import sys

    import numpy as np
    import pandas as pd

    from aql_agent.checkpoint import load_learner

    flags = ["--algo", "bc", "--data", pendulum_data, "--steps", "30", "--seed", "4", "--log-every", "10",
             "--no-progress", "--no-tensorboard", "--set", "hidden=[32,32]", "--set", "batch_size=64"]
    assert main(["train", *flags, "--out", str(tmp_path / "one")]) == 0
    assert main(["train", *flags, "--out", str(tmp_path / "two"), "--workers", "2"]) == 0
    assert json.loads(capsys.readouterr().out.split("\n}\n")[-2] + "\n}")["workers"] == 2
    one, _, _ = load_learner(str(tmp_path / "one"))
    two, _, _ = load_learner(str(tmp_path / "two"))
    for (name, a), (_, b) in zip(one.nets.state_dict().items(), two.nets.state_dict().items(), strict=True):
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=1e-5, err_msg=name)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "two" / "metrics.csv"),
                                  pd.read_csv(tmp_path / "one" / "metrics.csv"), atol=1e-5)
    assert json.loads((tmp_path / "two" / "train.json").read_text())["data_parallel"] == {
        "replicas": 2, "batch_per_replica": 32}
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ray Train's own handler is gone
    check = ("import sys; sys.modules['ray'] = None; import numpy as np; from aql_agent.checkpoint import load_policy;"
             f" print(load_policy({str(tmp_path / 'two')!r}).act(np.zeros(3, np.float32)).shape)")
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "(1,)", result.stderr


def test_workers_are_refused_where_they_cannot_split_the_work(tmp_path, pendulum_data, capsys):
    assert main(["train", "--algo", "bc", "--data", pendulum_data, "--out", str(tmp_path / "run"), "--steps", "5",
                 "--set", "batch_size=64", "--workers", "3"]) == 2
    assert capsys.readouterr().err.strip().startswith("aql: error: --workers 3 does not divide the batch size 64")
    assert main(["finetune", "--checkpoint", str(tmp_path / "none"), "--out", str(tmp_path / "tune"), "--env",
                 "Pendulum-v1", "--through-bridge", "--workers", "2"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("aql: error: --through-bridge plays a multi-agent game's rounds") and "\n" not in error
    assert not (tmp_path / "tune").exists()  # refused before any work


def test_fine_tuning_rounds_on_workers_play_the_games_and_updates_of_one_process(local_ray, connect_four_run,
                                                                                tmp_path, capsys):
    import pandas as pd

    from aql_agent.replay import ReplayReader

    run = connect_four_run
    flags = ["--checkpoint", run, "--env", "connect-four", "--opponent", "random", "--steps", "30", "--round-games",
             "3", "--exploration", "0.3", "--eval-every", "1000", "--eval-episodes", "2", "--seed", "5",
             "--log-every", "10", "--no-progress", "--no-tensorboard"]
    assert main(["finetune", *flags, "--out", str(tmp_path / "one")]) == 0
    assert main(["finetune", *flags, "--out", str(tmp_path / "two"), "--workers", "2"]) == 0
    capsys.readouterr()
    for table in ("rounds.csv", "metrics.csv", "eval.csv"):  # the same games, so the same updates
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "two" / table), pd.read_csv(tmp_path / "one" / table))
    rounds = sorted(os.listdir(tmp_path / "one" / "online"))
    assert len(rounds) >= 2 and rounds == sorted(os.listdir(tmp_path / "two" / "online"))
    for round_ in rounds:
        (one,), (two,) = ([ReplayReader(str(tmp_path / run_ / "online" / round_ / name)) for name in
                           os.listdir(tmp_path / run_ / "online" / round_)] for run_ in ("one", "two"))
        assert os.path.basename(one.path) == os.path.basename(two.path)
        for a, b in zip(one.episodes(), two.episodes(), strict=True):
            assert a.seed == b.seed and a.agents.keys() == b.agents.keys()
            for agent in a.agents:
                assert a.agents[agent].outcome == b.agents[agent].outcome
                assert a.agents[agent].actions.tolist() == b.agents[agent].actions.tolist()


def test_fine_tuning_through_the_bridge_with_engines_on_workers_records_what_one_engine_records(
        local_ray, connect_four_run, tmp_path, capsys):
    import pandas as pd

    from aql_agent.replay import ReplayReader

    flags = ["finetune", "--checkpoint", connect_four_run, "--env", "connect-four", "--opponent", "random",
             "--steps", "20", "--round-games", "3", "--exploration", "0.3", "--eval-every", "1000",
             "--eval-episodes", "2", "--seed", "5", "--log-every", "10", "--no-progress", "--no-tensorboard",
             "--through-bridge"]
    assert main([*flags, "--out", str(tmp_path / "one")]) == 0
    assert main([*flags, "--out", str(tmp_path / "two"), "--workers", "2"]) == 0  # 2 engines, one agent server
    capsys.readouterr()
    for table in ("rounds.csv", "metrics.csv", "eval.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "two" / table), pd.read_csv(tmp_path / "one" / table))
    rounds = sorted(os.listdir(tmp_path / "one" / "online"))
    assert len(rounds) == 2 and rounds == sorted(os.listdir(tmp_path / "two" / "online"))
    for round_ in rounds:
        (one,), (two,) = ([ReplayReader(str(path)) for path in (tmp_path / run_ / "online" / round_).glob("*.aqlog")]
                          for run_ in ("one", "two"))
        assert len(list(two.episodes())) == 3
        for a, b in zip(one.episodes(), two.episodes(), strict=True):  # the sessions' games, joined in game order
            assert a.metadata["engine_episode"] == b.metadata["engine_episode"]
            for agent in a.agents:
                assert a.agents[agent].actions.tolist() == b.agents[agent].actions.tolist()
        games = [json.loads(line) for line in (tmp_path / "two" / "online" / round_ / "games.jsonl").open()]
        assert [g["episode"] for g in games] == sorted(g["episode"] for g in games)
        assert len({g["session"] for g in games}) == 2  # two engines played them


def test_engines_on_workers_give_the_report_of_one_engine(local_ray, connect_four_run, capsys):
    import threading

    from aql_agent.adapters.bridge import AgentServer, make_bridge_policy

    server = AgentServer(make_bridge_policy(f"agent:{connect_four_run}"), "tcp://127.0.0.1:*", log=None)
    stop = threading.Event()
    serving = threading.Thread(target=server.serve, kwargs={"until": stop.is_set, "poll_ms": 20})
    serving.start()
    try:
        flags = ["engine", "--env", "connect-four", "--connect", server.endpoint, "--games", "7", "--seed", "3",
                 "--opponent", "random", "--no-progress"]
        reports = []
        for extra in ([], ["--workers", "2"]):
            capsys.readouterr()
            assert main([*flags, *extra]) == 0
            reports.append(json.loads(capsys.readouterr().out))
    finally:
        stop.set()
        serving.join(10)
    one, two = ({k: v for k, v in report.items() if k != "bridge"} for report in reports)
    assert two.pop("workers") == 2 and one == two and one["games"] == 7  # sides alternating over the 7 games
    assert reports[1]["bridge"]["fallbacks"] == 0 and reports[1]["bridge"]["requests"] >= reports[0]["bridge"][
        "requests"]


def test_a_gymnasium_envs_rounds_on_workers_play_what_the_same_envs_play_in_one_process(local_ray, tmp_path,
                                                                                        pendulum_data, capsys):
    import pandas as pd

    run = _train(tmp_path, pendulum_data, "sac")
    flags = ["--checkpoint", run, "--env", "Pendulum-v1", "--round-steps", "15", "--envs", "3",
             "--updates-per-step", "0.5", "--eval-every", "1000", "--eval-episodes", "1", "--seed", "4",
             "--log-every", "5", "--no-progress", "--no-tensorboard"]
    one, two, straight = (str(tmp_path / name) for name in ("one", "two", "straight"))
    assert main(["finetune", *flags, "--steps", "30", "--out", one]) == 0
    assert main(["finetune", *flags, "--steps", "30", "--out", two, "--workers", "2"]) == 0
    capsys.readouterr()
    for table in ("rounds.csv", "metrics.csv", "eval.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "two" / table), pd.read_csv(tmp_path / "one" / table))
    assert len(pd.read_csv(tmp_path / "one" / "rounds.csv")) == 2
    # resumed mid-episode (10 of Pendulum's 200 steps per env), the envs' states moving from one process to the
    # workers and back: both runs go on as one straight run
    assert main(["finetune", *flags, "--steps", "60", "--out", one, "--resume", "--workers", "2"]) == 0
    assert main(["finetune", *flags, "--steps", "60", "--out", two, "--resume"]) == 0
    assert main(["finetune", *flags, "--steps", "60", "--out", straight]) == 0
    assert "warning" not in capsys.readouterr().err
    for resumed in (one, two):
        for table in ("rounds.csv", "metrics.csv"):
            pd.testing.assert_frame_equal(pd.read_csv(os.path.join(resumed, table)),
                                          pd.read_csv(os.path.join(straight, table)))
