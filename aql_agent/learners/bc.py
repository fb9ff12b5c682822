"""Behaviour cloning: a deterministic tanh policy regressed onto the dataset's actions (MSE).

The floor every offline method must beat; its loss is its generative-modelling error.
"""

from __future__ import annotations

import dataclasses

import torch
from torch.nn import functional as F

from aql_agent.learners.base import Batch, Learner, LearnerConfig, adam
from aql_agent.nn import DeterministicActor


@dataclasses.dataclass(frozen=True)
class BCConfig(LearnerConfig):
    learning_rate: float = 1e-3
    """Adam step size (d3rlpy's default for BC)."""


class BCLearner(Learner):
    fine_tunable = False
    name = "bc"
    config_class = BCConfig
    config: BCConfig

    def __init__(self, obs_dim: int, act_dim: int, config: BCConfig | None = None, device: str = "cpu"):
        super().__init__(obs_dim, act_dim, config, device)
        self.nets["actor"] = DeterministicActor(obs_dim, act_dim, self.config.hidden).to(self.device)
        self.optimizers["actor"] = adam(self.nets["actor"], self.config.learning_rate)

    def _update(self, batch: Batch) -> dict[str, torch.Tensor]:
        with self.autocast():
            loss = F.mse_loss(self.nets["actor"](batch.observations).float(), batch.actions)
        optimizer = self.optimizers["actor"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"actor_loss": loss, "gen_error": loss}

    def forward_policy(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return self.nets["actor"](obs)
