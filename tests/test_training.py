"""`aql train` / `aql eval`: logs, checkpoints, bit-exact resume, evaluation and bad input."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
import torch

from aql_agent.checkpoint import load_learner, load_policy, read_checkpoint
from aql_agent.cli import main
from aql_agent.data import TransitionDataset, save_dataset
from aql_agent.errors import AqlError, DatasetError
from aql_agent.scores import normalized_score
from aql_agent.training import TrainSettings, train

TINY = ["--set", "hidden=[32,32]", "--set", "batch_size=32"]


def read_csv(path: str) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_train_writes_logs_checkpoints_and_evaluates(pendulum_data, tmp_path, capsys):
    out = str(tmp_path / "run")
    code = main(["train", "--algo", "aql", "--data", pendulum_data, "--out", out, "--steps", "60", "--env",
                 "Pendulum-v1", "--eval-every", "30", "--eval-episodes", "1", "--checkpoint-every", "30",
                 "--log-every", "10", "--normalize-observations", "--no-progress", *TINY,
                 "--set", "warmup_steps=20", "--set", "vae_hidden=[16]", "--set", "residual_hidden=[16]"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 60 and summary["evaluation"]["episodes"] == 1
    rows = read_csv(os.path.join(out, "metrics.csv"))
    assert [int(r["step"]) for r in rows] == list(range(10, 61, 10))
    assert {"critic_loss", "gen_mse", "alpha"} <= set(rows[0])
    assert [int(r["step"]) for r in read_csv(os.path.join(out, "eval.csv"))] == [30, 60]
    assert os.listdir(os.path.join(out, "tensorboard"))
    assert sorted(os.listdir(os.path.join(out, "checkpoints"))) == ["step-000000030", "step-000000060"]
    info, state = read_checkpoint(out)  # the run folder resolves to its latest checkpoint
    assert info["step"] == 60 and info["algo"] == "aql" and info["learner_config"]["hidden"] == [32, 32]
    assert info["preprocessing"]["action_low"] == [-2.0] and "learner" in state
    with open(os.path.join(out, "train.json")) as f:
        assert json.load(f)["settings"]["algo"] == "aql"

    policy = load_policy(out)
    action = policy(np.zeros(3, np.float32))
    assert action.shape == (1,) and -2.0 <= action[0] <= 2.0

    assert main(["eval", "--checkpoint", out, "--env", "Pendulum-v1", "--episodes", "2"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["episodes"] == 2 and len(result["returns"]) == 2 and result["algo"] == "aql"
    assert "normalized_mean" not in result  # D4RL has no reference returns for Pendulum
    # Acting samples change at evaluation only: the trained number reproduces the plain evaluation exactly.
    assert main(["eval", "--checkpoint", out, "--env", "Pendulum-v1", "--episodes", "2", "--act-samples", "10"]) == 0
    same = json.loads(capsys.readouterr().out)
    assert same["returns"] == result["returns"] and same["act_samples"] == 10
    assert main(["eval", "--checkpoint", out, "--env", "Pendulum-v1", "--episodes", "2", "--act-samples", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["act_samples"] == 1
    assert main(["eval", "--checkpoint", out, "--env", "Pendulum-v1", "--episodes", "2", "--act-with-targets"]) == 0
    assert json.loads(capsys.readouterr().out)["act_with_targets"] is True


def test_train_from_a_replay_log(tmp_path):
    """The data path a game team uses: record episodes into a replay log, then train from the log."""
    from aql_agent.adapters.gym import make_env, random_policy, record_episodes

    env = make_env("Pendulum-v1", seed=0)
    log = str(tmp_path / "pendulum.aqlog")
    record_episodes(env, random_policy(env), log, episodes=2, seed=0, progress=False)
    summary = train(TrainSettings("bcq", log, str(tmp_path / "run"), steps=20, env="Pendulum-v1", eval_every=20,
                                  eval_episodes=1, progress=False, tensorboard=False,
                                  learner={"hidden": [16], "vae_hidden": [16], "batch_size": 16}))
    assert summary["evaluation"]["episodes"] == 1 and np.isfinite(summary["metrics"]["critic_loss"])
    info, _ = read_checkpoint(summary["checkpoint"])
    assert info["preprocessing"]["action_high"] == [2.0]


@pytest.mark.parametrize("algo", ["bear", "cql"])
def test_resume_is_bit_exact(pendulum_data, tmp_path, algo):
    common = dict(algo=algo, data=pendulum_data, seed=3, log_every=5, checkpoint_every=20, progress=False,
                  tensorboard=False, learner={"hidden": [16, 16], "batch_size": 16, "warmup_steps": 10}
                  if algo == "bear" else {"hidden": [16, 16], "batch_size": 16})
    straight = str(tmp_path / "straight")
    train(TrainSettings(out=straight, steps=50, **common))
    interrupted = str(tmp_path / "interrupted")
    train(TrainSettings(out=interrupted, steps=30, **common))  # stops after a checkpoint at 20 and one at 30
    os.remove(os.path.join(interrupted, "latest.json"))  # make it resume from step 20: rows 25, 30 get redone
    with open(os.path.join(interrupted, "latest.json"), "w") as f:
        json.dump({"checkpoint": "checkpoints/step-000000020", "step": 20}, f)
    with pytest.raises(AqlError, match="--resume"):
        train(TrainSettings(out=interrupted, steps=50, **common))
    summary = train(TrainSettings(out=interrupted, steps=50, resume=True, **common))
    assert summary["start_step"] == 20
    assert read_csv(os.path.join(straight, "metrics.csv")) == read_csv(os.path.join(interrupted, "metrics.csv"))
    a, _, _ = load_learner(straight)
    b, _, _ = load_learner(interrupted)
    for key, value in a.state_dict()["nets"].items():
        assert torch.equal(value, b.state_dict()["nets"][key]), key


def test_resume_refuses_another_algorithm(pendulum_data, tmp_path):
    out = str(tmp_path / "run")
    settings = dict(data=pendulum_data, out=out, steps=10, progress=False, tensorboard=False,
                    learner={"hidden": [16], "batch_size": 8})
    train(TrainSettings(algo="bc", **settings))
    with pytest.raises(AqlError, match="trained with 'bc', not 'ddpg'"):
        train(TrainSettings(algo="ddpg", resume=True, **settings))
    with pytest.raises(AqlError, match="other data preprocessing"):
        train(TrainSettings(algo="bc", resume=True, normalize_observations=True, **settings))
    with pytest.raises(AqlError, match="already at step 10"):
        train(TrainSettings(algo="bc", resume=True, **settings))


def test_a_resumed_run_may_change_how_it_acts_but_not_how_it_trains(pendulum_data, tmp_path):
    """`act_with_targets` and `act_samples` shape acting only: a resumed run takes them (its checkpoints from
    then on act the new way, on the targets' weights) and trains exactly as without them; any other change is
    refused."""
    common = dict(algo="aql", data=pendulum_data, seed=1, checkpoint_every=20, progress=False, tensorboard=False)
    tiny = {"hidden": [16, 16], "vae_hidden": [16], "residual_hidden": [16], "batch_size": 16, "warmup_steps": 10}
    straight, switched = str(tmp_path / "straight"), str(tmp_path / "switched")
    train(TrainSettings(out=straight, steps=40, learner=tiny, **common))
    train(TrainSettings(out=switched, steps=20, learner=tiny, **common))
    with pytest.raises(AqlError, match="only act_samples, act_with_targets may change"):
        train(TrainSettings(out=switched, steps=40, resume=True, learner={**tiny, "critic_learning_rate": 1e-4},
                            **common))
    train(TrainSettings(out=switched, steps=40, resume=True, learner={**tiny, "act_with_targets": True}, **common))
    a, _, _ = load_learner(straight)
    b, info, _ = load_learner(switched)
    assert info["learner_config"]["act_with_targets"] and b.config.act_with_targets
    for key, value in a.state_dict()["nets"].items():
        assert torch.equal(value, b.state_dict()["nets"][key]), key
    observations = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    torch.manual_seed(0)
    acted = b.act(observations)
    b.nets["generator"].load_state_dict(b.nets["generator_target"].state_dict())
    b.nets["critic"].load_state_dict(b.nets["critic_target"].state_dict())
    b.config = a.config  # the trained nets, now holding the targets' weights
    torch.manual_seed(0)
    np.testing.assert_array_equal(acted, b.act(observations))
    torch.manual_seed(0)
    assert not np.array_equal(acted, a.act(observations))  # 40 updates apart: the averages are not the weights


def bad_data(tmp_path, **changes) -> str:
    rng = np.random.default_rng(0)
    arrays = dict(observations=rng.normal(size=(20, 3)).astype(np.float32),
                  actions=rng.uniform(-1, 1, size=(20, 1)).astype(np.float32),
                  rewards=np.zeros(20, np.float32), next_observations=rng.normal(size=(20, 3)).astype(np.float32),
                  terminals=np.zeros(20, bool), timeouts=np.zeros(20, bool))
    arrays.update(changes)
    path = str(tmp_path / f"bad-{len(os.listdir(tmp_path))}.npz")
    save_dataset(TransitionDataset(**arrays), path)
    return path


def test_bad_input_fails_before_training(tmp_path, capsys):
    out = str(tmp_path / "never")
    nan_obs = np.ones((20, 3), np.float32)
    nan_obs[7, 1] = np.nan
    with pytest.raises(DatasetError, match="observations has 1 rows with NaN, infinity or values beyond float32's "
                                           "range \\(first at row 7\\)"):
        train(TrainSettings("bc", bad_data(tmp_path, observations=nan_obs), out))
    huge = np.ones((20, 3), np.float64)
    huge[4, 0] = 1e39  # finite in float64, inf once training casts to float32
    with pytest.raises(DatasetError, match="rows with NaN, infinity or values beyond float32's range \\(first at "
                                           "row 4\\)"):
        train(TrainSettings("bc", bad_data(tmp_path, observations=huge), out))
    with pytest.raises(DatasetError, match="does not fit Hopper-v5"):
        train(TrainSettings("bc", bad_data(tmp_path), out, env="Hopper-v5"))
    with pytest.raises(DatasetError, match="continuous learners need float actions"):
        train(TrainSettings("bc", bad_data(tmp_path, actions=np.zeros(20, np.int64)), out))
    with pytest.raises(DatasetError, match="pass --env"):
        train(TrainSettings("bc", bad_data(tmp_path, actions=np.full((20, 1), 3.0, np.float32)), out))
    with pytest.raises(AqlError, match="unknown algorithm 'td3'"):
        train(TrainSettings("td3", bad_data(tmp_path), out))
    assert not os.path.exists(out)

    assert main(["train", "--algo", "bc", "--data", str(tmp_path / "missing.npz"), "--out", out]) == 2
    assert "dataset not found" in capsys.readouterr().err
    assert main(["train", "--algo", "bc", "--data", bad_data(tmp_path), "--out", out, "--set", "lr=1"]) == 2
    assert "unknown BCConfig field(s) ['lr']" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(tmp_path), "--env", "Pendulum-v1"]) == 2
    assert "neither a checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--algo", "td3", "--data", "x", "--out", out])


def test_checkpoint_of_another_shape_and_corrupt_weights(pendulum_data, tmp_path, capsys):
    out = str(tmp_path / "run")
    train(TrainSettings("bc", pendulum_data, out, steps=5, progress=False, tensorboard=False,
                        learner={"hidden": [8], "batch_size": 8}))
    assert main(["eval", "--checkpoint", out, "--env", "Hopper-v5", "--episodes", "1"]) == 2
    assert "takes 3 observation features and 1 actions; Hopper-v5 gives 11 and 3" in capsys.readouterr().err
    weights = os.path.join(out, "checkpoints", "step-000000005", "model.pt")
    with open(weights, "r+b") as f:
        f.truncate(100)
    with pytest.raises(AqlError, match="cannot be loaded as weights"):
        load_policy(out)


def test_normalized_score_uses_d4rl_references():
    assert normalized_score("Hopper-v5", 3234.3) == pytest.approx(100.0)
    assert normalized_score("hopper-medium-v2", -20.272305) == pytest.approx(0.0)
    assert normalized_score("Walker2d-v5", 1.629008) == pytest.approx(0.0)
    assert normalized_score("Pendulum-v1", 100.0) is None
