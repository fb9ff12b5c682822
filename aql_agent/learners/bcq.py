"""Batch-constrained Q-learning, continuous (Fujimoto et al., 2019).

A conditional VAE models the behaviour policy; a perturbation network nudges its samples by at most
`perturbation` (phi) towards higher Q; twin critics learn from the soft-clipped double-Q target over
`target_samples` candidate next actions. Acting samples `act_samples` candidates and takes the argmax of the
first critic, as the official code does. Official settings: lr 1e-3, batch 100, phi 0.05, lambda 0.75,
KL weight 0.5; here the batch is 256 and the networks 256-256 (d3rlpy's shapes) so the baselines compare
on equal footing; both are config fields.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch import nn
from torch.nn import functional as F

from aql_agent.learners.base import (Batch, EnsembleConfig, Learner, adam, behaviour_rows, best_of_samples,
                                     step)
from aql_agent.nn import ConditionalVAE, QEnsemble, bcq_target, mlp, soft_update, vae_loss


@dataclasses.dataclass(frozen=True)
class BCQConfig(EnsembleConfig):
    actor_learning_rate: float = 1e-3
    """Adam step size of the perturbation network."""
    critic_learning_rate: float = 1e-3
    """Adam step size of the critics."""
    vae_learning_rate: float = 1e-3
    """Adam step size of the VAE."""
    vae_hidden: tuple[int, ...] = (256, 256)
    """VAE encoder and decoder hidden sizes (official BCQ: 750-750)."""
    vae_kl_weight: float = 0.5
    """Weight of the KL term in the VAE loss."""
    perturbation: float = 0.05
    """phi: the largest perturbation of a VAE action, as a fraction of the action range."""
    lam: float = 0.75
    """Weight of the minimum in the target's soft clipped double Q."""
    target_samples: int = 10
    """Candidate next actions per next state in the target."""
    act_samples: int = 100
    """Candidate actions per state when acting."""


class Perturbation(nn.Module):
    """(s, a) -> clip(a + phi * tanh(f(s, a)), -1, 1)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...], phi: float):
        super().__init__()
        self.net = mlp(obs_dim + act_dim, hidden, act_dim)
        self.phi = phi

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return (act + self.phi * torch.tanh(self.net(torch.cat([obs, act], dim=-1)))).clamp(-1.0, 1.0)


class BCQLearner(Learner):
    constraint = ("perturbation", +1)
    name = "bcq"
    config_class = BCQConfig
    config: BCQConfig

    def __init__(self, obs_dim: int, act_dim: int, config: BCQConfig | None = None, device: str = "cpu"):
        super().__init__(obs_dim, act_dim, config, device)
        cfg = self.config
        self.nets["vae"] = ConditionalVAE(obs_dim, act_dim, cfg.vae_hidden).to(self.device)
        self.nets["actor"] = Perturbation(obs_dim, act_dim, cfg.hidden, cfg.perturbation).to(self.device)
        self.nets["critic"] = QEnsemble(obs_dim, act_dim, cfg.hidden, members=cfg.critics,
                                           layer_norm=cfg.critic_layer_norm).to(self.device)
        self.nets["actor_target"] = copy.deepcopy(self.nets["actor"]).requires_grad_(False)
        self.nets["critic_target"] = copy.deepcopy(self.nets["critic"]).requires_grad_(False)
        self.optimizers["vae"] = adam(self.nets["vae"], cfg.vae_learning_rate)
        self.optimizers["actor"] = adam(self.nets["actor"], cfg.actor_learning_rate)
        self.optimizers["critic"] = adam(self.nets["critic"], cfg.critic_learning_rate)

    def _update(self, batch: Batch) -> dict[str, torch.Tensor]:
        cfg, nets = self.config, self.nets
        obs, actions = batch.observations, batch.actions
        n = cfg.target_samples

        behaviour = behaviour_rows(batch)  # while fine-tuning, the VAE models the logged behaviour only
        with self.autocast():
            recon, mean, std = nets["vae"](behaviour.observations, behaviour.actions)
            generative_loss = vae_loss(recon.float(), behaviour.actions, mean.float(), std.float(),
                                       cfg.vae_kl_weight)
        step(self.optimizers["vae"], generative_loss, list(nets["vae"].parameters()))

        with torch.no_grad(), self.autocast():
            next_obs = batch.next_observations.unsqueeze(1).expand(-1, n, -1)  # [B, N, obs]
            candidates = nets["actor_target"](next_obs, nets["vae"].decode(next_obs))
            next_q = nets["critic_target"](next_obs, candidates).float()  # [K, B, N]
            target = bcq_target(next_q, batch.rewards, batch.terminals, cfg.gamma, cfg.lam, cfg.target_subset)
        with self.autocast():
            q = nets["critic"](obs, actions).float()  # [K, B]
        critic_loss = F.mse_loss(q, target.expand_as(q), reduction="none").mean(1).sum()
        step(self.optimizers["critic"], critic_loss, list(nets["critic"].parameters()))

        with torch.no_grad(), self.autocast():
            sampled = nets["vae"].decode(obs)
        with self.autocast():
            actor_loss = -nets["critic"](obs, nets["actor"](obs, sampled))[0].float().mean()
        step(self.optimizers["actor"], actor_loss, list(nets["actor"].parameters()))

        soft_update(nets["critic_target"], nets["critic"], cfg.tau)
        soft_update(nets["actor_target"], nets["actor"], cfg.tau)
        # Figure 1 measures BCQ's generative model, the VAE, sampled from its clipped prior.
        gen_error = F.mse_loss(sampled.float(), actions)
        return {"vae_loss": generative_loss, "critic_loss": critic_loss, "actor_loss": actor_loss,
                "q_mean": q.mean(), "gen_error": gen_error}

    def forward_policy(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        repeated = obs.unsqueeze(1).expand(-1, self.config.act_samples, -1)  # [B, N, obs]
        candidates = self.nets["actor"](repeated, self.nets["vae"].decode(repeated))
        return best_of_samples(self.nets["critic"], obs, candidates)
