"""Bootstrapping error accumulation reduction, BEAR (Kumar et al., 2019).

A tanh-Gaussian actor maximises the minimum of K critics while the MMD between its samples and the
behaviour VAE's samples stays under `mmd_threshold`; the multiplier is tuned by dual ascent with log-alpha
clamped to [-5, 10]. For the first `warmup_steps` updates the actor only matches the VAE (MMD term alone).
Targets take `target_samples` actor actions at s', 0.75 * min + 0.25 * max over the ensemble and the max
over samples; acting takes the argmax of the first critic over `act_samples` actor samples. Defaults
follow BEAR's official code and its D4RL (rlkit) variant: 256-256 networks, policy lr 1e-4, Q and VAE lr
3e-4, laplacian kernel sigma 20, threshold 0.05; MMD is matched on pre-tanh actions as the official code
does, with 5 samples per side.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch.nn import functional as F

from aql_agent.learners.base import (Batch, EnsembleConfig, Learner, adam, behaviour_mean, behaviour_rows,
                                     best_of_samples, step)
from aql_agent.nn import (ConditionalVAE, Lagrange, QEnsemble, TanhGaussianActor, bcq_target, mmd, soft_update,
                          vae_loss)


@dataclasses.dataclass(frozen=True)
class BEARConfig(EnsembleConfig):
    actor_learning_rate: float = 1e-4
    """Adam step size of the actor."""
    critic_learning_rate: float = 3e-4
    """Adam step size of the critics."""
    vae_learning_rate: float = 3e-4
    """Adam step size of the behaviour VAE."""
    alpha_learning_rate: float = 1e-3
    """Adam step size of log-alpha (dual ascent)."""
    vae_hidden: tuple[int, ...] = (256, 256)
    """Behaviour VAE hidden sizes (official: 750-750; d3rlpy: 256-256)."""
    vae_kl_weight: float = 0.5
    """Weight of the KL term in the VAE loss."""
    lam: float = 0.75
    """Weight of the ensemble minimum in the target."""
    mmd_kernel: str = "laplacian"
    """'laplacian' or 'gaussian'."""
    mmd_sigma: float = 20.0
    """Kernel bandwidth."""
    mmd_samples: int = 5
    """Samples per state from the actor and from the VAE for the MMD estimate."""
    mmd_threshold: float = 0.05
    """epsilon: the MMD the actor may not exceed."""
    initial_alpha: float = 1.0
    """Starting Lagrange multiplier."""
    warmup_steps: int = 20000
    """Updates during which the actor only minimises MMD to the VAE."""
    target_samples: int = 10
    """Actor samples per next state in the target."""
    act_samples: int = 10
    """Actor samples per state when acting."""


class BEARLearner(Learner):
    constraint = ("mmd_threshold", +1)
    name = "bear"
    config_class = BEARConfig
    config: BEARConfig

    def __init__(self, obs_dim: int, act_dim: int, config: BEARConfig | None = None, device: str = "cpu"):
        super().__init__(obs_dim, act_dim, config, device)
        cfg = self.config
        self.nets["vae"] = ConditionalVAE(obs_dim, act_dim, cfg.vae_hidden).to(self.device)
        self.nets["actor"] = TanhGaussianActor(obs_dim, act_dim, cfg.hidden).to(self.device)
        self.nets["critic"] = QEnsemble(obs_dim, act_dim, cfg.hidden, members=cfg.critics,
                                           layer_norm=cfg.critic_layer_norm).to(self.device)
        self.nets["actor_target"] = copy.deepcopy(self.nets["actor"]).requires_grad_(False)
        self.nets["critic_target"] = copy.deepcopy(self.nets["critic"]).requires_grad_(False)
        self.nets["alpha"] = Lagrange(cfg.initial_alpha).to(self.device)
        self.optimizers["vae"] = adam(self.nets["vae"], cfg.vae_learning_rate)
        self.optimizers["actor"] = adam(self.nets["actor"], cfg.actor_learning_rate)
        self.optimizers["critic"] = adam(self.nets["critic"], cfg.critic_learning_rate)
        self.optimizers["alpha"] = adam(self.nets["alpha"], cfg.alpha_learning_rate)

    def _update(self, batch: Batch) -> dict[str, torch.Tensor]:
        cfg, nets = self.config, self.nets
        obs, actions = batch.observations, batch.actions

        behaviour = behaviour_rows(batch)
        with self.autocast():
            recon, mean, std = nets["vae"](behaviour.observations, behaviour.actions)
            generative_loss = vae_loss(recon.float(), behaviour.actions, mean.float(), std.float(), cfg.vae_kl_weight)
        step(self.optimizers["vae"], generative_loss, list(nets["vae"].parameters()))

        with torch.no_grad(), self.autocast():
            candidates, _, _ = nets["actor_target"].sample(batch.next_observations, samples=cfg.target_samples)
            next_obs = batch.next_observations.unsqueeze(1).expand(-1, cfg.target_samples, -1)  # [B, N, obs]
            next_q = nets["critic_target"](next_obs, candidates).float()  # [K, B, N]
            target = bcq_target(next_q, batch.rewards, batch.terminals, cfg.gamma, cfg.lam, cfg.target_subset)
        with self.autocast():
            q = nets["critic"](obs, actions).float()  # [K, B]
        critic_loss = F.mse_loss(q, target.expand_as(q), reduction="none").mean(1).sum()
        step(self.optimizers["critic"], critic_loss, list(nets["critic"].parameters()))

        alpha = nets["alpha"].value()
        with torch.no_grad(), self.autocast():
            repeated = obs.unsqueeze(1).expand(-1, cfg.mmd_samples, -1)  # [B, M, obs]
            behaviour_raw = nets["vae"].decode_pre_tanh(repeated)
        with self.autocast():
            policy_actions, _, policy_raw = nets["actor"].sample(obs, samples=cfg.mmd_samples)  # [B, M, act]
            divergence = mmd(policy_raw.float(), behaviour_raw.float(), cfg.mmd_kernel, cfg.mmd_sigma)  # [B]
            if self.updates < cfg.warmup_steps:
                actor_loss = (alpha * divergence).mean()
            else:
                policy_q = nets["critic"](obs, policy_actions[:, 0]).float().amin(0)  # [B]
                actor_loss = (-policy_q + alpha * divergence).mean()
        step(self.optimizers["actor"], actor_loss, list(nets["actor"].parameters()))
        step(self.optimizers["alpha"], nets["alpha"].loss(behaviour_mean(divergence, batch), cfg.mmd_threshold),
             [nets["alpha"].log_alpha])
        nets["alpha"].clamp_()

        soft_update(nets["critic_target"], nets["critic"], cfg.tau)
        soft_update(nets["actor_target"], nets["actor"], cfg.tau)
        gen_error = F.mse_loss(policy_actions[:, 0].detach().float(), actions)
        return {"vae_loss": generative_loss, "critic_loss": critic_loss, "actor_loss": actor_loss,
                "mmd": divergence.mean(), "alpha": alpha, "q_mean": q.mean(), "gen_error": gen_error}

    def forward_policy(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        candidates, _, _ = self.nets["actor"].sample(obs, samples=self.config.act_samples)  # [B, N, act]
        return best_of_samples(self.nets["critic"], obs, candidates)
