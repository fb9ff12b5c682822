"""Every continuous learner through one shared tester, plus what each must learn on tiny data."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from aql_agent.errors import AqlError
from aql_agent.learners import ALGORITHMS, Batch, is_discrete, make_learner
from aql_agent.learners.aql import ResidualGenerator
from aql_agent.nn import ConditionalVAE, vae_loss
from aql_agent.training import ACTING_FIELDS

OBS_DIM, ACT_DIM = 4, 2
CONTINUOUS = [algo for algo in ALGORITHMS if not is_discrete(algo)]  # discrete ones: tests/test_discrete.py
FAST = {"hidden": [32, 32], "batch_size": 64}
FAST_EXTRA = {"bcq": {"vae_hidden": [32, 32], "act_samples": 8}, "bear": {"vae_hidden": [32, 32], "warmup_steps": 50},
              "aql": {"vae_hidden": [32, 32], "residual_hidden": [32, 32], "warmup_steps": 50},
              "aql-cql": {"vae_hidden": [32, 32], "residual_hidden": [32, 32], "warmup_steps": 50}}


def toy_batches(seed: int, batch_size: int = 64):
    """Contextual bandit-like data: reward is high when the action matches tanh(W s)."""
    rng = np.random.default_rng(seed)
    weight = rng.normal(size=(OBS_DIM, ACT_DIM)).astype(np.float32)
    while True:
        obs = rng.normal(size=(batch_size, OBS_DIM)).astype(np.float32)
        best = np.tanh(obs @ weight)
        act = np.clip(best + 0.3 * rng.normal(size=best.shape), -1, 1).astype(np.float32)
        reward = -((act - best) ** 2).sum(1).astype(np.float32)
        yield Batch(torch.from_numpy(obs), torch.from_numpy(act), torch.from_numpy(reward),
                    torch.from_numpy(obs[::-1].copy()), torch.zeros(batch_size),
                    returns_to_go=torch.full((batch_size,), 2.0))  # a high logged value: Cal-QL's floor acts


def build(algo: str, **extra):
    torch.manual_seed(0)
    return make_learner(algo, OBS_DIM, ACT_DIM, {**FAST, **FAST_EXTRA.get(algo, {}), **extra})


@pytest.mark.parametrize("algo", CONTINUOUS)
def test_learner_protocol(algo):
    """A few hundred updates without NaN; gen_mse reported; act in bounds; state round trip is exact."""
    learner = build(algo)
    batches = toy_batches(0)
    for _ in range(200):
        metrics = learner.update(next(batches))
    assert all(np.isfinite(v) for v in metrics.values()), metrics
    assert "gen_mse" in metrics and metrics["gen_mse"] >= 0
    obs = np.random.default_rng(1).normal(size=(7, OBS_DIM)).astype(np.float32)
    actions = learner.act(obs)
    assert actions.shape == (7, ACT_DIM) and np.abs(actions).max() <= 1.0
    assert learner.act(obs[0]).shape == (ACT_DIM,)

    clone = build(algo)
    clone.load_state_dict(learner.state_dict())
    batch = next(batches)
    torch.manual_seed(5)
    expected = learner.update(batch)
    torch.manual_seed(5)
    assert clone.update(batch) == expected  # weights, optimiser moments and counters all carried over


@pytest.mark.parametrize("algo", CONTINUOUS)
def test_bf16_autocast_runs(algo):
    learner = build(algo, bf16=True)
    batches = toy_batches(0)
    for _ in range(60):
        metrics = learner.update(next(batches))
    assert all(np.isfinite(v) for v in metrics.values())


@pytest.mark.parametrize("algo", ["bc", "bcq", "bear", "aql", "aql-cql"])
def test_generative_error_falls(algo):
    """Learners with a behaviour model or a constrained actor imitate the data better as they train."""
    learner = build(algo)
    batches = toy_batches(0)
    first = [learner.update(next(batches))["gen_mse"] for _ in range(30)][-1]
    for _ in range(400):
        last = learner.update(next(batches))["gen_mse"]
    assert last < 0.8 * first, (first, last)


def test_offline_learners_beat_behaviour_on_the_bandit():
    """AQL must pick better actions than the noisy behaviour data (whose mean reward is about -0.18)."""
    learner = build("aql", warmup_steps=100, act_samples=16)
    batches = toy_batches(0)
    for _ in range(700):
        learner.update(next(batches))
    batch = next(toy_batches(9, batch_size=512))
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(OBS_DIM, ACT_DIM)).astype(np.float32)
    best = np.tanh(batch.observations.numpy() @ weight)
    reward = -((learner.act(batch.observations.numpy()) - best) ** 2).sum(1).mean()
    assert reward > -0.12, reward


def test_residual_generator_reconstructs_multimodal_data_better_than_the_plain_vae():
    """The paper's Theorem 2 in practice: the residual model's reconstruction error is below the CVAE's."""
    rng = np.random.default_rng(0)

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        obs = rng.uniform(-1, 1, size=(n, 2)).astype(np.float32)
        mode = rng.integers(0, 2, size=(n, 1))  # two modes per state: a multimodal behaviour policy
        act = np.where(mode == 1, np.sin(3 * obs), -0.8 * np.cos(2 * obs[:, ::-1])) * 0.9
        return torch.from_numpy(obs), torch.from_numpy(act.astype(np.float32))

    torch.manual_seed(0)
    residual = ResidualGenerator(2, 2, (64, 64), (64, 64))
    torch.manual_seed(0)
    plain = ConditionalVAE(2, 2, (64, 64))
    opt_r = torch.optim.Adam(residual.parameters(), lr=1e-3)
    opt_p = torch.optim.Adam(plain.parameters(), lr=1e-3)
    for _ in range(800):
        obs, act = sample(256)
        for opt, loss in ((opt_r, sum(residual.generative_terms(obs, act, 0.5))),
                          (opt_p, vae_loss(*plain(obs, act)[:1], act, *plain.encode(obs, act), 0.5))):
            opt.zero_grad()
            loss.backward()
            opt.step()
    obs, act = sample(4096)
    with torch.no_grad():
        torch.manual_seed(1)
        residual_mse = (residual.reconstruct(obs, act)[0] - act).pow(2).mean().item()
        torch.manual_seed(1)
        plain_mse = (plain(obs, act)[0] - act).pow(2).mean().item()
    assert residual_mse < 0.8 * plain_mse, (residual_mse, plain_mse)


def test_aql_dual_holds_through_the_warm_start_then_reacts():
    """With no Q term the constraint says nothing about the policy: alpha must not drift to a bound then."""
    learner = build("aql", warmup_steps=20)
    batches = toy_batches(0)
    during = [learner.update(next(batches))["alpha"] for _ in range(21)]
    after = [learner.update(next(batches))["alpha"] for _ in range(20)]
    assert during == [learner.config.initial_alpha] * 21
    assert after[-1] != after[0]


def test_aql_threshold_can_be_held_at_the_vaes_own_error():
    """On data noisier than epsilon (action noise 0.3: nothing fits it within 0.05) the paper's threshold is
    out of reach and alpha can only climb; held to max(epsilon, the VAE's error), it is reachable."""
    def run(**extra) -> list[dict[str, float]]:
        learner = build("aql", warmup_steps=0, **extra)
        batches = toy_batches(0)
        return [learner.update(next(batches)) for _ in range(300)]

    fixed, floored = run(), run(epsilon_at_least_vae=True)
    epsilon = 0.05
    assert [m["gen_threshold"] for m in fixed] == pytest.approx([epsilon] * len(fixed))
    assert all(m["gen_threshold"] >= epsilon - 1e-7 for m in floored)
    assert np.mean([m["gen_threshold"] for m in floored[-50:]]) > 1.5 * epsilon
    assert all(b["alpha"] > a["alpha"] for a, b in zip(fixed[1:], fixed[2:]))  # violated at every step
    assert floored[-1]["alpha"] < fixed[-1]["alpha"]


def test_aql_slack_constraint_frees_the_residual_when_its_fit_is_weighted_by_alpha():
    """With a slack constraint (epsilon 1.0: alpha sinks to its floor) eq. 13 leaves G free to follow Q; a
    residual fit term of fixed weight 1 still pulls G back to the data. Under alpha it no longer does: G moves
    further from the logged actions."""
    def late_error(**extra) -> float:
        learner = build("aql", warmup_steps=0, epsilon=1.0, initial_alpha=0.01, **extra)
        batches = toy_batches(0)
        metrics = [learner.update(next(batches)) for _ in range(300)]
        assert metrics[-1]["alpha"] < 0.01
        return float(np.mean([m["gen_mse"] for m in metrics[-50:]]))

    assert late_error(residual_fit_under_alpha=True) > 1.2 * late_error()


def test_aql_constrained_on_reconstruction_is_not_pulled_to_the_average_of_mixed_data():
    """Two policies in the data, actions (+0.7, +0.7) and (-0.7, -0.7) at every state: the sample error's
    minimiser is their mean, 0.49 away, so epsilon = 0.05 is out of reach, alpha climbs at every step and pulls
    G's proposals to the average (near 0, an action neither policy took). Measured on reconstructions, as
    eq. 11's d(a_hat, a), the constraint can be met and G's proposals move out towards the logged actions."""
    def batches(seed: int, size: int = 64):
        rng = np.random.default_rng(seed)
        while True:
            obs = rng.normal(size=(size, OBS_DIM)).astype(np.float32)
            act = np.repeat(np.where(rng.random((size, 1)) < 0.5, 0.7, -0.7), ACT_DIM, axis=1).astype(np.float32)
            yield Batch(torch.from_numpy(obs), torch.from_numpy(act), torch.zeros(size), torch.from_numpy(obs),
                        torch.zeros(size))

    def run(constrain: str) -> tuple[list[dict[str, float]], float]:
        learner = build("aql", warmup_steps=0, constrain=constrain)
        data = batches(0)
        metrics = [learner.update(next(data)) for _ in range(900)]
        with torch.no_grad():
            proposals = learner.nets["generator"](next(data).observations)
        return metrics, float(proposals.abs().mean())

    (samples, averaged), (reconstruction, kept) = run("samples"), run("reconstruction")
    assert all(b["alpha"] > a["alpha"] for a, b in zip(samples[1:], samples[2:]))  # violated at every step
    late = {name: np.mean([m["constrained_error"] for m in metrics[-50:]])
            for name, metrics in (("samples", samples), ("reconstruction", reconstruction))}
    assert late["samples"] > 0.4 and late["reconstruction"] < 0.06, late  # epsilon 0.05: out of reach, met
    assert averaged < 0.25 and kept > 0.35, (averaged, kept)
    with pytest.raises(AqlError, match="constrain"):
        build("aql", constrain="posterior")
    with pytest.raises(AqlError, match="epsilon_at_least_vae"):  # its floor is a sample error
        build("aql", constrain="reconstruction", epsilon_at_least_vae=True)


@pytest.mark.parametrize("normalize_q", [True, False])
def test_aql_generator_step_does_not_depend_on_the_reward_scale(normalize_q):
    """Eq. 13's solution does not change when Q is scaled; with the |Q|-normalised term G's step does not
    either (rewards x100 give the same generator), without it the Q term swamps the constraint."""
    def generator_after_one_step(q_scale: float) -> list[torch.Tensor]:
        learner = build("aql", warmup_steps=0, critic_learning_rate=0.0, normalize_q=normalize_q)
        with torch.no_grad():
            learner.nets["critic"].out.weight.mul_(q_scale)
            learner.nets["critic"].out.bias.mul_(q_scale)
        torch.manual_seed(3)
        learner.update(next(toy_batches(0)))
        return [p.detach().clone() for p in learner.nets["generator"].parameters()]

    same = all(torch.allclose(a, b, atol=1e-6) for a, b in zip(generator_after_one_step(1.0),
                                                                generator_after_one_step(100.0)))
    assert same == normalize_q


def test_aql_cql_variant_adds_the_penalty():
    plain, variant = build("aql"), build("aql-cql")
    assert plain.config.conservative_weight == 0 and variant.config.conservative_weight == 5.0
    metrics = variant.update(next(toy_batches(0)))
    assert "cql_gap" in metrics and "cql_gap" not in plain.update(next(toy_batches(0)))


#: fields whose effect shows only in act(), and the values to change each field to where doubling is not enough
ACT_ONLY = set(ACTING_FIELDS)  # the fields a resumed run may change: each must still change the actions
CHANGES = {"hidden": (16, 16), "vae_hidden": (16, 16), "residual_hidden": (16, 16), "bf16": True, "warmup_steps": 1,
           "lagrange_threshold": 1.0, "mmd_kernel": "gaussian", "gen_window": 1, "conservative_weight": 1.0,
           "lam": 0.1, "initial_temperature": 0.5, "gamma": 0.9,
           "epsilon": 1.0}  # epsilon: on the other side of gen_mse (one Adam step is blind to its size)
#: fields that act only together with another setting
NEEDS = {"conservative_samples": {"conservative_weight": 1.0}, "lagrange_learning_rate": {"lagrange_threshold": 1.0}}
CHANGES["improve_on"] = "all"
CHANGES["constrain"] = "reconstruction"
CHANGES["target_subset"] = 1  # of the 2 critics: one drawn at random instead of their minimum
#: fields that act only while fine-tuning (batches that mark their offline rows)
FINE_TUNING_ONLY = {"improve_on"}


def changed(value):
    if isinstance(value, bool):
        return not value
    return value * 2 if isinstance(value, (int, float)) else value


@pytest.mark.parametrize("algo", ["bc", "sac", "ddpg", "bcq", "bear", "cql", "aql"])
def test_every_config_field_is_read(algo):
    """Changing any config field changes the first updates' metrics or the actions (no unread fields)."""
    config_class = ALGORITHMS[algo][0].config_class
    base = {**FAST, **FAST_EXTRA.get(algo, {}), "batch_size": 32}
    if "warmup_steps" in base:
        base["warmup_steps"] = 2

    def run(config: dict, fine_tuning: bool = False) -> tuple:
        torch.manual_seed(0)
        learner = make_learner(algo, OBS_DIM, ACT_DIM, config)
        batches = toy_batches(0, batch_size=config["batch_size"])
        half = torch.arange(config["batch_size"]) % 2 == 0
        metrics = [learner.update(next(batches)._replace(offline=half) if fine_tuning else next(batches))
                   for _ in range(4)]
        torch.manual_seed(1)
        return metrics, learner.act(np.ones((2, OBS_DIM), np.float32)).tolist()

    for field in dataclasses.fields(config_class):
        default = base.get(field.name, field.default)
        value = CHANGES.get(field.name, changed(default))
        if field.name == "lam" and default == value:
            value = 0.5
        reference = {**base, **NEEDS.get(field.name, {})}
        if field.name == "gen_window":
            reference["gen_window"] = 500
        tuning = field.name in FINE_TUNING_ONLY
        before, after = run(reference, tuning), run({**reference, field.name: value}, tuning)
        index = 1 if field.name in ACT_ONLY else 0
        assert before[index] != after[index], f"{algo}: {field.name}={value!r} has no effect"


def test_learner_rejects_wrong_config_and_checkpoint():
    with pytest.raises(AqlError, match="unknown AQLConfig field"):
        make_learner("aql", OBS_DIM, ACT_DIM, {"epsilonn": 0.1})
    with pytest.raises(AqlError, match="unknown algorithm"):
        make_learner("td3", OBS_DIM, ACT_DIM)
    bear = build("bear")
    with pytest.raises(AqlError, match="does not fit a aql learner"):
        build("aql").load_state_dict(bear.state_dict())
    with pytest.raises(AqlError, match="does not fit"):
        make_learner("bear", OBS_DIM + 1, ACT_DIM, {**FAST, **FAST_EXTRA["bear"]}).load_state_dict(bear.state_dict())


def test_bcqs_vae_learns_from_the_offline_rows_only_like_every_behaviour_model():
    torch.manual_seed(0)
    logged = Batch(torch.randn(8, 3), torch.rand(8, 1) * 2 - 1, torch.zeros(8), torch.randn(8, 3), torch.zeros(8))
    online = Batch(torch.randn(8, 3), torch.ones(8, 1), torch.ones(8), torch.randn(8, 3), torch.zeros(8))
    mixed = Batch(*(torch.cat([a, b]) for a, b in zip(logged[:5], online[:5])),
                  offline=torch.arange(16) < 8)
    vaes = []
    for batch in (logged, mixed):
        torch.manual_seed(1)
        learner = make_learner("bcq", 3, 1, {"hidden": [16], "vae_hidden": [16]})
        learner.update(batch)
        vaes.append(learner.nets["vae"].state_dict())
    assert all(torch.equal(vaes[0][k], vaes[1][k]) for k in vaes[0])


def test_learner_facts_live_on_the_learners():
    for name, (learner, _) in ALGORITHMS.items():
        assert learner.fine_tunable == (name not in ("bc", "bc-discrete"))
        if learner.constraint is not None:
            field, looser = learner.constraint
            assert field in {f.name for f in dataclasses.fields(learner.config_class)} and looser in (-1, 1)
    assert make_learner("aql-cql", 3, 1).constraint_field() == ("epsilon", 1)
    assert make_learner("cql", 3, 1, {"lagrange_threshold": 5.0}).constraint_field() == ("lagrange_threshold", 1)


@pytest.mark.parametrize("override, message", [
    ({"batch_size": 0}, "batch_size must be at least 1"), ({"batch_size": "abc"}, "must be a whole number"),
    ({"batch_size": 2.5}, "must be a whole number"), ({"warmup_steps": -1}, "must be at least 0"),
    ({"generator_learning_rate": float("nan")}, "must be a finite number"),
    ({"critic_learning_rate": -1e-3}, "must be at least 0"), ({"gamma": 1.5}, "gamma must be in \\[0, 1\\]"),
    ({"tau": 0.0}, "tau must be in \\(0, 1\\]"), ({"hidden": [64, 0]}, "list of whole numbers >= 1"),
    ({"bf16": "yes"}, "true or false"), ({"epsilon": float("inf")}, "finite number")])
def test_bad_config_overrides_are_refused_before_training(override, message):
    with pytest.raises(AqlError, match=message):
        make_learner("aql", 3, 1, override)


def test_random_subset_targets_are_less_pessimistic_than_the_minimum_of_all_critics():
    """RLPD's critic: 10 critics whose targets take the minimum over 2 drawn at random value the same data higher
    than targets over the minimum of all 10 (same seed, same batches; only `target_subset` differs); a subset
    of all 10 is the plain minimum, update for update."""
    def q_means(subset):
        learner = build("sac", critics=10, target_subset=subset, gamma=0.9)
        batches = toy_batches(0)
        return [learner.update(next(batches))["q_mean"] for _ in range(300)]

    everyone = q_means(None)
    assert q_means(10) == everyone
    assert np.mean(q_means(2)[-50:]) > np.mean(everyone[-50:]) + 0.05


def test_calibrated_cql_keeps_the_policy_s_q_at_the_logged_return_where_plain_cql_pushes_it_below():
    """Cal-QL: with the data's return-to-go at 2, plain CQL's penalty drives Q at the policy's actions below it;
    floored at 2 in the penalty, calibrated CQL's stays near or above it, and it reports the floored share."""
    def policy_q(calibrated: bool) -> tuple[float, dict]:
        learner = build("cql", calibrated=calibrated, conservative_weight=5.0)
        batches = toy_batches(0)
        metrics = [learner.update(next(batches)) for _ in range(300)][-1]
        obs = next(batches).observations
        with torch.no_grad():
            action = learner.nets["actor"].mode(obs)
            return float(learner.nets["critic"](obs, action).amin(0).mean()), metrics

    plain, plain_metrics = policy_q(False)
    calibrated, metrics = policy_q(True)
    assert plain < 1.5 and calibrated > plain + 0.5
    assert "calibrated_fraction" not in plain_metrics and 0 <= metrics["calibrated_fraction"] <= 1
    assert build("cql", calibrated=True).returns_discount() == 0.99 and build("cql").returns_discount() is None


@pytest.mark.parametrize("algo", ["sac", "cql"])
def test_without_the_entropy_backup_the_critic_target_ignores_the_temperature(algo):
    """backup_entropy=false (CORL's and JaxCQL's CQL): the critic's target is r + gamma Q' whatever the
    temperature; on (SAC's soft value), the same batch gives another critic loss at another temperature."""
    def first_critic_loss(backup: bool, temperature: float) -> float:
        learner = build(algo, backup_entropy=backup, initial_temperature=temperature)
        return float(learner.update(next(toy_batches(0)))["critic_loss"])

    assert first_critic_loss(False, 0.01) == first_critic_loss(False, 10.0)
    assert first_critic_loss(True, 0.01) != first_critic_loss(True, 10.0)
