"""aql make-dataset: D4RL-style datasets whose episodes replay exactly, and a run that survives interruption."""

from __future__ import annotations

import json
import math
import os

import gymnasium as gym
import numpy as np
import pytest

from aql_agent.cli import main
from aql_agent.data import load_dataset
from aql_agent.errors import AqlError
from aql_agent.make_dataset import MakeDatasetSettings, make_datasets
from aql_agent.replay import ReplayReader, ReplayWriter

pytest.importorskip("mujoco")
TINY = dict(train_steps=300, snapshot_every=100, learning_starts=50, eval_episodes=1, hidden=(32, 32),
            min_gain=-math.inf, progress=False)


@pytest.fixture(scope="module")
def hopper(tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("hopper"))
    make_datasets(MakeDatasetSettings("hopper", out, transitions=250, **TINY))
    return out


def test_every_dataset_is_written_in_three_formats_with_a_card(hopper):
    with open(os.path.join(hopper, "card.json")) as f:
        card = json.load(f)
    assert card["env"] == "Hopper-v5" and [s["step"] for s in card["snapshots"]] == [100, 200, 300]
    assert card["expert"]["step"] == 300 and card["medium"]["step"] in (100, 200)
    assert {"gymnasium", "mujoco", "torch", "aql_agent"} <= set(card["versions"])
    for kind in ("random", "medium", "expert", "medium-replay", "medium-expert"):
        log, npz, hdf5 = (load_dataset(os.path.join(hopper, f"hopper-{kind}{suffix}"))
                          for suffix in (".aqlog", ".npz", ".hdf5"))
        assert log == npz == hdf5
        assert card["datasets"][kind]["transitions"] == len(npz)
        assert card["datasets"][kind]["sha256"] == npz.digest()  # what a result trained on it can name
    sizes = {kind: card["datasets"][kind]["transitions"] for kind in card["datasets"]}
    assert sizes["random"] == sizes["medium"] == sizes["expert"] == 250
    assert sizes["medium-replay"] == card["medium"]["step"]
    assert sizes["medium-expert"] == 500
    assert not os.path.exists(os.path.join(hopper, ".staging"))


@pytest.mark.parametrize("kind", ["random", "medium", "expert"])
def test_recorded_actions_replay_to_the_same_rewards_and_terminations(hopper, kind):
    env = gym.make("Hopper-v5")
    reader = ReplayReader(os.path.join(hopper, f"hopper-{kind}.aqlog"))
    assert reader.header.players["agent"]["kind"] == ("random" if kind == "random" else "agent")
    episodes = list(reader.episodes())
    for episode in episodes:
        part = episode.agents["agent"]
        env.reset(seed=episode.seed)
        for action, reward, terminated in zip(part.actions, part.rewards, part.terminated):
            _, again, really_terminated, _, _ = env.step(action)
            assert again == pytest.approx(reward, rel=1e-5, abs=1e-5) and really_terminated == terminated
    last = episodes[-1].agents["agent"]
    assert last.truncated[-1] or last.terminated[-1]  # the cut at 250 transitions is a timeout, not a fall
    data = load_dataset(os.path.join(hopper, f"hopper-{kind}.npz"))
    assert data.terminals.sum() + data.timeouts.sum() == len(episodes)
    assert not (data.terminals & data.timeouts).any()


def test_timeouts_fall_at_the_time_limit_and_terminals_never_without_a_fall(tmp_path):
    make_datasets(MakeDatasetSettings("Pendulum-v1", str(tmp_path), transitions=450, kinds=("random", "expert"),
                                      **TINY))
    data = load_dataset(str(tmp_path / "pendulum-random.npz"))
    assert np.flatnonzero(data.timeouts).tolist() == [199, 399, 449] and not data.terminals.any()


def test_an_interrupted_collection_leaves_no_complete_looking_file_and_resumes(tmp_path, monkeypatch):
    settings = MakeDatasetSettings("Pendulum-v1", str(tmp_path), transitions=200, kinds=("random", "medium"), **TINY)
    original = ReplayWriter.add_step
    calls = {"n": 0}

    def flaky(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 300:  # in the middle of the medium dataset
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ReplayWriter, "add_step", flaky)
    with pytest.raises(KeyboardInterrupt):
        make_datasets(settings)
    monkeypatch.setattr(ReplayWriter, "add_step", original)
    assert os.path.exists(tmp_path / "pendulum-random.npz")
    assert not any(name.startswith("pendulum-medium") for name in os.listdir(tmp_path))
    with open(tmp_path / "card.json") as f:
        assert list(json.load(f)["datasets"]) == ["random"]
    with pytest.raises(AqlError, match="--resume"):
        make_datasets(settings)
    settings.resume = True
    card = make_datasets(settings)
    assert list(card["datasets"]) == ["random", "medium"]
    assert len(load_dataset(str(tmp_path / "pendulum-medium.npz"))) == 200


def test_training_resumes_from_its_last_snapshot(tmp_path):
    make_datasets(MakeDatasetSettings("Pendulum-v1", str(tmp_path), transitions=50, kinds=("random",), **TINY))
    settings = MakeDatasetSettings("Pendulum-v1", str(tmp_path), transitions=50, kinds=("random", "expert"),
                                   resume=True, **{**TINY, "train_steps": 500})
    card = make_datasets(settings)
    assert [s["step"] for s in card["snapshots"]] == [100, 200, 300, 400, 500] and card["expert"]["step"] == 500
    buffer = np.load(tmp_path / "behaviour" / "buffer.npz")
    assert len(buffer["rewards"]) == 500 and buffer["timeouts"][299]  # the cut where training stopped
    assert card["settings"]["train_steps"] == 500 and card["settings"]["kinds"] == ["random", "expert"]
    assert card["earlier_settings"][0]["train_steps"] == 300  # what the first part ran with is kept


def test_bad_input_is_one_clear_error(tmp_path, capsys):
    assert main(["make-dataset", "--env", "Nope-v9", "--out", str(tmp_path / "a")]) == 2
    assert "Nope-v9" in capsys.readouterr().err
    assert main(["make-dataset", "--env", "CartPole-v1", "--out", str(tmp_path / "b")]) == 2
    assert "needs a continuous (Box) action space" in capsys.readouterr().err
    assert main(["make-dataset", "--env", "Pendulum-v1", "--out", str(tmp_path / "c"), "--train-steps", "200",
                 "--snapshot-every", "100", "--learning-starts", "50", "--eval-episodes", "1", "--transitions", "50",
                 "--min-gain", "100000", "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert "no medium policy" in error and "snapshots 100: " in error and "raise --train-steps" in error
    assert main(["make-dataset", "--env", "Pendulum-v1", "--out", str(tmp_path / "d"), "--kinds", "best"]) == 2
    assert "unknown dataset kinds ['best']" in capsys.readouterr().err
