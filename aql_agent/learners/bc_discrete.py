"""Discrete behaviour cloning: a masked softmax policy fitted to the dataset's actions (cross-entropy).

The floor for the discrete learners; its loss is its generative error (`gen_ce`, and `gen_accuracy`).
"""

from __future__ import annotations

import dataclasses

import torch
from torch.nn import functional as F

from aql_agent.learners.base import Batch, DiscreteLearner, LearnerConfig, adam, imitation_metrics, step
from aql_agent.nn import masked_argmax, masked_logits, mlp


@dataclasses.dataclass(frozen=True)
class DiscreteBCConfig(LearnerConfig):
    learning_rate: float = 3e-4
    """Adam step size."""


class DiscreteBCLearner(DiscreteLearner):
    fine_tunable = False
    name = "bc-discrete"
    config_class = DiscreteBCConfig
    config: DiscreteBCConfig

    def __init__(self, obs_dim: int, act_dim: int, config: DiscreteBCConfig | None = None, device: str = "cpu"):
        super().__init__(obs_dim, act_dim, config, device)
        self.nets["policy"] = mlp(obs_dim, self.config.hidden, act_dim).to(self.device)
        self.optimizers["policy"] = adam(self.nets["policy"], self.config.learning_rate)

    def _update(self, batch: Batch) -> dict[str, torch.Tensor]:
        legal, _ = self.masks(batch)
        with self.autocast():
            logits = self.nets["policy"](batch.observations).float()
        loss = F.cross_entropy(masked_logits(logits, legal), batch.actions)
        step(self.optimizers["policy"], loss, list(self.nets["policy"].parameters()))
        return {"policy_loss": loss, **imitation_metrics(logits, batch.actions, legal)}

    def forward_policy(self, obs: torch.Tensor, deterministic: bool, mask: torch.Tensor) -> torch.Tensor:
        logits = self.nets["policy"](obs).float()
        if deterministic:
            return masked_argmax(logits, mask)
        return torch.distributions.Categorical(logits=masked_logits(logits, mask)).sample()
