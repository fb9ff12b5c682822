"""Discrete BCQ (Fujimoto et al. 2019, "Benchmarking batch deep RL algorithms"): DQN restricted to actions
the data supports.

An imitation network G(a|s) is fitted to the dataset's actions (cross-entropy plus a small logit penalty).
Only actions with G(a|s) / max_a' G(a'|s) >= `threshold` among the legal ones are allowed, both in the
double-DQN target at s' and when acting. With threshold 0 this is DQN; near 1 it is behaviour cloning.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.nn import functional as F

from aql_agent.learners.base import Batch, adam, behaviour_rows, imitation_metrics, step
from aql_agent.learners.dqn import DQNConfig, DQNLearner
from aql_agent.nn import masked_argmax, masked_logits, mlp


@dataclasses.dataclass(frozen=True)
class DiscreteBCQConfig(DQNConfig):
    imitation_learning_rate: float = 3e-4
    """Adam step size of the imitation network G."""
    threshold: float = 0.3
    """tau: an action is allowed where G(a|s) / max G(.|s) >= tau (the BCQ paper's 0.3)."""
    logit_penalty: float = 1e-2
    """Weight of the mean squared logits in G's loss (the official code's 1e-2)."""


class DiscreteBCQLearner(DQNLearner):
    constraint = ("threshold", -1)  # G(a|s) / max G below it is not allowed; 0 is DQN
    name = "bcq-discrete"
    config_class = DiscreteBCQConfig
    config: DiscreteBCQConfig

    def __init__(self, obs_dim: int, act_dim: int, config: DiscreteBCQConfig | None = None, device: str = "cpu"):
        super().__init__(obs_dim, act_dim, config, device)
        self.nets["imitation"] = self._imitation_network().to(self.device)
        self.optimizers["imitation"] = adam(self.nets["imitation"], self.config.imitation_learning_rate)

    def _imitation_network(self) -> nn.Module:
        return mlp(self.obs_dim, self.config.hidden, self.act_dim)

    def imitation_logits(self, obs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """G's logits over the actions at `obs` (before masking)."""
        return self.nets["imitation"](obs)

    def _generative_loss(self, batch: Batch, legal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(G's loss, G's logits at the batch's states)."""
        logits = self.imitation_logits(batch.observations, legal).float()
        loss = F.cross_entropy(masked_logits(logits, legal), batch.actions)
        return loss + self.config.logit_penalty * logits.pow(2).mean(), logits

    def allowed(self, obs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Legal actions G deems likely enough; never empty (G's own best legal action always passes)."""
        probs = torch.softmax(masked_logits(self.imitation_logits(obs, mask).float(), mask), -1)
        return mask & (probs >= self.config.threshold * probs.amax(-1, keepdim=True))

    def _update(self, batch: Batch) -> dict[str, torch.Tensor]:
        legal, next_legal = self.masks(batch)
        behaviour = behaviour_rows(batch)
        behaviour_legal = legal if behaviour is batch else self.masks(behaviour)[0]
        learns = self.config.imitation_learning_rate > 0  # a frozen G (keep-behaviour fine-tuning) is only measured
        with torch.set_grad_enabled(learns), self.autocast():
            generative_loss, logits = self._generative_loss(behaviour, behaviour_legal)
        if learns:
            step(self.optimizers["imitation"], generative_loss, list(self.nets["imitation"].parameters()))
        with torch.no_grad(), self.autocast():
            allowed = self.allowed(batch.next_observations, next_legal)
            next_actions = masked_argmax(self.nets["q"](batch.next_observations).float(), allowed)
        metrics = self._q_update(batch, next_actions, legal)
        metrics.pop("q_values")
        return {**metrics, "imitation_loss": generative_loss,
                **imitation_metrics(logits, behaviour.actions, behaviour_legal)}

    def forward_policy(self, obs: torch.Tensor, deterministic: bool, mask: torch.Tensor) -> torch.Tensor:
        q, allowed = self.acting_q(obs), self.allowed(obs, mask)
        greedy = masked_argmax(q, allowed)
        return greedy if deterministic else self.explore(q, greedy, allowed, mask)
