"""`aql finetune`: mixed batches in the asked proportion, the constraint schedule, end to end, resume, bad input."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil

import numpy as np
import pytest
import torch
from conftest import random_play

from aql_agent.checkpoint import Preprocessing, load_learner
from aql_agent.cli import main
from aql_agent.data import TransitionDataset, save_dataset
from aql_agent.errors import AqlError
from aql_agent.finetune import FieldSchedule, FinetuneSettings, MixedSampler, finetune
from aql_agent.learners import make_learner
from aql_agent.learners.base import behaviour_mean, behaviour_rows
from aql_agent.training import TensorSampler, TrainSettings, train, transition_rows

TINY = {"hidden": [32, 32], "batch_size": 32}


def read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def tiny_offline_run(data: str, out: str, algo: str, **learner) -> str:
    train(TrainSettings(algo, data, out, steps=30, checkpoint_every=30, log_every=10, progress=False,
                        tensorboard=False, learner={**TINY, **learner}))
    return out


@pytest.fixture(scope="module")
def cartpole_data(tmp_path_factory) -> str:
    """Random CartPole-v1 play: short episodes, integer actions."""
    return random_play("CartPole-v1", 8, str(tmp_path_factory.mktemp("data") / "cartpole-random.npz"))


def marked(n: int, reward: float, obs_dim: int = 3) -> TransitionDataset:
    """Transitions whose reward says where they came from."""
    zeros = np.zeros((n, obs_dim), np.float32)
    return TransitionDataset(zeros, np.zeros((n, 1), np.float32), np.full(n, reward, np.float32), zeros,
                             np.zeros(n, bool), np.zeros(n, bool))


@pytest.mark.parametrize("ratio", [0.5, 0.25, 0.0, 1.0])
def test_every_batch_mixes_offline_and_online_rows_in_the_asked_proportion(ratio):
    preprocessing = Preprocessing.identity(3, 1)
    sampler = MixedSampler(TensorSampler(marked(500, 0.0), preprocessing, seed=0, device="cpu"), ratio, seed=0)
    assert sampler.sample(64).rewards.sum() == 0  # no online data yet: all offline
    sampler.drawn = {"offline": 0, "online": 0}
    sampler.add(transition_rows(marked(40, 1.0), preprocessing)[0])
    for _ in range(20):
        online_rows = sampler.sample(64).rewards.sum().item()
        assert online_rows == 64 - round(64 * ratio)
    assert sampler.drawn == {"offline": 20 * round(64 * ratio), "online": 20 * (64 - round(64 * ratio))}
    with pytest.raises(AqlError, match="columns"):
        sampler.add(np.zeros((3, 5), np.float32))


def test_the_online_buffer_keeps_every_round_in_order_and_grows_by_doubling():
    """Rounds of online rows land in play order, nothing lost or reordered, and the storage grows by doubling
    (a 2M-decision run copied its whole buffer once per round when it grew by concatenation)."""
    preprocessing = Preprocessing.identity(3, 1)
    sampler = MixedSampler(TensorSampler(marked(50, 0.0), preprocessing, seed=0, device="cpu"), 0.5, seed=0)
    rounds = [transition_rows(marked(n, float(i + 1)), preprocessing)[0] for i, n in enumerate((7, 1, 30, 2, 100))]
    capacities = []
    for rows in rounds:
        sampler.add(rows)
        capacities.append(len(sampler._storage))
    assert torch.equal(sampler.online, torch.as_tensor(np.concatenate(rounds)))
    assert capacities == [7, 14, 38, 76, 152]
    assert set(sampler.sample(64).rewards.unique().tolist()) <= {0.0, 1.0, 2.0, 3.0, 4.0, 5.0}


def test_behaviour_models_learn_from_the_offline_rows_only():
    preprocessing = Preprocessing.identity(3, 1)
    sampler = MixedSampler(TensorSampler(marked(100, 0.0), preprocessing, seed=0, device="cpu"), 0.25, seed=0)
    sampler.add(transition_rows(marked(10, 1.0), preprocessing)[0])
    batch = sampler.sample(16)
    assert batch.offline.tolist() == [True] * 4 + [False] * 12 and batch.rewards[:4].sum() == 0
    behaviour = behaviour_rows(batch)
    assert len(behaviour.observations) == 4 and behaviour.offline is None and behaviour.rewards.sum() == 0
    assert behaviour_mean(batch.rewards, batch) == 0 and batch.rewards.mean() > 0
    unmarked = MixedSampler(sampler.offline, 0.25, seed=0, mark_offline=False)
    assert unmarked.sample(16).offline is None and behaviour_rows(unmarked.sample(16)).observations.shape[0] == 16


def test_the_constraint_relaxes_linearly_in_the_looser_direction():
    settings = FinetuneSettings("unused", "Pendulum-v1", "unused", steps=1000, relax=4.0)
    aql = make_learner("aql", 3, 1, TINY)
    schedule = FieldSchedule.constraint(aql, settings)
    assert (schedule.field, schedule.start, schedule.final, schedule.steps) == ("epsilon", 0.05, 0.2, 500)
    assert [round(schedule.apply(aql, t), 4) for t in (0, 250, 500, 900)] == [0.05, 0.125, 0.2, 0.2]
    assert aql.config.epsilon == 0.2
    bcq = make_learner("bcq-discrete", 3, 2, TINY)  # a smaller threshold allows more actions
    schedule = FieldSchedule.constraint(bcq, FinetuneSettings("u", "CartPole-v1", "u", steps=100,
                                                                    constraint_final=0.0, anneal_steps=10))
    assert schedule.value(0) == 0.3 and schedule.value(5) == pytest.approx(0.15) and schedule.value(50) == 0.0
    cql = make_learner("cql", 3, 1, TINY)
    assert FieldSchedule.constraint(cql, settings).final == pytest.approx(5.0 / 4)
    assert FieldSchedule.constraint(make_learner("dqn", 3, 2, TINY), settings).apply(cql, 5) is None


def test_continuous_finetune_end_to_end(pendulum_data, tmp_path):
    offline = tiny_offline_run(pendulum_data, str(tmp_path / "offline"), "aql", warmup_steps=10)
    out = tmp_path / "tuned"
    summary = finetune(FinetuneSettings(offline, "Pendulum-v1", str(out), steps=300, round_steps=100,
                                        updates_per_step=0.5, relax=4.0, eval_every=300, eval_episodes=1, log_every=25,
                                        progress=False, tensorboard=False))
    assert summary["env_steps"] == 300 and summary["updates"] == 30 + 150
    assert summary["drawn"] == {"offline": 150 * 16, "online": 150 * 16}
    evaluations = read_csv(out / "eval.csv")
    assert [int(r["step"]) for r in evaluations] == [0, 300]  # the offline checkpoint first, measured alike
    rounds = read_csv(out / "rounds.csv")
    assert [int(r["online_buffer"]) for r in rounds] == [100, 200, 300]
    assert {float(r["offline_fraction"]) for r in rounds} == {0.5}
    assert [round(float(r["constraint"]), 4) for r in rounds] == [0.05, 0.15, 0.2]
    learner, info, _ = load_learner(out)
    assert learner.config.epsilon == pytest.approx(0.2) and info["step"] == 300 and learner.updates == 180
    assert len(np.load(out / "online-buffer.npz")["rows"]) == 300
    metrics = read_csv(out / "metrics.csv")
    assert metrics and all(np.isfinite(float(r["critic_loss"])) for r in metrics)


def test_discrete_finetune_from_the_cli_and_resume(cartpole_data, tmp_path, capsys):
    offline = tiny_offline_run(cartpole_data, str(tmp_path / "offline"), "bcq-discrete")
    out = str(tmp_path / "tuned")
    common = ["finetune", "--checkpoint", offline, "--env", "CartPole-v1", "--out", out, "--round-steps", "50",
              "--updates-per-step", "0.2", "--relax", "4", "--eval-every", "100", "--eval-episodes", "1",
              "--exploration", "0.2",
              "--no-progress", "--no-tensorboard"]
    assert main([*common, "--steps", "100"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["env_steps"] == 100 and first["constraint"]["field"] == "threshold"
    assert main([*common, "--steps", "200", "--resume"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["env_steps"] == 200 and second["updates"] == 30 + 40
    assert second["drawn"]["offline"] == second["drawn"]["online"] == 40 * 16
    assert [int(r["step"]) for r in read_csv(os.path.join(out, "eval.csv"))] == [0, 100, 200]
    learner, _, _ = load_learner(out)
    assert learner.config.exploration_epsilon == 0.2 and learner.config.threshold < 0.3
    assert len(np.load(os.path.join(out, "online-buffer.npz"))["rows"]) == 200
    # resumed with other flags, the run would change course silently (a --set would not even take effect)
    before = open(os.path.join(out, "finetune.json")).read()
    for changed, named in ((["--offline-ratio", "0.25"], "offline_ratio 0.5 -> 0.25"),
                           (["--set", "gamma=0.9"], "learner {} -> {'gamma': 0.9}"),
                           (["--recipe", "warmstart"], "recipe 'conservative' -> 'warmstart'")):
        assert main([*common, "--steps", "300", "--resume", *changed]) == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith(f"aql: error: cannot resume {out}: it started with other settings (")
        assert named in error and "\n" not in error
    assert open(os.path.join(out, "finetune.json")).read() == before
    assert main([*common, "--steps", "300", "--resume", "--anneal-steps", "50"]) == 0  # the run's own: 100 / 2
    assert json.loads(open(os.path.join(out, "finetune.json")).read())["constraint"]["steps"] == 50
    capsys.readouterr()
    os.remove(os.path.join(out, "finetune.json"))
    assert main([*common, "--steps", "300", "--resume"]) == 2
    assert "finetune.json is missing" in capsys.readouterr().err


def test_finetuning_updates_the_policy(cartpole_data, tmp_path):
    offline = tiny_offline_run(cartpole_data, str(tmp_path / "offline"), "dqn")
    finetune(FinetuneSettings(offline, "CartPole-v1", str(tmp_path / "tuned"), steps=100, round_steps=100,
                              eval_every=100, eval_episodes=1, progress=False, tensorboard=False))
    before, _, _ = load_learner(offline)
    after, _, _ = load_learner(tmp_path / "tuned")
    assert after.updates == before.updates + 100
    assert any(not torch.equal(a, b) for a, b in zip(before.nets.state_dict().values(),
                                                         after.nets.state_dict().values()))


def test_bad_settings_and_checkpoints_fail_with_one_clear_error(pendulum_data, cartpole_data, tmp_path):
    bc = tiny_offline_run(pendulum_data, str(tmp_path / "bc"), "bc")
    with pytest.raises(AqlError, match="learns no value function"):
        finetune(FinetuneSettings(bc, "Pendulum-v1", str(tmp_path / "a"), steps=10))
    aql = tiny_offline_run(pendulum_data, str(tmp_path / "aql"), "aql")
    with pytest.raises(AqlError, match="offline-ratio"):
        finetune(FinetuneSettings(aql, "Pendulum-v1", str(tmp_path / "c"), offline_ratio=1.5))
    with pytest.raises(AqlError, match="moba-1v1 takes a discrete one"):
        finetune(FinetuneSettings(aql, "moba-1v1", str(tmp_path / "d")))
    with pytest.raises(AqlError, match="continuous learners need float actions"):
        finetune(FinetuneSettings(aql, "Pendulum-v1", str(tmp_path / "e"), data=cartpole_data))
    wider = str(tmp_path / "wider.npz")
    save_dataset(marked(50, 0.0, obs_dim=5), wider)
    with pytest.raises(AqlError, match="observation features"):
        finetune(FinetuneSettings(aql, "Pendulum-v1", str(tmp_path / "e"), data=wider))
    lonely = tmp_path / "lonely"
    shutil.copytree(os.path.join(aql, "checkpoints", "step-000000030"), lonely)
    with pytest.raises(AqlError, match="pass --data"):
        finetune(FinetuneSettings(str(lonely), "Pendulum-v1", str(tmp_path / "f")))
    finetune(FinetuneSettings(aql, "Pendulum-v1", str(tmp_path / "g"), steps=20, round_steps=20, eval_episodes=1,
                              progress=False, tensorboard=False))
    with pytest.raises(AqlError, match="--resume"):
        finetune(FinetuneSettings(aql, "Pendulum-v1", str(tmp_path / "g"), steps=20))


def test_resume_continues_a_game_fine_tuning_exactly(connect_four_run, tmp_path, capsys):
    """Stopped after the first evaluation and resumed, a run's tables, buffer and weights equal one straight run's
    (rounds are whole games; the exploration and batch streams, the owed update and the metrics window are
    restored)."""
    import pandas as pd

    flags = ["finetune", "--checkpoint", connect_four_run, "--env", "connect-four", "--opponent", "random",
             "--round-games", "2", "--updates-per-step", "0.7", "--eval-every", "30", "--eval-episodes", "2",
             "--set", "exploration=boltzmann", "--exploration", "0.5", "--exploration-final", "0.1",
             "--anneal-steps", "60",
             "--log-every", "7", "--seed", "3", "--no-progress", "--no-tensorboard"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main([*flags, "--steps", "70", "--out", str(straight)]) == 0
    assert main([*flags, "--steps", "30", "--out", str(split)]) == 0
    assert main([*flags, "--steps", "70", "--out", str(split), "--resume"]) == 0
    capsys.readouterr()
    for table in ("rounds.csv", "metrics.csv", "eval.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(split / table), pd.read_csv(straight / table))
    assert len(pd.read_csv(straight / "eval.csv")) >= 3 and len(pd.read_csv(straight / "metrics.csv")) >= 3
    np.testing.assert_array_equal(np.load(split / "online-buffer.npz")["rows"],
                                  np.load(straight / "online-buffer.npz")["rows"])
    (a, _, _), (b, _, _) = load_learner(straight), load_learner(split)
    for key, value in a.nets.state_dict().items():
        assert torch.equal(value, b.nets.state_dict()[key]), key


def test_resume_continues_a_gymnasium_fine_tuning_exactly_mid_episode(pendulum_data, tmp_path, capsys):
    """Pendulum's episodes are 200 steps: stopped at step 150, the run's checkpoint cuts one; resumed, the
    episode is replayed to where it was and the run's tables, buffer and weights equal one straight run's."""
    import pandas as pd

    offline = tiny_offline_run(pendulum_data, str(tmp_path / "offline"), "aql")
    flags = ["finetune", "--checkpoint", offline, "--env", "Pendulum-v1", "--round-steps", "50",
             "--updates-per-step", "0.2", "--eval-every", "150", "--eval-episodes", "1", "--log-every", "3",
             "--seed", "4", "--no-progress", "--no-tensorboard"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main([*flags, "--steps", "300", "--out", str(straight)]) == 0
    assert main([*flags, "--steps", "150", "--out", str(split)]) == 0
    assert main([*flags, "--steps", "300", "--out", str(split), "--resume"]) == 0
    assert "warning" not in capsys.readouterr().err
    for table in ("rounds.csv", "metrics.csv", "eval.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(split / table), pd.read_csv(straight / table))
    np.testing.assert_array_equal(np.load(split / "online-buffer.npz")["rows"],
                                  np.load(straight / "online-buffer.npz")["rows"])
    (a, _, _), (b, _, _) = load_learner(straight), load_learner(split)
    for key, value in a.nets.state_dict().items():
        assert torch.equal(value, b.nets.state_dict()[key]), key
    # a hand-edited checkpoint whose online-play state is damaged: one error line, not a traceback
    model = os.path.join(json.loads(open(split / "latest.json").read())["checkpoint"], "model.pt")
    if not os.path.isabs(model):
        model = os.path.join(split, model)
    saved = torch.load(model, weights_only=True)
    for damaged in ("{not json", json.dumps([{"episode_start": {}}])):
        saved["trainer"]["collector"] = damaged
        torch.save(saved, model)
        assert main([*flags, "--steps", "400", "--out", str(split), "--resume"]) == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith(f"aql: error: cannot resume {split}: its checkpoint's online-play state is unreadable")
        assert "\n" not in error


def test_a_mujoco_collector_goes_on_from_its_state_as_if_never_stopped():
    """StepCollector.state / restore on Hopper-v5: after episodes that ended (resets from the env's own stream)
    and mid-episode, a fresh collector restored from the state plays the same transitions; a state whose replay
    ends elsewhere says so."""
    from aql_agent.adapters.gym import StepCollector, StepCollectors

    class Wobbly:  # a policy with random draws of its own, as AQL's sampled proposals
        discrete = False

        def act(self, observation, deterministic=False):
            return np.tanh(observation[:3] + torch.randn(3).numpy()).astype(np.float32)

    collector = StepCollector("Hopper-v5", 11, 0.3)
    first = collector.play(Wobbly(), 150)
    assert first.summary["episodes"] >= 2 and "random" in collector.state()["episode_start"]
    state = json.loads(json.dumps(collector.state()))  # as a checkpoint carries it
    went_on = collector.play(Wobbly(), 120)
    restored = StepCollector("Hopper-v5", 999, 0.3)
    assert restored.restore(state)
    again = restored.play(Wobbly(), 120)
    for field in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts"):
        np.testing.assert_array_equal(getattr(again.data, field), getattr(went_on.data, field))
    assert again.summary == went_on.summary and restored.episodes == collector.episodes
    state["observation"][0] += 1e-9
    assert not StepCollectors("Hopper-v5", 0, 0.3).collectors[0].restore(state)
    with pytest.raises(AqlError, match="resume with the --envs it started with"):
        StepCollectors("Hopper-v5", 0, 0.3, envs=2).restore([state])


def test_a_recipe_fills_the_unset_fields_and_round_trips_through_finetune_json(cartpole_data, tmp_path, capsys):
    """finetune.json records the settings with the recipe's values filled in and the learner changes made; the
    recorded settings, run again, make the same run."""
    import pandas as pd

    offline = tiny_offline_run(cartpole_data, str(tmp_path / "offline"), "bcq-discrete")
    out = tmp_path / "tuned"
    assert main(["finetune", "--checkpoint", offline, "--env", "CartPole-v1", "--out", str(out), "--steps", "100",
                 "--round-steps", "50", "--recipe", "conservative", "--offline-ratio", "0.25", "--set",
                 "exploration=boltzmann", "--exploration", "0.3", "--exploration-final", "0.1", "--anneal-steps",
                 "100", "--eval-every", "100", "--eval-episodes", "1", "--no-progress", "--no-tensorboard"]) == 0
    capsys.readouterr()
    with open(out / "finetune.json") as f:
        record = json.load(f)
    settings = FinetuneSettings(**record["settings"])
    assert settings == settings.resolved()  # nothing left for the recipe to fill
    assert (settings.offline_ratio, settings.updates_per_step, settings.constrain_on, settings.relax) == (
        0.25, 1.0, "offline", 1.0)  # the flag given wins; the rest are the recipe's
    assert record["learner_changes"] == {"applied": {"exploration": "boltzmann", "exploration_temperature": 0.3}}
    assert [float(r["exploration"]) for r in read_csv(out / "rounds.csv")] == [0.3, 0.2]
    learner, _, _ = load_learner(out)
    assert learner.config.exploration == "boltzmann"
    again = tmp_path / "again"
    finetune(dataclasses.replace(settings, out=str(again)))
    for table in ("rounds.csv", "metrics.csv", "eval.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(again / table), pd.read_csv(out / table))


def test_game_fine_tuning_protects_the_games_protected_actions(cartpole_data):
    """moba-1v1's heal and recall join a discrete learner's exploration_exclude unless asked otherwise."""
    from aql_agent.adapters.games import game_kind
    from aql_agent.finetune import learner_changes

    protected = game_kind("moba-1v1").protected_actions()
    assert len(protected) == 2
    learner = make_learner("aql-discrete", 130, 53, TINY)
    settings = FinetuneSettings("u", "moba-1v1", "u").resolved()
    assert learner_changes(learner, settings, protected)["config"].exploration_exclude == protected
    off = dataclasses.replace(settings, protect_actions=False)
    assert learner_changes(learner, off, protected)["config"].exploration_exclude == ()
    with pytest.raises(AqlError, match="do not exist"):
        learner_changes(learner, dataclasses.replace(settings, learner={"exploration_exclude": [60]}), protected)
    with pytest.raises(AqlError, match="has no field"):
        learner_changes(learner, dataclasses.replace(settings, learner={"epsilon": 0.1}), protected)
    with pytest.raises(AqlError, match="shapes the networks"):
        FinetuneSettings("u", "moba-1v1", "u", learner={"hidden": [8]})
    with pytest.raises(AqlError, match="unknown --recipe"):
        FinetuneSettings("u", "moba-1v1", "u", recipe="fast")


def test_a_recipe_changes_its_learner_s_fields_and_set_wins_over_it():
    """`loosen` frees AQL's generator (improve_on=all, residual fit under alpha) and leaves other learners'
    configs alone; a --set of the same field wins."""
    from aql_agent.finetune import learner_changes

    settings = FinetuneSettings("u", "Hopper-v5", "u", recipe="loosen").resolved()
    assert settings.relax == 4.0 and settings.online_warmup == 5000
    aql = make_learner("aql", 3, 2, TINY)
    changes = learner_changes(aql, settings, ())
    assert changes["applied"] == {"improve_on": "all", "residual_fit_under_alpha": True}
    assert changes["config"].improve_on == "all" and changes["config"].residual_fit_under_alpha
    asked = dataclasses.replace(settings, learner={"improve_on": "behaviour"})
    assert learner_changes(aql, asked, ())["config"].improve_on == "behaviour"
    assert learner_changes(make_learner("bear", 3, 2, TINY), settings, ())["applied"] == {}


def test_keep_behaviour_freezes_discrete_imitation_loosens_the_threshold_and_refuses_other_learners():
    """`keep-behaviour`: discrete BCQ's / AQL's G stops learning (the allowed set only widens as the threshold
    loosens) while Q still learns; a learner without G is refused, not given half a recipe."""
    from aql_agent.finetune import learner_changes, rebuilt_with
    from aql_agent.learners.base import Batch

    settings = FinetuneSettings("u", "moba-1v1", "u", recipe="keep-behaviour").resolved()
    warm = FinetuneSettings("u", "moba-1v1", "u", recipe="warmstart").resolved()
    assert dataclasses.replace(settings, recipe="warmstart", relax=1.0) == warm and settings.relax == 3.0
    for algo in ("aql", "dqn"):
        with pytest.raises(AqlError, match="keep-behaviour is made for bcq-discrete, aql-discrete"):
            learner_changes(make_learner(algo, 3, 2, TINY), settings, ())
    for algo in ("bcq-discrete", "aql-discrete"):
        offline = make_learner(algo, 4, 3, TINY)
        changes = learner_changes(offline, settings, ())
        assert changes["applied"] == {"imitation_learning_rate": 0.0}
        tuned = rebuilt_with(offline, changes["config"], "cpu")
        before = {k: v.clone() for k, v in tuned.state_dict()["nets"].items()}
        n = 32
        batch = Batch(torch.randn(n, 4), torch.randint(0, 3, (n,)), torch.randn(n), torch.randn(n, 4), torch.zeros(n))
        for _ in range(5):
            metrics = tuned.update(batch)
        after = tuned.state_dict()["nets"]
        assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("imitation."))
        # a frozen G is measured (its loss still logged), not stepped: no backward pass, no optimiser state
        assert "imitation_loss" in metrics and not tuned.optimizers["imitation"].state
        assert not all(torch.equal(before[k], after[k]) for k in before if k.startswith("q."))


def test_a_learning_rate_changed_for_fine_tuning_is_the_one_the_optimiser_uses():
    """`aql finetune --set alpha_learning_rate=0`: loading the offline optimiser states keeps their Adam
    moments but not their step sizes, which would otherwise silently undo the change."""
    offline = make_learner("aql", 3, 2, TINY)
    tuned = make_learner("aql", 3, 2, {**TINY, "alpha_learning_rate": 0.0, "critic_learning_rate": 1e-5})
    tuned.load_state_dict(offline.state_dict())
    assert [group["lr"] for group in tuned.optimizers["alpha"].param_groups] == [0.0]
    assert [group["lr"] for group in tuned.optimizers["critic"].param_groups] == [1e-5]
    assert [group["lr"] for group in tuned.optimizers["generator"].param_groups] == [3e-4]  # unchanged: as saved


def test_a_learning_rate_set_for_fine_tuning_takes_effect(pendulum_data, tmp_path):
    """`aql finetune --set alpha_learning_rate=0` holds AQL's multiplier where offline training left it (the
    optimisers are built from the changed config, not kept from the offline learner)."""
    offline = tiny_offline_run(pendulum_data, str(tmp_path / "offline"), "aql", warmup_steps=10)
    out = tmp_path / "tuned"
    finetune(FinetuneSettings(offline, "Pendulum-v1", str(out), steps=200, round_steps=100, updates_per_step=0.5,
                              eval_every=200, eval_episodes=1, log_every=10, progress=False, tensorboard=False,
                              learner={"alpha_learning_rate": 0.0}))
    alphas = {float(row["alpha"]) for row in read_csv(out / "metrics.csv") if int(row["step"]) > 30}
    assert len(alphas) == 1
    learner, _, _ = load_learner(out)
    assert learner.optimizers["alpha"].param_groups[0]["lr"] == 0.0


class QuadrantBandit:
    """One-step episodes: a context in [-1, 1]^2, four arms, reward 1 for the arm of the context's quadrant."""

    def __new__(cls, **kwargs):
        import gymnasium as gym
        from gymnasium import spaces

        class Env(gym.Env):
            observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
            action_space = spaces.Discrete(4)

            def reset(self, seed=None, options=None):
                super().reset(seed=seed)
                self.context = self.np_random.uniform(-1, 1, 2).astype(np.float32)
                return self.context, {}

            def step(self, action):
                best = 2 * int(self.context[0] > 0) + int(self.context[1] > 0)
                return self.context, float(int(action) == best), True, False, {}

        return Env()


def test_fine_tuning_improves_on_an_offline_policy_from_poor_data(tmp_path):
    """Logged by a behaviour that only ever pulls arms 0 and 1, the offline learner cannot know arms 2 and 3,
    which half the contexts need; online play (epsilon-greedy) finds them and fine-tuning must beat the
    offline policy on the same evaluation episodes."""
    import gymnasium as gym

    from aql_agent.spaces import space_to_spec

    if "AqlQuadrantBandit-v0" not in gym.registry:
        gym.register("AqlQuadrantBandit-v0", entry_point=QuadrantBandit)
    rng = np.random.default_rng(0)
    contexts = rng.uniform(-1, 1, (400, 2)).astype(np.float32)
    arms = rng.integers(0, 2, 400)
    best = 2 * (contexts[:, 0] > 0) + (contexts[:, 1] > 0)
    data = str(tmp_path / "poor.npz")
    env = gym.make("AqlQuadrantBandit-v0")
    spaces = {"observation_space": space_to_spec(env.observation_space),
              "action_space": space_to_spec(env.action_space)}  # four arms, though the data shows two
    save_dataset(TransitionDataset(contexts, arms, (arms == best).astype(np.float32), contexts, np.ones(400, bool),
                                   np.zeros(400, bool), metadata=spaces), data)
    offline = str(tmp_path / "offline")
    train(TrainSettings("dqn", data, offline, steps=300, checkpoint_every=300, log_every=100, progress=False,
                        tensorboard=False, learner={"hidden": [32, 32], "batch_size": 64, "gamma": 0.0}))
    summary = finetune(FinetuneSettings(offline, "AqlQuadrantBandit-v0", str(tmp_path / "tuned"), steps=600,
                                        round_steps=100, exploration=0.5, eval_every=600, eval_episodes=200,
                                        progress=False, tensorboard=False))
    before, after = summary["first_evaluation"]["return_mean"], summary["evaluation"]["return_mean"]
    assert before < 0.8 and after > before + 0.2, (before, after)


def test_online_warmup_delays_updates_and_the_ramp_grows_the_online_share(cartpole_data, tmp_path):
    """No update before --online-warmup steps (and none made up later); the online share of each round's batches
    grows linearly over --ramp-steps from 0 to 1 - offline_ratio."""
    offline = tiny_offline_run(cartpole_data, str(tmp_path / "offline"), "dqn")
    summary = finetune(FinetuneSettings(offline, "CartPole-v1", str(tmp_path / "tuned"), steps=200, round_steps=50,
                                        online_warmup=100, ramp_steps=200, offline_ratio=0.5, updates_per_step=1.0,
                                        eval_every=200, eval_episodes=1, progress=False, tensorboard=False))
    rounds = read_csv(tmp_path / "tuned" / "rounds.csv")
    assert [int(r["updates"]) for r in rounds] == [30, 30, 80, 130]  # the offline run's 30, then 50 per round
    assert summary["updates"] == 30 + 100
    # rounds 3 and 4 update with online shares 0.5 * 100/200 and 0.5 * 150/200 of each 32-row batch: 8 and 12 rows
    assert summary["drawn"] == {"offline": 50 * (32 - 8) + 50 * (32 - 12), "online": 50 * 8 + 50 * 12}


def test_self_play_meets_the_latest_checkpoint_and_is_evaluated_against_the_offline_one(connect_four_run, tmp_path,
                                                                                           capsys):
    """--opponent self: the first rounds play the offline checkpoint, the rounds after each evaluation the
    checkpoint it saved; every evaluation plays the offline checkpoint."""
    from aql_agent.replay import ReplayReader

    out = tmp_path / "self"
    assert main(["finetune", "--checkpoint", connect_four_run, "--env", "connect-four", "--opponent", "self",
                 "--steps", "40", "--round-games", "2", "--eval-every", "20", "--eval-episodes", "2", "--out", str(out),
                 "--no-progress", "--no-tensorboard"]) == 0
    summary = json.loads(capsys.readouterr().out)
    first = os.path.abspath(os.path.join(connect_four_run, "checkpoints", "step-000000020"))
    assert summary["first_evaluation"]["opponent"] == f"agent:{first}"
    assert summary["evaluation"]["opponent"] == summary["first_evaluation"]["opponent"]
    steps = [int(r["step"]) for r in read_csv(out / "rounds.csv")]
    saved = {int(r["step"]) for r in read_csv(out / "eval.csv")} - {0}
    opponents = []
    for index, round_ in enumerate(sorted(os.listdir(out / "online"))):
        (log,) = (out / "online" / round_).glob("*.aqlog")
        header = ReplayReader(str(log)).header
        (who,) = [p for p in header.players.values() if p.get("fine_tuning_round") is None]
        opponents.append(who["checkpoint"])
        latest = max([s for s in saved if s <= (steps[index - 1] if index else 0)], default=None)
        expected = (os.path.join(out, "checkpoints", f"step-{latest:09d}") if latest else
                    os.path.join(connect_four_run, "checkpoints", "step-000000020"))
        assert who["checkpoint"] == os.path.abspath(expected), index
    assert len(set(opponents)) >= 2  # it met itself after an evaluation
    with pytest.raises(AqlError, match="single-agent"):
        finetune(FinetuneSettings(connect_four_run, "CartPole-v1", str(tmp_path / "x"), opponent="self"))
    # --eval-opponent: self-play measured against a fixed opponent instead of the offline checkpoint
    fixed = finetune(FinetuneSettings(connect_four_run, "connect-four", str(tmp_path / "fixed"), steps=20,
                                      round_games=2, eval_every=20, eval_episodes=2, opponent="self",
                                      eval_opponent="random", progress=False, tensorboard=False))
    assert fixed["first_evaluation"]["opponent"] == fixed["evaluation"]["opponent"] == "random"
    assert main(["finetune", "--checkpoint", connect_four_run, "--env", "connect-four", "--opponent", "self",
                 "--eval-opponent", "bt:nobody", "--out", str(tmp_path / "bad")]) == 2
    assert capsys.readouterr().err.startswith("aql: error:")
    with pytest.raises(AqlError, match="single-agent: it takes no --eval-opponent"):
        finetune(FinetuneSettings(connect_four_run, "CartPole-v1", str(tmp_path / "y"), eval_opponent="random"))


@pytest.fixture
def harness(monkeypatch):
    """benchmarks/finetune.py as a module (the benchmarks folder is not a package)."""
    monkeypatch.syspath_prepend(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                             "benchmarks"))
    import finetune

    return finetune


def test_the_benchmark_s_verdicts_compare_against_the_pooled_seed_std(harness):
    """benchmarks/finetune.py's summary: a fine-tuned arm 'beats' another only when the gap of the means is above
    the pooled std of the two (per measure: final evaluation and mean of the last five); the heading names the
    opponent of a game suite."""
    def curve(*values: float) -> list:
        return [(1000 * step, value, None, None) for step, value in enumerate(values)]

    seeds = {seed: {"finetuned-conservative": curve(0.4 + shift, 0.6, 0.7 + shift, 0.8, 0.8, 0.9 + shift),
                    "offline-only": curve(0.5, 0.5, 0.5, 0.5, 0.5, 0.5 + shift),
                    "scratch": curve(0.1, 0.1, 0.1, 0.1, 0.1, 0.85 + 4 * shift)}
             for seed, shift in ((0, -0.02), (1, 0.0), (2, 0.02))}
    results = {"moba": {"algo": "aql-discrete", "env": "moba-1v1", "metric": "win_rate", "opponent": "bt:hard",
                        "budget": {"eval_episodes": 40}, "seeds": seeds}}
    table = harness.summarise(results)
    assert "win_rate vs bt:hard, 3 seeds" in table
    verdicts = results["moba"]["summary"]["verdicts"]["finetuned-conservative"]
    final, last5 = verdicts["final"], verdicts["last 5"]
    assert final["offline checkpoint"]["beats"] and final["offline-only"]["beats"]
    assert final["offline checkpoint"]["gap"] == pytest.approx(0.5)
    # Finals 0.88/0.90/0.92 against scratch's 0.77/0.85/0.93: a gap of 0.05 inside the pooled std 0.058.
    assert final["scratch"]["gap"] == pytest.approx(0.05)
    assert final["scratch"]["pooled_std"] == pytest.approx(np.sqrt((0.02 ** 2 + 0.08 ** 2) / 2))
    assert not final["scratch"]["beats"] and "vs scratch +0.050 (pooled std 0.058: does not beat)" in table
    assert last5["scratch"]["beats"] and last5["offline-only"]["beats"]
    results["moba"]["seeds"] = {0: seeds[0]}  # one seed: the gaps, and no verdict either way
    table = harness.summarise(results)
    final = results["moba"]["summary"]["verdicts"]["finetuned-conservative"]["final"]
    assert final["offline checkpoint"] == {"gap": pytest.approx(0.5), "pooled_std": None, "beats": None}
    assert "vs offline checkpoint +0.500 (one seed: no verdict)" in table and "nan" not in table


def test_calibrated_cql_trains_and_fine_tunes_on_batches_with_returns_to_go(pendulum_data, tmp_path):
    """Cal-QL end to end: the offline run's batches carry the logged returns-to-go, and the online buffer gets
    its own, discounted within each episode of a round (Pendulum's 200-step episodes are cut by 100-step
    rounds: a cut counts what the round logged)."""
    offline = tiny_offline_run(pendulum_data, str(tmp_path / "offline"), "cql", calibrated=True)
    assert all(0 <= float(r["calibrated_fraction"]) <= 1 for r in read_csv(os.path.join(offline, "metrics.csv")))
    out = tmp_path / "tuned"
    finetune(FinetuneSettings(offline, "Pendulum-v1", str(out), steps=200, round_steps=100, updates_per_step=0.2,
                              eval_every=200, eval_episodes=1, log_every=10, progress=False, tensorboard=False))
    rows = np.load(out / "online-buffer.npz")["rows"]
    assert rows.shape == (200, 3 + 1 + 1 + 3 + 1 + 1)  # obs, action, reward, next obs, terminal, return-to-go
    rewards, returns = rows[:, 4], rows[:, 9]
    np.testing.assert_allclose(returns[:99], rewards[:99] + 0.99 * returns[1:100], rtol=1e-4, atol=1e-3)
    assert returns[99] == pytest.approx(rewards[99]) and returns[199] == pytest.approx(rewards[199])
    assert "calibrated_fraction" in read_csv(out / "metrics.csv")[0]


def test_the_benchmark_plays_a_copy_of_the_offline_checkpoint_only_once_it_exists(harness, monkeypatch, tmp_path):
    """benchmarks/finetune.py with `--moba-opponent agent:offline`: the offline run is evaluated against the
    game's default opponent (its copy does not exist yet); every later run plays the seed's own checkpoint."""
    commands = []
    monkeypatch.setattr(harness, "run", commands.append)
    monkeypatch.setattr(harness, "finished_step", lambda folder: 0)
    monkeypatch.setattr(harness.shutil, "copytree", lambda source, target: os.makedirs(target))
    config = {**harness.SUITES["moba"], "opponent": "mix:agent:offline,bt:hard"}
    harness.one_seed("moba", config, "logs", str(tmp_path), 3, harness.fine_tuned_arms(["warmstart"], []))
    offline = harness.arm_folder(str(tmp_path), "moba", "offline", 3)
    train, *later = commands
    assert "--opponent" not in train and train[train.index("--out") + 1] == offline
    assert len(later) == 4  # fine-tuned, offline-only, the untrained DQN (no games) and its online run
    for command in later:
        if "--opponent" in command:
            assert command[command.index("--opponent") + 1] == f"mix:agent:{offline},bt:hard"
    assert sum("--opponent" in command for command in later) == 3


def test_the_benchmark_runs_ablation_arms_from_the_same_offline_checkpoint(harness, monkeypatch, tmp_path):
    """benchmarks/finetune.py `--arm NAME=RECIPE FLAGS`: an arm of its own folder, its recipe and flags after
    the harness's (so they win), from the seed's one offline checkpoint; a bad or repeated name is one error
    line."""
    arms = harness.fine_tuned_arms(["loosen"], ["loosen-behaviour=loosen --set improve_on=behaviour"])
    assert arms == {"loosen": ["--recipe", "loosen"],
                    "loosen-behaviour": ["--recipe", "loosen", "--set", "improve_on=behaviour"]}
    commands = []
    monkeypatch.setattr(harness, "run", commands.append)
    monkeypatch.setattr(harness, "finished_step", lambda folder: 0)
    monkeypatch.setattr(harness.shutil, "copytree", lambda source, target: os.makedirs(target))
    import sac_reference

    monkeypatch.setattr(sac_reference, "run_ours", lambda *args, **kwargs: [(0, 0.0)])
    harness.one_seed("hopper", harness.SUITES["hopper"], "data.npz", str(tmp_path), 0, arms)
    tuned = [c for c in commands if "finetune" in c]
    offline = harness.arm_folder(str(tmp_path), "hopper", "offline", 0)
    assert [c[c.index("--out") + 1] for c in tuned] == [
        harness.arm_folder(str(tmp_path), "hopper", f"finetuned-{name}", 0) for name in arms]
    assert all(c[c.index("--checkpoint") + 1] == offline for c in tuned)
    ablation = tuned[1]
    start = ablation.index("--recipe")
    assert ablation[start:start + 4] == ["--recipe", "loosen", "--set", "improve_on=behaviour"]
    assert start > ablation.index("--round-steps")  # after the harness's own flags
    commands.clear()  # --arms-only: a second invocation's share, the controls left to the first
    harness.one_seed("hopper", harness.SUITES["hopper"], "data.npz", str(tmp_path), 0, arms, arms_only=True)
    assert [c[c.index("--out") + 1] for c in commands] == [offline] + [c[c.index("--out") + 1] for c in tuned]
    commands.clear()  # --no-scratch: the controls, and no online learning from nothing
    harness.one_seed("moba", harness.SUITES["moba"], "logs", str(tmp_path), 0, arms, scratch_arm=False)
    assert commands and not any("scratch" in part for command in commands for part in command)
    for bad in (["loosen=loosen"], ["x"], ["../up=loosen"], ["ok="]):
        with pytest.raises(SystemExit, match="finetune: error: --arm"):
            harness.fine_tuned_arms(["loosen"], bad)
    with pytest.raises(SystemExit, match="no fine-tuned arm"):
        harness.fine_tuned_arms([], [])


def test_the_benchmark_compares_a_warm_started_arm_with_the_control_after_as_many_updates(harness, tmp_path):
    """benchmarks/finetune.py: a warm-started arm makes no updates in its first 5000 env steps, so at 20k env
    steps it has made 15k; the control is read after 15k updates too (not only at its 20k end), and its
    latest earlier evaluation stands in where it has none at exactly that count."""
    def write(folder: str, name: str, rows: list[dict]) -> None:
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, name), "w", newline="") as f:
            writer = csv.DictWriter(f, list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    config, runs, offline = harness.SUITES["hopper"], str(tmp_path), harness.SUITES["hopper"]["offline_steps"]
    for seed in (0, 1):
        control = harness.arm_folder(runs, "hopper", "offline-only", seed)
        # the control's figure is its extra updates / 1000 (+ seed), evaluated every 1000 updates (seed 1: 2000)
        write(control, "eval.csv", [{"step": offline + extra, "normalized_mean": extra / 1000 + seed}
                                    for extra in range(0, 20001, 1000 * (seed + 1))])
        scratch = harness.arm_folder(runs, "hopper", "scratch", seed)
        os.makedirs(scratch)
        with open(os.path.join(scratch, "curve.json"), "w") as f:
            json.dump([[step, 5.0] for step in range(0, 20001, 2000)], f)
        for name, warmup in (("warm", 5000), ("cold", 0)):
            tuned = harness.arm_folder(runs, "hopper", f"finetuned-{name}", seed)
            write(tuned, "eval.csv", [{"step": step, "normalized_mean": 50.0} for step in range(0, 20001, 2000)])
            write(tuned, "rounds.csv", [{"step": step, "updates": offline + max(0, step - warmup)}
                                        for step in range(1000, 20001, 1000)])
    matched = {seed: harness.matched_control("hopper", config, runs, seed, ["warm", "cold"]) for seed in (0, 1)}
    assert matched[0]["finetuned-warm"][-1] == (20000, 15.0, 15000)
    assert matched[0]["finetuned-warm"][0] == (0, 0.0, 0) and matched[0]["finetuned-cold"][-1] == (20000, 20.0, 20000)
    assert matched[1]["finetuned-warm"][-1] == (20000, 15.0, 14000)  # 14k: its latest evaluation before 15k
    curves = harness.curves("hopper", config, runs, 0, ["warm", "cold"])
    assert [p[0] for p in curves["offline-only"]] == list(range(0, 20001, 2000))  # the arms' grid only
    results = {"hopper": {"algo": "aql", "env": "Hopper-v5", "metric": "normalized_mean",
                          "seeds": {seed: harness.curves("hopper", config, runs, seed, ["warm", "cold"])
                                    for seed in (0, 1)}, "matched_control": matched}}
    table = harness.summarise(results)
    assert "| offline-only at finetuned-warm's updates | 15000 updates | 15.000 +/- 0.000 |" in table
    verdicts = results["hopper"]["summary"]["verdicts"]["finetuned-warm"]["final"]
    assert verdicts["offline-only, same updates"]["gap"] == pytest.approx(50.0 - 15.0)
    assert verdicts["offline-only"]["gap"] == pytest.approx(50.0 - 20.5)
    # --no-scratch: scratch is neither read nor a row nor a verdict
    results["hopper"]["seeds"] = {seed: harness.curves("hopper", config, runs, seed, ["warm"], scratch_arm=False)
                                  for seed in (0, 1)}
    table = harness.summarise(results)
    assert "| scratch |" not in table and "vs scratch" not in table
    assert "scratch" not in results["hopper"]["summary"]["verdicts"]["finetuned-warm"]["final"]


def test_the_benchmark_splits_a_seed_into_an_arms_lane_and_a_controls_lane(harness, monkeypatch, tmp_path):
    """benchmarks/finetune.py `--controls-only`: only the offline-only control (and scratch) from the finished
    offline run, so a second process can make them while `--arms-only` makes the arms; an unfinished offline
    run is one error line, never retrained from this lane."""
    commands = []
    monkeypatch.setattr(harness, "run", commands.append)
    monkeypatch.setattr(harness.shutil, "copytree", lambda source, target: os.makedirs(target))
    offline = harness.arm_folder(str(tmp_path), "hopper", "offline", 0)
    config = harness.SUITES["hopper"]
    monkeypatch.setattr(harness, "finished_step", lambda folder: config["offline_steps"] if folder == offline else 0)
    arms = harness.fine_tuned_arms(["warmstart"], [])
    harness.one_seed("hopper", config, "data.npz", str(tmp_path), 0, arms, scratch_arm=False, controls_only=True)
    control = harness.arm_folder(str(tmp_path), "hopper", "offline-only", 0)
    assert [c[c.index("--out") + 1] for c in commands] == [control]
    monkeypatch.setattr(harness, "finished_step", lambda folder: 0)
    with pytest.raises(SystemExit, match="finetune: error: --controls-only needs the finished offline run"):
        harness.one_seed("hopper", config, "data.npz", str(tmp_path), 0, arms, controls_only=True)
    assert len(commands) == 1
    harness.choose_learner("cql")  # --algo cql: CQL has no warm start to set
    assert harness.SUITES["hopper"]["algo"] == "cql" and harness.SUITES["hopper"]["train_args"] == []
    harness.choose_learner("aql")
    assert harness.SUITES["hopper"]["train_args"] == ["--set", "warmup_steps=2000"]


def test_the_benchmark_takes_its_budget_as_flags(harness, monkeypatch, tmp_path):
    """benchmarks/finetune.py `--budget KEY=VALUE`: the online budget reaches `aql finetune` and the control's
    extra updates; an unknown key or a value that is not a positive number is one error line."""
    changes = harness.budget_changes(["online_steps=200000", "updates_per_step=0.25", "eval_every=40000"])
    assert changes == {"online_steps": 200000, "updates_per_step": 0.25, "eval_every": 40000}
    commands = []
    monkeypatch.setattr(harness, "run", commands.append)
    monkeypatch.setattr(harness, "finished_step", lambda folder: 0)
    monkeypatch.setattr(harness.shutil, "copytree", lambda source, target: os.makedirs(target))
    config = {**harness.SUITES["moba"], **changes}
    harness.one_seed("moba", config, "logs", str(tmp_path), 0, harness.fine_tuned_arms(["warmstart"], []))
    tuned = next(c for c in commands if "finetune" in c and "--recipe" in c)
    assert tuned[tuned.index("--steps") + 1] == "200000" and tuned[tuned.index("--updates-per-step") + 1] == "0.25"
    assert tuned[tuned.index("--eval-every") + 1] == "40000"
    control = next(c for c in commands if "--resume" in c)
    assert control[control.index("--steps") + 1] == str(config["offline_steps"] + 50000)
    assert control[control.index("--eval-every") + 1] == "10000"  # the arms' grid: 40000 steps * 0.25
    for bad in (["online_step=1"], ["online_steps=0"], ["online_steps=-5"], ["online_steps=1e5"],
                ["updates_per_step=nan"], ["eval_every"]):
        with pytest.raises(SystemExit, match="finetune: error: --budget"):
            harness.budget_changes(bad)


def test_the_benchmark_never_deletes_a_run_another_process_is_working_in(harness, monkeypatch, tmp_path):
    """benchmarks/finetune.py starts again a run that saved no checkpoint by deleting its folder; while another
    invocation's `aql finetune` holds that run's lock (two harnesses on the same seed) it stops with one error line
    instead, and deletes the folder once the lock is free."""
    from aql_agent.runs import FolderLock

    commands = []
    monkeypatch.setattr(harness, "run", commands.append)
    monkeypatch.setattr(harness, "finished_step", lambda folder: 0)
    tuned = harness.arm_folder(str(tmp_path), "moba", "finetuned-warmstart", 0)
    os.makedirs(os.path.join(tuned, "checkpoints"))
    lock = FolderLock(tuned)  # the other invocation's run, still going
    with pytest.raises(SystemExit, match="error: .*in use by another process"):
        harness.one_seed("moba", harness.SUITES["moba"], "logs", str(tmp_path), 0,
                         harness.fine_tuned_arms(["warmstart"], []), arms_only=True)
    assert os.path.isdir(os.path.join(tuned, "checkpoints")) and len(commands) == 1  # only the offline run
    lock.release()
    commands.clear()
    harness.one_seed("moba", harness.SUITES["moba"], "logs", str(tmp_path), 0,
                     harness.fine_tuned_arms(["warmstart"], []), arms_only=True)
    assert not os.path.exists(os.path.join(tuned, "checkpoints")) and len(commands) == 2


def test_the_benchmark_resumes_an_interrupted_run_instead_of_starting_it_again(harness, monkeypatch, tmp_path):
    """benchmarks/finetune.py run again after an interruption: a fine-tuned arm or control that saved a
    checkpoint goes on from it (`--resume`, kept on disk), so a seed can be spread over sittings; one that saved
    none is started again; the control is copied from the offline run only once, and whole."""
    commands = []
    monkeypatch.setattr(harness, "run", commands.append)
    config, runs = harness.SUITES["hopper"], str(tmp_path)
    offline, control, tuned = (harness.arm_folder(runs, "hopper", arm, 0)
                               for arm in ("offline", "offline-only", "finetuned-warmstart"))
    steps = {offline: config["offline_steps"], tuned: 6000, control: config["offline_steps"] + 4000}
    monkeypatch.setattr(harness, "finished_step", lambda folder: steps.get(folder, 0))
    for folder in (tuned, control):
        os.makedirs(os.path.join(folder, "checkpoints"))
    arms = harness.fine_tuned_arms(["warmstart"], [])
    harness.one_seed("hopper", config, "data.npz", runs, 0, arms, scratch_arm=False)
    assert [c[c.index("--out") + 1] for c in commands] == [tuned, control]
    assert all("--resume" in c for c in commands)
    assert all(os.path.isdir(os.path.join(folder, "checkpoints")) for folder in (tuned, control))
    commands.clear()  # nothing saved yet: the arm starts again, the control is copied from the offline run
    steps.update({tuned: 0, control: 0})
    os.makedirs(os.path.join(offline, "checkpoints"))
    harness.one_seed("hopper", config, "data.npz", runs, 0, arms, scratch_arm=False)
    arm_command, control_command = commands
    assert "--resume" not in arm_command and not os.path.exists(os.path.join(tuned, "checkpoints"))
    assert "--resume" in control_command and os.path.isdir(os.path.join(control, "checkpoints"))
    assert not os.path.exists(control + ".copying")
    commands.clear()  # an interrupted offline run goes on too, and keeps checkpoints to go on from
    steps.update({offline: 4000, control: config["offline_steps"] + 20000, tuned: config["online_steps"]})
    harness.one_seed("hopper", config, "data.npz", runs, 0, arms, scratch_arm=False)
    (train,) = commands
    assert "--resume" in train and int(train[train.index("--checkpoint-every") + 1]) < config["offline_steps"]


def test_the_benchmark_s_moba_data_folder_holds_only_the_named_pairings(harness, monkeypatch, tmp_path):
    """benchmarks/finetune.py `--moba-pairs`: the data is one log per pairing, recorded once; a folder holding
    logs of other pairings is refused (training reads the whole folder, so they would join the data unseen),
    while an interrupted recording of a named pairing is made again."""
    import figure2

    recorded = []

    class Kind:
        def record(self, folder, player, opponent, episodes, seed, progress):
            recorded.append((player, opponent, seed))
            path = os.path.join(folder, f"moba-1v1-{player.replace(':', '-')}-vs-{opponent.replace(':', '-')}"
                                        f"-seed{seed}.aqlog")
            open(path, "w").close()
            return path

    monkeypatch.setattr(figure2, "game_kind", lambda name: Kind())
    folder = str(tmp_path / "data")
    figure2.record_data(folder, ["bt:easy,bt:easy", "bt:medium,random"], 2, 0)
    assert recorded == [("bt:easy", "bt:easy", 0), ("bt:medium", "random", 1000)]
    figure2.record_data(folder, ["bt:easy,bt:easy", "bt:medium,random"], 2, 0)  # made once
    assert len(recorded) == 2
    os.remove(os.path.join(folder, "moba-1v1-bt-medium-vs-random-seed1000.aqlog"))
    open(os.path.join(folder, "moba-1v1-bt-medium-vs-random-seed1000.aqlog.partial"), "w").close()
    figure2.record_data(folder, ["bt:easy,bt:easy", "bt:medium,random"], 2, 0)
    assert recorded[-1] == ("bt:medium", "random", 1000)
    with pytest.raises(SystemExit, match="holds logs of other pairings or seeds .*moba-1v1-bt-medium-vs-random"):
        figure2.record_data(folder, ["bt:easy,bt:easy"], 2, 0)
    assert harness.record_data is figure2.record_data
