"""Soft actor-critic run offline (the paper's failure baseline), and the base of CQL.

Twin critics from the shared Q-ensemble (or K of them with random-subset targets, RLPD's critic), a
tanh-Gaussian actor, and automatic entropy tuning towards -act_dim. The critic loss is a method so that CQL
can add its conservative penalty to it.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch.nn import functional as F

from aql_agent.learners.base import Batch, EnsembleConfig, Learner, adam, step
from aql_agent.nn import Lagrange, QEnsemble, TanhGaussianActor, soft_update, target_members


@dataclasses.dataclass(frozen=True)
class SACConfig(EnsembleConfig):
    actor_learning_rate: float = 3e-4
    """Adam step size of the actor."""
    critic_learning_rate: float = 3e-4
    """Adam step size of the critics."""
    temperature_learning_rate: float = 3e-4
    """Adam step size of the entropy temperature."""
    initial_temperature: float = 1.0
    """Starting entropy temperature."""
    backup_entropy: bool = True
    """Back up the entropy bonus in the critic's target (SAC's soft value: r + gamma (Q' - temperature log pi')).
    Off, the target is r + gamma Q', as CQL's offline recipes (CORL, JaxCQL) use: offline, the temperature
    can settle where its term outweighs the reward (halfcheetah-medium, CQL: ~0.27 x log pi ~6 = 1.6 per step
    against a reward of ~0.8), and Q is then mostly the entropy term. The actor's objective keeps it either way."""


class SACLearner(Learner):
    name = "sac"
    config_class = SACConfig
    config: SACConfig

    def __init__(self, obs_dim: int, act_dim: int, config: SACConfig | None = None, device: str = "cpu"):
        super().__init__(obs_dim, act_dim, config, device)
        cfg = self.config
        self.nets["actor"] = TanhGaussianActor(obs_dim, act_dim, cfg.hidden).to(self.device)
        self.nets["critic"] = QEnsemble(obs_dim, act_dim, cfg.hidden, members=cfg.critics,
                                           layer_norm=cfg.critic_layer_norm).to(self.device)
        self.nets["critic_target"] = copy.deepcopy(self.nets["critic"]).requires_grad_(False)
        self.nets["temperature"] = Lagrange(cfg.initial_temperature, log_min=-20.0, log_max=5.0).to(self.device)
        self.optimizers["actor"] = adam(self.nets["actor"], cfg.actor_learning_rate)
        self.optimizers["critic"] = adam(self.nets["critic"], cfg.critic_learning_rate)
        self.optimizers["temperature"] = adam(self.nets["temperature"], cfg.temperature_learning_rate)
        self.target_entropy = -float(act_dim)

    def _critic_loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """(TD loss, Q(s, a_data) [K, B], metrics)."""
        cfg, nets = self.config, self.nets
        alpha = nets["temperature"].value()
        with torch.no_grad(), self.autocast():
            next_action, next_log_prob, _ = nets["actor"].sample(batch.next_observations)
            next_q = target_members(nets["critic_target"](batch.next_observations, next_action).float(),
                                    cfg.target_subset).amin(0)
            next_value = next_q - alpha * next_log_prob.float() if cfg.backup_entropy else next_q
            target = batch.rewards + cfg.gamma * (1.0 - batch.terminals) * next_value
        with self.autocast():
            q = nets["critic"](batch.observations, batch.actions).float()  # [K, B]
        loss = F.mse_loss(q, target.expand_as(q), reduction="none").mean(1).sum()
        return loss, q, {"q_mean": q.mean()}

    def _update(self, batch: Batch) -> dict[str, torch.Tensor]:
        nets = self.nets
        critic_loss, _, metrics = self._critic_loss(batch)
        step(self.optimizers["critic"], critic_loss, list(nets["critic"].parameters()))

        alpha = nets["temperature"].value()
        with self.autocast():
            action, log_prob, _ = nets["actor"].sample(batch.observations)
            q = nets["critic"](batch.observations, action).float().amin(0)
            actor_loss = (alpha * log_prob.float() - q).mean()
        step(self.optimizers["actor"], actor_loss, list(nets["actor"].parameters()))

        # Temperature: the constraint is entropy >= target, i.e. log_prob <= -target; alpha rises while violated.
        temperature_loss = nets["temperature"].loss(log_prob.float(), -self.target_entropy)
        step(self.optimizers["temperature"], temperature_loss, [nets["temperature"].log_alpha])
        nets["temperature"].clamp_()

        soft_update(nets["critic_target"], nets["critic"], self.config.tau)
        gen_error = F.mse_loss(action.detach().float(), batch.actions)
        return {"critic_loss": critic_loss, "actor_loss": actor_loss, "temperature": alpha,
                "gen_error": gen_error, **metrics}

    def forward_policy(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        actor = self.nets["actor"]
        return actor.mode(obs) if deterministic else actor.sample(obs)[0]
