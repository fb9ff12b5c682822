"""DDPG run offline: a deterministic actor climbing one critic, with no constraint to the data.

Kept as the paper's failure baseline: its critic extrapolates to actions the dataset never shows.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch.nn import functional as F

from aql_agent.learners.base import Batch, CriticConfig, Learner, adam, step
from aql_agent.nn import DeterministicActor, QEnsemble, soft_update


@dataclasses.dataclass(frozen=True)
class DDPGConfig(CriticConfig):
    actor_learning_rate: float = 3e-4
    """Adam step size of the actor."""
    critic_learning_rate: float = 3e-4
    """Adam step size of the critic."""


class DDPGLearner(Learner):
    name = "ddpg"
    config_class = DDPGConfig
    config: DDPGConfig

    def __init__(self, obs_dim: int, act_dim: int, config: DDPGConfig | None = None, device: str = "cpu"):
        super().__init__(obs_dim, act_dim, config, device)
        cfg = self.config
        self.nets["actor"] = DeterministicActor(obs_dim, act_dim, cfg.hidden).to(self.device)
        self.nets["critic"] = QEnsemble(obs_dim, act_dim, cfg.hidden, members=1,
                                           layer_norm=cfg.critic_layer_norm).to(self.device)
        self.nets["actor_target"] = copy.deepcopy(self.nets["actor"]).requires_grad_(False)
        self.nets["critic_target"] = copy.deepcopy(self.nets["critic"]).requires_grad_(False)
        self.optimizers["actor"] = adam(self.nets["actor"], cfg.actor_learning_rate)
        self.optimizers["critic"] = adam(self.nets["critic"], cfg.critic_learning_rate)

    def _update(self, batch: Batch) -> dict[str, torch.Tensor]:
        cfg, nets = self.config, self.nets
        with torch.no_grad(), self.autocast():
            next_q = nets["critic_target"](batch.next_observations,
                                           nets["actor_target"](batch.next_observations))[0].float()
            target = batch.rewards + cfg.gamma * (1.0 - batch.terminals) * next_q
        with self.autocast():
            q = nets["critic"](batch.observations, batch.actions)[0].float()
            critic_loss = F.mse_loss(q, target)
        step(self.optimizers["critic"], critic_loss, list(nets["critic"].parameters()))

        with self.autocast():
            policy_action = nets["actor"](batch.observations)
            actor_loss = -nets["critic"](batch.observations, policy_action)[0].float().mean()
        step(self.optimizers["actor"], actor_loss, list(nets["actor"].parameters()))

        soft_update(nets["critic_target"], nets["critic"], cfg.tau)
        soft_update(nets["actor_target"], nets["actor"], cfg.tau)
        gen_error = F.mse_loss(policy_action.detach().float(), batch.actions)
        return {"critic_loss": critic_loss, "actor_loss": actor_loss, "q_mean": q.mean(), "gen_error": gen_error}

    def forward_policy(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return self.nets["actor"](obs)
