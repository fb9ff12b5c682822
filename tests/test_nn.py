"""Shared building blocks against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from aql_agent.nn import (ConditionalVAE, EnsembleLinear, Lagrange, QEnsemble, TanhGaussianActor, bcq_target,
                          conservative_penalty, mmd, soft_update, target_members, uniform_log_density)


def test_bcq_target_by_hand():
    # K=2 critics, B=2 states, N=2 sampled next actions.
    next_q = torch.tensor([[[1.0, 4.0], [0.0, 0.0]],
                           [[3.0, 2.0], [2.0, -2.0]]])
    rewards = torch.tensor([1.0, 0.5])
    terminals = torch.tensor([0.0, 1.0])
    y = bcq_target(next_q, rewards, terminals, gamma=0.9, lam=0.75)
    # state 0: sample 0 -> 0.75*1 + 0.25*3 = 1.5; sample 1 -> 0.75*2 + 0.25*4 = 2.5; max 2.5
    assert y[0].item() == pytest.approx(1.0 + 0.9 * 2.5)
    assert y[1].item() == pytest.approx(0.5)  # terminal: no bootstrap


def test_random_subset_targets_draw_distinct_members_uniformly():
    """REDQ / RLPD targets: `subset` distinct critics per update, each as often as any other; all K (and no random
    draw) when the subset is None or K. With critics valued 0..3, the minimum over 2 drawn ones averages 2/3
    (pairs: min 0 three times of six, 1 twice, 2 once)."""
    q = torch.arange(4.0).view(4, 1, 1).expand(4, 3, 2)  # [K, B, N]: critic k is worth k everywhere
    state = torch.get_rng_state()
    assert target_members(q, None) is q and target_members(q, 4) is q
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(0)
    counts, minima = torch.zeros(4), []
    for _ in range(3000):
        members = target_members(q, 2)
        assert members.shape == (2, 3, 2)
        values = members[:, 0, 0]
        assert values[0] != values[1]
        counts[values.long()] += 1
        minima.append(bcq_target(q, torch.zeros(3), torch.zeros(3), gamma=1.0, lam=1.0, subset=2)[0].item())
    assert torch.allclose(counts / 6000, torch.full((4,), 0.25), atol=0.02)
    assert sum(minima) / len(minima) == pytest.approx(2 / 3, abs=0.05)


def test_mmd_by_hand():
    x, y = torch.zeros(1, 1, 1), torch.ones(1, 1, 1)
    expected = math.sqrt(2 - 2 * math.exp(-1.0) + 1e-6)  # k(x, y) = exp(-|1| / (2 * 0.5))
    assert mmd(x, y, "laplacian", sigma=0.5).item() == pytest.approx(expected, rel=1e-6)
    expected = math.sqrt(2 - 2 * math.exp(-4.0 / 2.0) + 1e-6)  # gaussian: exp(-|2|^2 / (2 * 1))
    assert mmd(x, 2 * y, "gaussian", sigma=1.0).item() == pytest.approx(expected, rel=1e-6)
    same = torch.randn(4, 5, 3)
    assert mmd(same, same).max().item() == pytest.approx(1e-3, abs=1e-6)  # sqrt(0 + 1e-6)
    with pytest.raises(ValueError, match="unknown MMD kernel"):
        mmd(x, y, "cosine")


def test_lagrange_dual_step_and_clamp():
    multiplier = Lagrange(initial=1.0, log_min=-5.0, log_max=10.0)
    optimizer = torch.optim.SGD(multiplier.parameters(), lr=0.1)
    loss = multiplier.loss(torch.tensor(0.2), threshold=0.05)
    assert loss.item() == pytest.approx(-0.15)
    loss.backward()
    optimizer.step()
    assert multiplier.log_alpha.item() == pytest.approx(0.015)  # violated: alpha rises
    loss = multiplier.loss(torch.tensor(0.0), threshold=0.05)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert multiplier.log_alpha.item() < 0.015  # satisfied: alpha falls
    with torch.no_grad():
        multiplier.log_alpha.fill_(20.0)
    multiplier.clamp_()
    assert multiplier.value().item() == pytest.approx(math.exp(10.0))


def test_the_dual_step_sends_no_gradient_into_the_policy():
    """d3rlpy 2.8.1's BEAR backpropagates its dual loss into the policy after zeroing the policy's gradients,
    which cancels the MMD term of the actor loss (docs/results.md): the multiplier's loss must reach log-alpha
    only, however the constraint was computed."""
    policy = torch.nn.Linear(3, 2)
    constraint = policy(torch.ones(4, 3)).pow(2).mean(1)  # depends on the policy's weights
    Lagrange(initial=1.0).loss(constraint, threshold=0.05).backward()
    assert all(p.grad is None for p in policy.parameters())


def test_conservative_penalty_by_hand():
    q = torch.tensor([[[0.0, math.log(3.0)]]])  # K=1, B=1, M=2
    q_data = torch.tensor([[0.5]])
    # equal weights: log((e^0 + e^ln3) / 2) = log 2
    assert conservative_penalty(q, q_data).item() == pytest.approx(math.log(2.0) - 0.5)
    # importance-sampled with density 1/2 each: log(2 * 1 + 2 * 3) = log 8
    density = torch.full((1, 2), math.log(0.5))
    assert conservative_penalty(q, q_data, density).item() == pytest.approx(math.log(8.0) - 0.5)
    # temperature 2: 2 * log(e^{(0 - log 2)/2} + e^{(log 3 - log 2)/2})
    expected = 2 * math.log(math.exp(-math.log(2) / 2) + math.exp((math.log(3) - math.log(2)) / 2)) - 0.5
    assert conservative_penalty(q, q_data, temperature=2.0).item() == pytest.approx(expected)
    assert uniform_log_density(3) == pytest.approx(3 * math.log(0.5))


def test_q_ensemble_matches_independent_critics():
    torch.manual_seed(0)
    ensemble = QEnsemble(obs_dim=4, act_dim=2, hidden=(8, 8), members=3)
    obs, act = torch.randn(5, 4), torch.randn(5, 2)
    out = ensemble(obs, act)
    assert out.shape == (3, 5)
    x = torch.cat([obs, act], -1)
    for k in range(3):  # member k by hand, as a plain MLP
        h = torch.relu(x @ ensemble.first.weight[k] + ensemble.first.bias[k])
        h = torch.relu(h @ ensemble.hidden[0].weight[k] + ensemble.hidden[0].bias[k])
        expected = (h @ ensemble.out.weight[k] + ensemble.out.bias[k]).squeeze(-1)
        assert torch.allclose(out[k], expected, atol=1e-5)
    assert ensemble(obs.expand(2, 5, 4), act.expand(2, 5, 2)).shape == (3, 2, 5)  # extra leading dims
    assert isinstance(ensemble.first, EnsembleLinear)


def test_layer_norm_ensemble_members_are_plain_layer_norm_mlps():
    """With layer_norm each member is Linear -> LayerNorm (its own gain and bias) -> ReLU per hidden layer."""
    torch.manual_seed(0)
    ensemble = QEnsemble(obs_dim=4, act_dim=2, hidden=(8, 8), members=3, layer_norm=True)
    with torch.no_grad():
        for norm in ensemble.norms:  # not the identity initialisation, so gains and biases are checked too
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
    obs, act = torch.randn(5, 4), torch.randn(5, 2)
    out = ensemble(obs, act)
    x = torch.cat([obs, act], -1)
    for k in range(3):
        h = x @ ensemble.first.weight[k] + ensemble.first.bias[k]
        norm = ensemble.norms[0]
        h = torch.relu(torch.nn.functional.layer_norm(h, (8,), norm.weight[k, 0], norm.bias[k, 0]))
        h = h @ ensemble.hidden[0].weight[k] + ensemble.hidden[0].bias[k]
        norm = ensemble.norms[1]
        h = torch.relu(torch.nn.functional.layer_norm(h, (8,), norm.weight[k, 0], norm.bias[k, 0]))
        assert torch.allclose(out[k], (h @ ensemble.out.weight[k] + ensemble.out.bias[k]).squeeze(-1), atol=1e-5)
    # what the norm is for: Q at actions far off the data grows without bound without it, and stays bounded with it
    far = torch.full((5, 2), 1e3)
    plain = QEnsemble(obs_dim=4, act_dim=2, hidden=(8, 8), members=3)
    assert plain(obs, far).abs().max() > 50 * plain(obs, act).abs().max()
    assert ensemble(obs, far).abs().max() < 10 * (1 + ensemble(obs, act).abs().max())


def test_soft_update_is_polyak():
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    before = a.weight.detach().clone()
    soft_update(a, b, tau=0.25)
    assert torch.allclose(a.weight, 0.75 * before + 0.25 * b.weight)


def test_vae_prior_samples_are_clipped_and_actor_log_prob_is_a_density():
    torch.manual_seed(0)
    vae = ConditionalVAE(obs_dim=3, act_dim=2, hidden=(16,))
    assert vae.latent_dim == 4
    decoded = vae.decode(torch.randn(100, 3))
    assert decoded.shape == (100, 2) and decoded.abs().max() < 1
    actor = TanhGaussianActor(obs_dim=1, act_dim=1, hidden=(8,))
    # Integrate the squashed density over (-1, 1) numerically: it must be ~1.
    with torch.no_grad():
        mean, log_std = actor.distribution(torch.zeros(1, 1))
    grid = torch.linspace(-0.999, 0.999, 4001)
    pre = torch.atanh(grid)
    normal = torch.distributions.Normal(mean[0, 0], log_std.exp()[0, 0])
    density = (normal.log_prob(pre) - torch.log(1 - grid.pow(2))).exp()
    assert torch.trapezoid(density, grid).item() == pytest.approx(1.0, abs=0.02)
    action, log_prob, pre_tanh = actor.sample(torch.zeros(1, 1))
    expected = normal.log_prob(pre_tanh[0, 0]) - torch.log(1 - torch.tanh(pre_tanh[0, 0]).pow(2))
    assert log_prob.item() == pytest.approx(expected.item(), abs=1e-4)
