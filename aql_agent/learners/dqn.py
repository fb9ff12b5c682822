"""DQN with double-DQN targets and a Huber loss, run offline: the paper's off-policy baseline for Figure 2.

Targets pick the next action with the online network among the legal actions at s' and value it with the
target network (van Hasselt et al. 2016); the target network follows by Polyak averaging. DQN has no
behaviour model: its `gen_ce` / `gen_accuracy` are those of its Boltzmann policy softmax(Q), for comparison.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch.nn import functional as F

from aql_agent.learners.base import Batch, DiscreteCriticConfig, DiscreteLearner, adam, imitation_metrics, step
from aql_agent.nn import masked_argmax, masked_logits, mlp, soft_update


@dataclasses.dataclass(frozen=True)
class DQNConfig(DiscreteCriticConfig):
    pass


class DQNLearner(DiscreteLearner):
    name = "dqn"
    config_class = DQNConfig
    config: DQNConfig

    def __init__(self, obs_dim: int, act_dim: int, config: DQNConfig | None = None, device: str = "cpu"):
        super().__init__(obs_dim, act_dim, config, device)
        self.nets["q"] = mlp(obs_dim, self.config.hidden, act_dim, self.config.critic_layer_norm).to(self.device)
        self.nets["q_target"] = copy.deepcopy(self.nets["q"]).requires_grad_(False)
        self.optimizers["q"] = adam(self.nets["q"], self.config.critic_learning_rate)

    def _next_actions(self, batch: Batch, next_legal: torch.Tensor) -> torch.Tensor:
        """Double DQN: the online network's best legal action at s'."""
        return masked_argmax(self.nets["q"](batch.next_observations).float(), next_legal)

    def _q_update(self, batch: Batch, next_actions: torch.Tensor, legal: torch.Tensor) -> dict[str, torch.Tensor]:
        """One Huber step of Q(s, a) towards r + gamma * (1 - done) * Q_target(s', next_actions), plus the
        conservative penalty over the `legal` actions at s where it is on; the metrics include this batch's
        Q(s, .) as `q_values` (for the caller to use and drop)."""
        cfg, nets = self.config, self.nets
        with torch.no_grad(), self.autocast():
            next_q = nets["q_target"](batch.next_observations).float().gather(1, next_actions[:, None]).squeeze(1)
            target = batch.rewards + cfg.gamma * (1.0 - batch.terminals) * next_q
        with self.autocast():
            q_values = nets["q"](batch.observations).float()
        q = q_values.gather(1, batch.actions[:, None]).squeeze(1)
        loss = F.smooth_l1_loss(q, target)
        metrics = {"critic_loss": loss, "q_mean": q.mean(), "q_values": q_values}
        if cfg.conservative_weight > 0:
            gap, floored = self._conservative_gap(batch, legal, q_values, q)
            loss = loss + cfg.conservative_weight * gap
            metrics["cql_gap"] = gap
            if floored is not None:
                metrics["calibrated_fraction"] = floored
        step(self.optimizers["q"], loss, list(nets["q"].parameters()))
        soft_update(nets["q_target"], nets["q"], cfg.tau)
        return metrics

    def _conservative_gap(self, batch: Batch, legal: torch.Tensor, q_values: torch.Tensor, q_data: torch.Tensor
                          ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """CQL(H)'s gap, logsumexp over the legal actions at s of Q minus Q at the logged action (batch mean),
        and with `calibrated` the share of legal values floored at the return-to-go (else None)."""
        floored = None
        if self.config.calibrated:
            floor = self.logged_returns(batch)[:, None].to(q_values.dtype)
            floored = ((q_values.detach() < floor) & legal).sum() / legal.sum()
            q_values = torch.maximum(q_values, floor)
        return (torch.logsumexp(masked_logits(q_values, legal), -1) - q_data).mean(), floored

    def _update(self, batch: Batch) -> dict[str, torch.Tensor]:
        legal, next_legal = self.masks(batch)
        with torch.no_grad(), self.autocast():
            next_actions = self._next_actions(batch, next_legal)
        metrics = self._q_update(batch, next_actions, legal)
        q_values = metrics.pop("q_values")
        return {**metrics, **imitation_metrics(q_values, batch.actions, legal)}

    def acting_q(self, obs: torch.Tensor) -> torch.Tensor:
        """Q at `obs` as the policy acts on it: the online network's, or with act_with_targets its average."""
        return self.nets["q_target" if self.config.act_with_targets else "q"](obs).float()

    def forward_policy(self, obs: torch.Tensor, deterministic: bool, mask: torch.Tensor) -> torch.Tensor:
        q = self.acting_q(obs)
        greedy = masked_argmax(q, mask)
        return greedy if deterministic else self.explore(q, greedy, mask, mask)
