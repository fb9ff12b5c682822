"""Discrete learners (bc-discrete, DQN, discrete BCQ, discrete AQL): masks, a toy MDP each must solve, the
residual imitation network, training from moba-1v1 logs and win-rate evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn import functional as F

from aql_agent.adapters import moba
from aql_agent.adapters.moba import play
from aql_agent.adapters.games import game_kind
from aql_agent.checkpoint import load_policy
from aql_agent.cli import main
from aql_agent.data import TransitionDataset, save_dataset
from aql_agent.errors import AqlError, DatasetError
from aql_agent.learners import Batch, make_learner
from aql_agent.nn import ResidualImitation, mlp
from aql_agent.training import TrainSettings, train

DISCRETE = ("bc-discrete", "dqn", "bcq-discrete", "aql-discrete")
SMALL = {"hidden": [32, 32]}

# -- masks --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def learners() -> dict:
    torch.manual_seed(0)
    built = {algo: make_learner(algo, 6, 9, {**SMALL, "exploration_epsilon": 0.5} if algo != "bc-discrete" else SMALL)
             for algo in DISCRETE}
    rng = np.random.default_rng(0)
    for learner in built.values():  # a few updates so that the networks are not at their initial values
        for _ in range(3):
            learner.update(_random_batch(rng, 6, 9, 16))
    return built


def _random_batch(rng: np.random.Generator, obs_dim: int, actions: int, n: int) -> Batch:
    masks = rng.random((n, actions)) < 0.5
    masks[np.arange(n), rng.integers(0, actions, n)] = True
    chosen = np.array([rng.choice(np.flatnonzero(m)) for m in masks])
    return Batch(torch.randn(n, obs_dim), torch.as_tensor(chosen), torch.randn(n), torch.randn(n, obs_dim),
                 torch.zeros(n), torch.as_tensor(masks), torch.as_tensor(np.roll(masks, 1, axis=0)),
                 returns_to_go=torch.as_tensor(rng.normal(size=n), dtype=torch.float32))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), deterministic=st.booleans())
def test_a_masked_out_action_is_never_chosen(learners, seed, deterministic):
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(32, 6)).astype(np.float32) * 3
    masks = rng.random((32, 9)) < rng.uniform(0.05, 0.9)
    masks[np.arange(32), rng.integers(0, 9, 32)] = True  # at least one legal action per row
    torch.manual_seed(seed)
    for algo, learner in learners.items():
        actions = learner.act(obs, deterministic=deterministic, action_mask=masks)
        assert actions.dtype == np.int64 and actions.shape == (32,)
        assert masks[np.arange(32), actions].all(), algo
        single = learner.act(obs[0], deterministic=deterministic, action_mask=masks[0])
        assert masks[0, int(single)], algo


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), style=st.sampled_from(["epsilon", "boltzmann"]),
       excluded=st.sets(st.integers(0, 8), max_size=9))
def test_exploration_never_draws_a_masked_or_protected_action(learners, seed, style, excluded):
    """Whatever the style, exploring play picks only legal actions, and a protected one only when it is the
    greedy choice itself."""
    import dataclasses

    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(64, 6)).astype(np.float32) * 3
    masks = rng.random((64, 9)) < rng.uniform(0.05, 0.9)
    masks[np.arange(64), rng.integers(0, 9, 64)] = True
    torch.manual_seed(seed)
    for algo in ("dqn", "bcq-discrete", "aql-discrete"):
        learner, config = learners[algo], learners[algo].config
        learner.config = dataclasses.replace(config, exploration=style, exploration_epsilon=1.0,
                                             exploration_temperature=0.2, exploration_exclude=tuple(sorted(excluded)))
        try:
            greedy = learner.act(obs, deterministic=True, action_mask=masks)
            actions = learner.act(obs, deterministic=False, action_mask=masks)
        finally:
            learner.config = config
        assert masks[np.arange(64), actions].all(), algo
        assert not (np.isin(actions, list(excluded)) & (actions != greedy)).any(), algo


def test_boltzmann_exploration_draws_better_actions_more_often():
    """Drawn often where Q is close to the best, rarely where it is far below: counts follow Q's order."""
    torch.manual_seed(0)
    learner = make_learner("dqn", 6, 9, {**SMALL, "exploration": "boltzmann", "exploration_temperature": 0.5})
    obs = np.random.default_rng(3).normal(size=6).astype(np.float32)
    with torch.no_grad():
        q = learner.nets["q"](torch.as_tensor(obs[None]))[0].numpy()
    counts = np.bincount(learner.act(np.repeat(obs[None], 20000, 0), deterministic=False), minlength=9)
    assert counts.argmax() == q.argmax() and 0 < counts.max() < 20000
    order = np.argsort(q)
    assert np.corrcoef(np.argsort(order), np.argsort(np.argsort(counts)))[0, 1] > 0.9  # rank correlation


def test_a_single_legal_action_is_always_taken_and_an_empty_mask_allows_any(learners):
    obs = np.random.default_rng(1).normal(size=(9, 6)).astype(np.float32)
    only = np.eye(9, dtype=np.int8)
    for learner in learners.values():
        np.testing.assert_array_equal(learner.act(obs, action_mask=only), np.arange(9))
        assert 0 <= learner.act(obs[0], action_mask=np.zeros(9)) < 9


def test_a_mask_of_the_wrong_shape_is_refused(learners):
    with pytest.raises(AqlError, match="action mask of shape"):
        learners["dqn"].act(np.zeros((2, 6), np.float32), action_mask=np.ones((2, 8)))


@pytest.mark.parametrize("algo", DISCRETE)
def test_learner_protocol_round_trips_and_runs_in_bf16(algo):
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    learner = make_learner(algo, 6, 9, SMALL)
    for _ in range(30):
        metrics = learner.update(_random_batch(rng, 6, 9, 32))
    assert all(np.isfinite(v) for v in metrics.values()) and "gen_ce" in metrics and "gen_accuracy" in metrics
    clone = make_learner(algo, 6, 9, SMALL)
    clone.load_state_dict(learner.state_dict())
    batch = _random_batch(rng, 6, 9, 32)
    torch.manual_seed(5)
    expected = learner.update(batch)
    torch.manual_seed(5)
    assert clone.update(batch) == expected
    half = make_learner(algo, 6, 9, {**SMALL, "bf16": True})
    for _ in range(10):
        assert all(np.isfinite(v) for v in half.update(_random_batch(rng, 6, 9, 32)).values())


CHANGED = {"hidden": [16, 16], "residual_hidden": [16], "bf16": True, "gen_window": 1, "threshold": 0.9,
           "exploration_epsilon": 1.0, "alpha": 0.0, "gamma": 0.9, "exploration": "boltzmann",
           "exploration_temperature": 5.0, "exploration_exclude": [0, 1, 2, 3], "critic_layer_norm": True,
           "act_with_targets": True, "conservative_weight": 1.0, "calibrated": True}
# fields that only act together with another one
NEEDS = {"calibrated": {"conservative_weight": 1.0}}
# read only when acting non-deterministically, some only in the exploration style given here
ACTING = {"exploration_epsilon": {}, "exploration": {}, "exploration_temperature": {"exploration": "boltzmann"},
          "exploration_exclude": {"exploration_epsilon": 1.0},
          "act_with_targets": {"critic_learning_rate": 0.03}}  # Q moves off its average within the 4 updates


@pytest.mark.parametrize("algo", DISCRETE)
def test_every_config_field_is_read(algo):
    """Changing any config field changes the first updates' metrics or the actions (no unread fields)."""
    import dataclasses

    from aql_agent.learners import ALGORITHMS

    def run(config: dict) -> tuple:
        torch.manual_seed(0)
        learner = make_learner(algo, 6, 9, config)
        rng = np.random.default_rng(0)
        metrics = [learner.update(_random_batch(rng, 6, 9, config.get("batch_size", 32))) for _ in range(4)]
        torch.manual_seed(1)
        obs = np.random.default_rng(2).normal(size=(64, 6)).astype(np.float32)
        return metrics, learner.act(obs, deterministic=False).tolist()

    base = {**SMALL, "batch_size": 32, "gen_window": 500}
    for field in dataclasses.fields(ALGORITHMS[algo][0].config_class):
        default = base.get(field.name, field.default)
        value = CHANGED.get(field.name, default * 2 if isinstance(default, (int, float)) else default)
        context = {**base, **ACTING.get(field.name, {}), **NEEDS.get(field.name, {})}
        before, after = run(context), run({**context, field.name: value})
        index = 1 if field.name in ACTING else 0
        assert before[index] != after[index], f"{algo}: {field.name}={value!r} has no effect"


# -- a chain MDP each learner must solve -----------------------------------------------------------------------
CHAIN = 5  # states 0..4 (one-hot); 4 is the goal (terminal, reward 1). Actions: 0 left, 1 right, 2 stay.


def chain_dataset(n: int = 3000, seed: int = 0) -> TransitionDataset:
    """Transitions of a behaviour policy that goes right 60% of the time; `stay` is illegal in even states.
    The optimal policy (go right everywhere) is the data's most common action, so BC finds it too."""
    rng = np.random.default_rng(seed)
    state = rng.integers(0, CHAIN - 1, n)
    legal = np.ones((n, 3), bool)
    legal[state % 2 == 0, 2] = False
    action = np.where(rng.random(n) < 0.6, 1, np.where(legal[:, 2] & (rng.random(n) < 0.5), 2, 0))
    nxt = np.clip(state + np.select([action == 1, action == 0], [1, -1], 0), 0, CHAIN - 1)
    next_legal = np.ones((n, 3), bool)
    next_legal[nxt % 2 == 0, 2] = False
    eye = np.eye(CHAIN, dtype=np.float32)
    goal = nxt == CHAIN - 1
    return TransitionDataset(eye[state], action.astype(np.int64), goal.astype(np.float32), eye[nxt], goal,
                             np.zeros(n, bool), legal.astype(np.int8), next_legal.astype(np.int8))


@pytest.mark.parametrize("algo", DISCRETE)
def test_each_learner_solves_the_chain(tmp_path, algo):
    path = str(tmp_path / "chain.npz")
    save_dataset(chain_dataset(), path)
    overrides = SMALL | ({} if algo == "bc-discrete" else {"gamma": 0.9, "tau": 0.05})
    summary = train(TrainSettings(algo=algo, data=path, out=str(tmp_path / "run"), steps=800, seed=0,
                                  learner=overrides, progress=False, tensorboard=False, log_every=100))
    policy = load_policy(summary["out"])
    states = np.eye(CHAIN, dtype=np.float32)[:-1]
    masks = np.array([[1, 1, s % 2] for s in range(CHAIN - 1)])
    np.testing.assert_array_equal(policy.act({"observation": states, "action_mask": masks}), [1] * (CHAIN - 1))
    if algo != "dqn":
        assert summary["metrics"]["gen_accuracy"] > 0.5  # G predicts the data's mode


def test_q_values_order_the_chain_actions():
    torch.manual_seed(0)
    learner = make_learner("dqn", CHAIN, 3, {**SMALL, "gamma": 0.9, "tau": 0.05})
    data = chain_dataset()
    rng = np.random.default_rng(0)
    for _ in range(800):
        i = rng.integers(0, len(data), 64)
        learner.update(Batch(torch.as_tensor(data.observations[i]), torch.as_tensor(data.actions[i]),
                             torch.as_tensor(data.rewards[i]), torch.as_tensor(data.next_observations[i]),
                             torch.as_tensor(data.terminals[i], dtype=torch.float32),
                             torch.as_tensor(data.action_masks[i] != 0),
                             torch.as_tensor(data.next_action_masks[i] != 0)))
    with torch.no_grad():
        q = learner.nets["q"](torch.eye(CHAIN)[:-1])
    np.testing.assert_allclose(q[:, 1].numpy(), 0.9 ** np.arange(CHAIN - 2, -1, -1), atol=0.1)  # gamma^(steps-1)
    assert (q[:, 1] > q[:, 0]).all()


def _bandit_q(config: dict, updates: int = 600) -> tuple[torch.Tensor, dict]:
    """Q at a one-state bandit after offline updates on data that only ever plays action 0 (reward 1, terminal,
    return-to-go 1), its other actions' output biases started optimistic at +3: the extrapolation a critic
    never corrects on its own, since no data reaches those outputs."""
    torch.manual_seed(0)
    learner = make_learner("dqn", 4, 5, {**SMALL, **config})
    with torch.no_grad():
        learner.nets["q"][-1].bias[1:] += 3.0
    n = 32
    batch = Batch(torch.ones(n, 4), torch.zeros(n, dtype=torch.long), torch.ones(n), torch.ones(n, 4), torch.ones(n),
                  torch.ones(n, 5, dtype=torch.bool), torch.ones(n, 5, dtype=torch.bool), returns_to_go=torch.ones(n))
    metrics = [learner.update(batch) for _ in range(updates)][-1]
    with torch.no_grad():
        return learner.nets["q"](torch.ones(1, 4))[0], metrics


def test_the_conservative_penalty_pulls_down_actions_the_data_never_shows():
    plain, plain_metrics = _bandit_q({})
    conservative, metrics = _bandit_q({"conservative_weight": 1.0})
    assert plain[1:].min() > plain[0] + 1.0  # the optimism stays where no data is
    assert conservative[1:].max() < conservative[0] - 0.5 and abs(conservative[0] - 1.0) < 0.3
    assert "cql_gap" not in plain_metrics and metrics["cql_gap"] > 0


def test_calibrated_penalty_stops_at_the_logged_return():
    """Cal-QL's floor: plain CQL keeps pushing the unseen actions down; calibrated, they settle near the logged
    return-to-go (1) instead of below it, and the share of floored values is reported."""
    plain, _ = _bandit_q({"conservative_weight": 1.0})
    calibrated, metrics = _bandit_q({"conservative_weight": 1.0, "calibrated": True})
    assert calibrated[1:].min() > plain[1:].max() + 0.3 and calibrated[1:].min() > 0.5
    assert 0 < metrics["calibrated_fraction"] <= 1
    assert make_learner("dqn", 4, 5, {"conservative_weight": 1.0, "calibrated": True}).returns_discount() == 0.99


@pytest.mark.parametrize("config, message", [({"conservative_weight": -1.0}, "conservative_weight must be 0 or more"),
                                             ({"calibrated": True}, "set conservative_weight above 0")])
def test_bad_conservative_settings_are_refused(config, message):
    with pytest.raises(AqlError, match=message):
        make_learner("bcq-discrete", 4, 5, config)


# -- residual imitation --------------------------------------------------------------------------------------------


def test_residual_imitation_fits_a_multimodal_dataset_better_than_the_plain_network():
    """The paper's claim for discrete AQL's G, on a toy set: two equally likely actions per state, arranged by
    quadrant and ring; both networks have the same hidden sizes, the residual one adds its correction."""

    def data(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.rand(n, 2, generator=generator) * 2 - 1
        quadrant = (x[:, 0] > 0).long() * 2 + (x[:, 1] > 0).long()
        ring = (x.norm(dim=1) * 3).long() % 2
        return x, (quadrant + 2 * torch.randint(0, 2, (n,), generator=generator) + ring) % 6

    generator = torch.Generator().manual_seed(0)
    (x, a), (x_test, a_test) = data(4096, generator), data(4096, generator)
    all_legal = torch.ones(4096, 6, dtype=torch.bool)
    errors = {}
    for name in ("plain", "residual"):
        torch.manual_seed(0)
        net = mlp(2, (32, 32), 6) if name == "plain" else ResidualImitation(2, 6, (32, 32), (32, 32))
        optimizer = torch.optim.Adam(net.parameters(), 3e-3)
        for _ in range(1000):
            i = torch.randint(0, 4096, (256,))
            if name == "plain":
                loss = F.cross_entropy(net(x[i]), a[i])
            else:
                base, logits = net(x[i], all_legal[:256])
                loss = F.cross_entropy(logits, a[i]) + F.cross_entropy(base, a[i])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            logits = net(x_test) if name == "plain" else net(x_test, all_legal)[1]
            errors[name] = F.cross_entropy(logits, a_test).item()
    assert errors["residual"] < errors["plain"] - 0.05, errors


def test_the_residual_starts_as_the_plain_network():
    net = ResidualImitation(4, 5, (8,), (8,))
    obs = torch.randn(3, 4)
    base, logits = net(obs, torch.ones(3, 5, dtype=torch.bool))
    torch.testing.assert_close(base, logits)


# -- moba-1v1: logs -> flat dataset -> learner -> win rate ---------------------------------------------------------


@pytest.fixture(scope="module")
def bot_games(tmp_path_factory) -> str:
    """Two short recorded bot games (tools/record's log format)."""
    return game_kind("moba-1v1", {"max_frames": 600}).record(str(tmp_path_factory.mktemp("logs")), "bt:hard",
                                                             "bt:easy", episodes=2, seed=3, progress=False)


def test_moba_actions_reads_each_button_and_intervenes_on_the_allowed_set_only(bot_games):
    """benchmarks/moba_actions.py: per-button shares agree with the data, and its interventions put a button's
    legal actions into the allowed set (always) or keep them out while anything else is allowed (never)."""
    import importlib.util
    import os

    from aql_agent.adapters.moba.wrappers import FLAT_ACTIONS
    from aql_agent.checkpoint import Policy, Preprocessing
    from aql_agent.training import learner_view

    spec = importlib.util.spec_from_file_location(
        "moba_actions", os.path.join(os.path.dirname(__file__), "..", "benchmarks", "moba_actions.py"))
    moba_actions = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(moba_actions)
    data = learner_view(TransitionDataset.from_log(bot_games, agent="all"))
    torch.manual_seed(0)
    learner = make_learner("aql-discrete", data.observations.shape[1], 53, SMALL)
    policy = Policy(learner, Preprocessing((0.0,) * learner.obs_dim, (1.0,) * learner.obs_dim, (), ()))
    stats = moba_actions.button_statistics(policy, data, sample=len(data))
    buttons = FLAT_ACTIONS[data.actions, 0]
    for name in ("move", "attack"):
        index = moba_actions.BUTTONS.index(name)
        legal = (data.action_masks[:, FLAT_ACTIONS[:, 0] == index] != 0).any(-1)
        assert stats[name]["legal_share"] == pytest.approx(legal.mean(), abs=1e-6)
        assert stats[name]["data_use"] == pytest.approx((buttons[legal] == index).mean(), abs=1e-6)
    obs = torch.as_tensor(data.observations)
    mask = torch.as_tensor(data.action_masks != 0)
    # skill1, not the ultimate: these short games never reach the level the ultimate needs
    skill1 = torch.as_tensor(FLAT_ACTIONS[:, 0] == moba_actions.BUTTONS.index("skill1"))
    trained = learner.allowed(obs, mask)
    always = moba_actions.with_button(policy, "skill1", "always allowed").learner.allowed(obs, mask)
    assert torch.equal(always, trained | (mask & skill1)) and (mask & skill1).any()
    learner = make_learner("aql-discrete", learner.obs_dim, 53, SMALL)
    learner.load_state_dict(policy.learner.state_dict())
    never = moba_actions.with_button(Policy(learner, policy.preprocessing), "skill1", "never allowed"
                                     ).learner.allowed(obs, mask)
    others = (trained & ~skill1).any(-1)
    assert not (never[others] & skill1).any() and torch.equal(never[~others], trained[~others])


def test_moba_logs_flatten_to_the_learner_view(bot_games):
    from aql_agent.training import learner_view

    dataset = TransitionDataset.from_log(bot_games, agent="all")
    flat = learner_view(dataset)  # the log's env id names the game whose kind flattens it
    assert flat.actions.shape == (len(dataset),) and flat.action_masks.shape == (len(dataset), 53)
    for row in range(0, len(dataset), 7):
        assert flat.actions[row] == moba.flatten_action(dataset.actions[row])
        np.testing.assert_array_equal(flat.action_masks[row],
                                      moba.flat_action_mask(moba.split_masks(dataset.action_masks[row])) != 0)


def test_train_from_moba_logs_and_evaluate_the_win_rate(bot_games, tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["train", "--algo", "aql-discrete", "--data", bot_games, "--agent", "blue", "--out", out,
                 "--steps", "40", "--log-every", "20", "--no-progress", "--no-tensorboard", "--set",
                 "hidden=[32, 32]", "--set", "residual_hidden=[32]"]) == 0
    capsys.readouterr()
    assert main(["eval", "--checkpoint", out, "--env", "moba-1v1", "--opponent", "random", "--games", "2",
                 "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["games"] == 2 and result["wins"] + result["losses"] + result["draws"] == 2
    low, high = result["win_rate_ci95"]
    assert 0.0 <= low <= result["win_rate"] <= high <= 1.0
    assert result["algo"] == "aql-discrete" and result["opponent"] == "random"
    assert main(["eval", "--checkpoint", out, "--env", "moba-1v1", "--opponent", "random", "--games", "1",
                 "--no-progress", "--act-with-targets"]) == 0  # acting on the target Q network
    assert json.loads(capsys.readouterr().out)["act_with_targets"] is True
    player, who = game_kind("moba-1v1").make_player(f"agent:{out}")  # the checkpoint plays as a moba-1v1 player
    env = moba.parallel_env(seed=0, max_frames=90)
    obs, _ = env.reset(seed=0)
    action = player(obs["blue"])
    assert env.action_space("blue").contains(np.asarray(action)) and who["name"] == "aql-discrete"


def test_evaluation_counts_outcomes_with_sides_swapped(monkeypatch):
    winners = iter(["blue", "blue", None, "red", "red"])  # games 0..4: the player is blue, red, blue, red, blue

    def scripted(env, policies, seed=None):
        return play.GameResult(next(winners), 100, 10, {}, {"blue": 0, "red": 0}, {"blue": 1, "red": 0},
                               {"blue": 0, "red": 0})

    monkeypatch.setattr(play, "play_game", scripted)
    result = play.evaluate_against(lambda obs: 0, "random", 5)
    assert (result["wins"], result["losses"], result["draws"]) == (2, 2, 1)  # won games 0 and 3, lost 1 and 4
    assert result["win_rate"] == 0.4 and result["mean_frames"] == 100
    assert result["mean_kills"] == pytest.approx(3 / 5)  # blue scored a kill each game; the player was blue thrice
    np.testing.assert_allclose(result["win_rate_ci95"], [0.1176, 0.7693], atol=1e-3)  # Wilson, 2 of 5


def test_an_idle_player_loses_or_draws_against_the_hard_bot():
    idle = moba.flat_player(lambda flat: 0)  # flat action 0: the `none` button
    result = play.evaluate_against(idle, "bt:hard", 2, max_frames=1200)
    assert result["wins"] == 0 and result["losses"] + result["draws"] == 2 and result["mean_deaths"] >= 0


def test_bad_data_for_discrete_learners_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    continuous = TransitionDataset(rng.normal(size=(20, 3)).astype(np.float32), rng.uniform(-1, 1, (20, 2)),
                                   np.zeros(20, np.float32), rng.normal(size=(20, 3)).astype(np.float32),
                                   np.zeros(20, bool), np.zeros(20, bool))
    path = str(tmp_path / "continuous.npz")
    save_dataset(continuous, path)
    with pytest.raises(DatasetError, match="discrete learners need one integer action"):
        train(TrainSettings(algo="dqn", data=path, out=str(tmp_path / "run"), steps=5, progress=False))
    chain = str(tmp_path / "chain.npz")
    save_dataset(chain_dataset(50), chain)
    with pytest.raises(AqlError, match="discrete learners need a Discrete"):
        train(TrainSettings(algo="dqn", data=chain, out=str(tmp_path / "run2"), steps=5, env="Pendulum-v1",
                            progress=False))


def test_discrete_training_resumes_bit_exactly(tmp_path):
    path = str(tmp_path / "chain.npz")
    save_dataset(chain_dataset(500), path)
    common = dict(algo="aql-discrete", data=path, seed=3, log_every=5, checkpoint_every=20, progress=False,
                  tensorboard=False, learner={"hidden": [16], "residual_hidden": [16], "batch_size": 16})
    straight, interrupted = str(tmp_path / "straight"), str(tmp_path / "interrupted")
    train(TrainSettings(out=straight, steps=40, **common))
    train(TrainSettings(out=interrupted, steps=20, **common))
    train(TrainSettings(out=interrupted, steps=40, resume=True, **common))
    with open(f"{straight}/metrics.csv") as a, open(f"{interrupted}/metrics.csv") as b:
        assert a.read() == b.read()
    for key, value in load_policy(straight).learner.state_dict()["nets"].items():
        assert torch.equal(value, load_policy(interrupted).learner.state_dict()["nets"][key]), key
