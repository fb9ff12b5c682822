"""Conservative Q-learning, CQL(H) (Kumar et al., 2020), on top of the SAC learner.

The critic loss adds `weight * (logsumexp_a Q(s, a) - Q(s, a_data))` per critic, the logsumexp
importance-sampled over uniform actions and policy actions at s and s' as in CQL's official code. With
`lagrange_threshold` set, the weight is tuned by dual ascent so that the gap stays near the threshold
(CQL's "with_lagrange" mode); otherwise it is the fixed `conservative_weight` (5.0, as in d3rlpy). With
`calibrated` it is Cal-QL: the policy's sampled Q values in the penalty are floored at the logged
return-to-go.
"""

from __future__ import annotations

import dataclasses

import torch

from aql_agent.learners.base import Batch, adam, step
from aql_agent.learners.sac import SACConfig, SACLearner
from aql_agent.nn import Lagrange, conservative_penalty, uniform_log_density


@dataclasses.dataclass(frozen=True)
class CQLConfig(SACConfig):
    actor_learning_rate: float = 1e-4
    """Adam step size of the actor (CQL's and d3rlpy's 1e-4)."""
    conservative_weight: float = 5.0
    """Fixed weight of the penalty, or its starting value with `lagrange_threshold`."""
    lagrange_threshold: float | None = None
    """Target gap for the auto-tuned weight (CQL uses 10 in Lagrange mode); None keeps the weight fixed."""
    lagrange_learning_rate: float = 1e-4
    """Adam step size of the penalty weight in Lagrange mode."""
    action_samples: int = 10
    """Actions sampled per state from each proposal (uniform, pi(s), pi(s'))."""
    cql_temperature: float = 1.0
    """Temperature of the logsumexp."""
    calibrated: bool = False
    """Cal-QL (Nakamoto et al., 2023): in the penalty, Q at the policy's actions is floored at the state's
    logged return-to-go (the behaviour's own value), so the penalty no longer pushes the policy's Q below what
    the data shows it is worth. A critic kept at that scale does not have to climb out of an underestimate once
    online play starts, which is where CQL's fine-tuning dip comes from. The batches carry the returns (the
    samplers add them); `calibrated_fraction` reports the share of floored values."""


class CQLLearner(SACLearner):
    constraint = ("conservative_weight", -1)
    name = "cql"
    config_class = CQLConfig
    config: CQLConfig

    def __init__(self, obs_dim: int, act_dim: int, config: CQLConfig | None = None, device: str = "cpu"):
        super().__init__(obs_dim, act_dim, config, device)
        if self.config.lagrange_threshold is not None:
            self.nets["conservative_weight"] = Lagrange(self.config.conservative_weight).to(self.device)
            self.optimizers["conservative_weight"] = adam(self.nets["conservative_weight"],
                                                          self.config.lagrange_learning_rate)

    def constraint_field(self) -> tuple[str, int] | None:
        if self.config.lagrange_threshold is not None:
            return "lagrange_threshold", +1  # the weight is learned; its target gap is the constraint
        return self.constraint

    def _critic_loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        cfg, nets = self.config, self.nets
        loss, q_data, metrics = super()._critic_loss(batch)
        n, obs, next_obs = cfg.action_samples, batch.observations, batch.next_observations
        b = obs.shape[0]
        with torch.no_grad(), self.autocast():
            random_actions = torch.empty(b, n, self.act_dim, device=obs.device).uniform_(-1.0, 1.0)
            # Policy proposals at s and s' in one actor pass: [2B, N, act].
            proposals, log_probs, _ = nets["actor"].sample(torch.cat([obs, next_obs]), samples=n)
        actions = torch.cat([random_actions, proposals[:b], proposals[b:]], dim=1)  # [B, 3N, act]
        log_density = torch.cat([
            torch.full((b, n), uniform_log_density(self.act_dim), device=obs.device),
            log_probs[:b].float(), log_probs[b:].float()], dim=1)  # [B, 3N]
        with self.autocast():
            q_samples = nets["critic"](obs.unsqueeze(1).expand(-1, 3 * n, -1), actions).float()  # [K, B, 3N]
        if cfg.calibrated:
            floor = self.logged_returns(batch).view(1, b, 1)
            policy_q = q_samples[..., n:]
            metrics["calibrated_fraction"] = (policy_q.detach() < floor).float().mean()
            q_samples = torch.cat([q_samples[..., :n], torch.maximum(policy_q, floor)], dim=-1)
        gap = conservative_penalty(q_samples, q_data, log_density, cfg.cql_temperature)  # [K]
        if cfg.lagrange_threshold is None:
            weight = torch.tensor(cfg.conservative_weight)
            penalty = weight * gap.sum()
        else:
            weight = nets["conservative_weight"].value()
            penalty = (weight * (gap - cfg.lagrange_threshold)).sum()
        return loss + penalty, q_data, {**metrics, "cql_gap": gap.mean(), "conservative_weight": weight}

    def _update(self, batch: Batch) -> dict[str, torch.Tensor]:
        metrics = super()._update(batch)
        if self.config.lagrange_threshold is not None:
            # Dual step after the primal ones: raise the weight while the gap exceeds the threshold.
            multiplier = self.nets["conservative_weight"]
            step(self.optimizers["conservative_weight"],
                 multiplier.loss(metrics["cql_gap"], self.config.lagrange_threshold), [multiplier.log_alpha])
            multiplier.clamp_()
        return metrics
