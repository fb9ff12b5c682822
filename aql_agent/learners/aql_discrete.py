"""Discrete AQL (Wei et al. 2021, section 6.2): discrete BCQ whose imitation network is residual.

* G(a|s) is `ResidualImitation`: a base network's logits b(s) plus a residual network r(s, softmax(b(s)));
  G's generative loss (eq. 11 with d = cross-entropy) is CE(b + r, a) + CE(b, a), plus BCQ's logit penalty.
* Policy improvement (eq. 13) with the constraint weight alpha fixed, the paper's choice for discrete
  control: G minimises alpha * L_G - E_{a ~ G(s)} Q(s, a) / mean|Q|. Dividing by the batch's mean |Q| (as
  TD3+BC does) keeps alpha's meaning independent of the reward scale.
* Everything else is discrete BCQ: the same Q network, double-DQN targets over the allowed actions
  (G(a|s) / max G >= threshold among the legal ones), Huber loss, Polyak targets.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.nn import functional as F

from aql_agent.learners.base import Batch
from aql_agent.learners.bcq_discrete import DiscreteBCQConfig, DiscreteBCQLearner
from aql_agent.nn import ResidualImitation, masked_logits


@dataclasses.dataclass(frozen=True)
class DiscreteAQLConfig(DiscreteBCQConfig):
    residual_hidden: tuple[int, ...] = (256, 256)
    """Residual network hidden sizes."""
    alpha: float = 1.0
    """Fixed weight of G's generative loss against its Q term (0 would drop the constraint)."""


class DiscreteAQLLearner(DiscreteBCQLearner):
    name = "aql-discrete"
    config_class = DiscreteAQLConfig
    config: DiscreteAQLConfig

    def _imitation_network(self) -> nn.Module:
        return ResidualImitation(self.obs_dim, self.act_dim, self.config.hidden, self.config.residual_hidden)

    def imitation_logits(self, obs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.nets["imitation"](obs, mask)[1]

    def _generative_loss(self, batch: Batch, legal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        base, logits = self.nets["imitation"](batch.observations, legal)
        base, logits = base.float(), logits.float()
        generative = (F.cross_entropy(masked_logits(logits, legal), batch.actions)
                      + F.cross_entropy(masked_logits(base, legal), batch.actions)
                      + cfg.logit_penalty * logits.pow(2).mean())
        with torch.no_grad():
            q = self.nets["q"](batch.observations).float().masked_fill(~legal, 0.0)
            scale = q.abs().sum() / legal.sum().clamp_min(1)
        value = (torch.softmax(masked_logits(logits, legal), -1) * q).sum(-1).mean() / scale.clamp_min(1e-6)
        return cfg.alpha * generative - value, logits
