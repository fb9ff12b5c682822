"""AQL, action-conditioned Q-learning (Wei et al., IJCAI 2021), and its AQL+CQL variant.

AQL keeps BEAR's value learning and replaces the generative model with a residual one (sections 5.2-5.3):

* G(s): a conditional VAE proposes an action a_vae; a residual network takes (s, a_vae) and outputs a
  correction r; G's action is tanh(pre_tanh(a_vae) + r), i.e. the VAE action plus the residual, squashed to
  the action bounds. The residual's last layer starts at zero, so G starts as the plain VAE.
* Generative loss (eq. 11): d(a_hat, a) + L_VAE, with d the MSE and a_hat the residual output on the VAE's
  reconstruction of (s, a). This fits the model to the data at every step.
* Policy improvement (eq. 13): G maximises min_k Q_k(s, G(s)) subject to a generative error <= epsilon,
  with alpha tuned by dual gradient descent (log-alpha clamped to [-5, 10], as BEAR). The constrained error
  is the MSE between G(s) (prior samples, the actions G actually proposes) and the dataset action: the
  paper's Figure-1 quantity and the epsilon_g of its section 4, reported as `gen_mse`. The Q term and the
  constraint shape the residual network; the VAE stays a maximum-likelihood behaviour model (eq. 2).
  `constrain="reconstruction"` measures eq. 11's d(a_hat, a) instead, which mixed data can meet.
* Critic: K critics, target y = r + gamma * max over `target_samples` actions from the *target* generator
  of [lam * min + (1 - lam) * max] over the target critics (eq. 12).
* Acting: `act_samples` candidates from G(s), argmax of the first critic (BEAR's rule); with
  `act_with_targets`, from the target G and critic (their Polyak averages) instead.

Paper defaults: K = 2, lambda = 0.75, epsilon = 0.05. Where the paper is silent this follows BEAR's official
code and its D4RL variant: 256-256 networks, critic lr 3e-4, generator lr 3e-4 (BEAR's VAE lr; G is trained
as one model), 10 target and 10 acting samples, and a warm start of `warmup_steps` updates in which G only
fits the data (no Q term), as BEAR's actor only matches MMD during its warm start.

AQL+CQL (section 6): `conservative_weight > 0` adds CQL(H)'s penalty to the critic loss, over uniform
actions and G's samples at s and s'. G has no tractable density, so the logsumexp weights every sample
equally (CQL(H) without importance sampling).
"""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch import nn
from torch.nn import functional as F

from aql_agent.errors import AqlError
from aql_agent.learners.base import (Batch, EnsembleConfig, Learner, adam, behaviour_mean, behaviour_rows,
                                     best_of_samples, step)
from aql_agent.nn import (ConditionalVAE, Lagrange, QEnsemble, bcq_target, conservative_penalty, mlp, soft_update,
                          vae_loss)


@dataclasses.dataclass(frozen=True)
class AQLConfig(EnsembleConfig):
    generator_learning_rate: float = 3e-4
    """Adam step size of the VAE and the residual network."""
    critic_learning_rate: float = 3e-4
    """Adam step size of the critics."""
    alpha_learning_rate: float = 1e-3
    """Adam step size of log-alpha (dual gradient descent)."""
    vae_hidden: tuple[int, ...] = (256, 256)
    """VAE encoder and decoder hidden sizes."""
    residual_hidden: tuple[int, ...] = (256, 256)
    """Residual network hidden sizes."""
    vae_kl_weight: float = 0.5
    """Weight of the KL term in L_VAE."""
    lam: float = 0.75
    """lambda, weight of the ensemble minimum in the target (paper: 0.75)."""
    epsilon: float = 0.05
    """Threshold on the generative error (paper: 0.05)."""
    initial_alpha: float = 1.0
    """Starting Lagrange multiplier."""
    warmup_steps: int = 20000
    """Updates during which G only fits the data (no Q term)."""
    target_samples: int = 10
    """Target-generator samples per next state in the target."""
    act_samples: int = 10
    """Generator samples per state when acting."""
    act_with_targets: bool = False
    """Act with the target generator and critic (the Polyak averages, over ~1/tau updates, that the targets
    already keep) instead of the ones just updated. A choice of acting only: training is the same either way.
    On hopper-medium the policy of one update's weights moves 20-40 points between checkpoints 1000 updates
    apart; the averaged one scores 7-9 points higher and moves less (docs/results.md#fine-tuning)."""
    conservative_weight: float = 0.0
    """Weight of CQL(H)'s penalty in the critic loss; > 0 makes this AQL+CQL."""
    conservative_samples: int = 10
    """Actions per state from each CQL proposal (uniform, G(s), G(s'))."""
    normalize_q: bool = True
    """Divide the Q term of G's loss by the batch's mean |Q| (detached). The constrained problem (eq. 13) is
    the same, since a positive scale of the objective moves no optimum; only alpha's scale changes, from
    O(|dQ/da|) (hundreds on MuJoCo, so log-alpha needs thousands of dual steps to catch up while G drifts
    out of the data) to O(1) on any reward scale."""
    improve_on: str = "behaviour"
    """Rows G's Q term averages over: `behaviour`, the rows its constraint measures (all of them offline; while
    fine-tuning, the logged rows only), or `all`. With `all`, fine-tuning pushes G towards higher Q on the
    agent's own states, where no constraint holds it back (its error is measured against logged actions only),
    and G leaves the data exactly where the agent acts."""
    epsilon_at_least_vae: bool = False
    """Hold G to max(epsilon, the VAE's own error) instead of epsilon: the error of G without its residual, on
    the same prior samples, measured every batch. Where the plain VAE fits the data within epsilon this is the
    paper's constraint; where it cannot (mixed data such as hopper-medium-replay, on which even BC's
    deterministic fit stays near 0.13) epsilon = 0.05 is out of reach by construction, alpha climbs to its
    clamp and the Q term weighs nothing. With this on, the residual may move G towards higher Q as long as G
    stays as close to the data as its behaviour model is."""
    residual_fit_under_alpha: bool = False
    """Weight the residual's fit term d(a_hat, a) by alpha, as eq. 13 weights the generative loss, instead of by
    1; the VAE is trained by its own loss alone, with weight 1 (it is the behaviour model every proposal starts
    from: under a large alpha the residual's term would otherwise swamp its likelihood). Off, the residual
    is pulled back to the data with a fixed weight besides the constraint, so where the constraint is slack
    (alpha at its floor) G still cannot spend the error budget epsilon allows: on halfcheetah-medium G's error
    stays at 0.038 against epsilon = 0.05 with alpha at e^-5. On, a slack constraint frees the residual and a
    binding one holds it, both through alpha."""
    constrain: str = "samples"
    """What the constraint measures. `samples`: G(s) from prior draws against the logged action (Figure 1's
    quantity). Its minimiser is the mean of the logged actions at s, so on data mixing several policies, where
    epsilon is out of reach, alpha climbs to its clamp and pulls every proposal to that one averaged action (the
    critic then picks among near-copies). `reconstruction`: eq. 11's d(a_hat, a), the residual's correction of
    the VAE's reconstruction of (s, a) against a, which each mode of the data can meet, so G is held near the
    data without being averaged."""
    dual_in_warmup: bool = False
    """Update alpha during the warm start too. Off: with no Q term the constraint is slack or unreachable by
    construction, and alpha would drift to a bound it must then climb back from when Q-maximisation starts."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.improve_on not in ("behaviour", "all"):
            raise AqlError(f"AQLConfig.improve_on must be behaviour or all, got {self.improve_on!r}")
        if self.constrain not in ("samples", "reconstruction"):
            raise AqlError(f"AQLConfig.constrain must be samples or reconstruction, got {self.constrain!r}")
        if self.constrain == "reconstruction" and self.epsilon_at_least_vae:
            raise AqlError("AQLConfig.epsilon_at_least_vae floors the threshold at the VAE's sample error, which "
                           "constrain=reconstruction does not measure: use one or the other")


class ResidualGenerator(nn.Module):
    """G(s): conditional VAE plus a residual network on (s, a_vae); output tanh(pre_tanh(a_vae) + r(s, a_vae))."""

    def __init__(self, obs_dim: int, act_dim: int, vae_hidden: tuple[int, ...], residual_hidden: tuple[int, ...]):
        super().__init__()
        self.vae = ConditionalVAE(obs_dim, act_dim, vae_hidden)
        self.residual = mlp(obs_dim + act_dim, residual_hidden, act_dim)
        last = self.residual[-1]
        nn.init.zeros_(last.weight)  # start as the plain VAE: r(s, a) = 0
        nn.init.zeros_(last.bias)

    def correct(self, obs: torch.Tensor, vae_pre_tanh: torch.Tensor) -> torch.Tensor:
        """The residual correction of a VAE action given before its tanh."""
        residual = self.residual(torch.cat([obs, torch.tanh(vae_pre_tanh)], dim=-1))
        return torch.tanh(vae_pre_tanh + residual)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Sample G(s): decode clipped prior samples, then correct them."""
        return self.correct(obs, self.vae.decode_pre_tanh(obs))

    def reconstruct(self, obs: torch.Tensor, act: torch.Tensor, residual_only: bool = False
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(corrected reconstruction, VAE reconstruction, posterior mean, posterior std) of (s, a). With
        `residual_only` the corrected reconstruction's gradient reaches the residual network only."""
        mean, std = self.vae.encode(obs, act)
        pre_tanh = self.vae.decode_pre_tanh(obs, mean + std * torch.randn_like(std))
        return (self.correct(obs, pre_tanh.detach() if residual_only else pre_tanh), torch.tanh(pre_tanh), mean,
                std)

    def generative_terms(self, obs: torch.Tensor, act: torch.Tensor, kl_weight: float, residual_only: bool = False
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 11's two terms, d(a_hat, a) with d the mean squared error and L_VAE, apart (their sum is the
        generative loss); `residual_only` keeps the first out of the VAE."""
        corrected, recon, mean, std = self.reconstruct(obs, act, residual_only)
        return (F.mse_loss(corrected.float(), act),
                vae_loss(recon.float(), act, mean.float(), std.float(), kl_weight))


class AQLLearner(Learner):
    constraint = ("epsilon", +1)  # the Lagrange threshold on G's generative error
    name = "aql"
    config_class = AQLConfig
    config: AQLConfig

    def __init__(self, obs_dim: int, act_dim: int, config: AQLConfig | None = None, device: str = "cpu"):
        super().__init__(obs_dim, act_dim, config, device)
        cfg = self.config
        self.nets["generator"] = ResidualGenerator(obs_dim, act_dim, cfg.vae_hidden, cfg.residual_hidden
                                                   ).to(self.device)
        self.nets["critic"] = QEnsemble(obs_dim, act_dim, cfg.hidden, members=cfg.critics,
                                           layer_norm=cfg.critic_layer_norm).to(self.device)
        self.nets["generator_target"] = copy.deepcopy(self.nets["generator"]).requires_grad_(False)
        self.nets["critic_target"] = copy.deepcopy(self.nets["critic"]).requires_grad_(False)
        self.nets["alpha"] = Lagrange(cfg.initial_alpha).to(self.device)
        self.optimizers["generator"] = adam(self.nets["generator"], cfg.generator_learning_rate)
        self.optimizers["critic"] = adam(self.nets["critic"], cfg.critic_learning_rate)
        self.optimizers["alpha"] = adam(self.nets["alpha"], cfg.alpha_learning_rate)

    def _critic_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg, nets = self.config, self.nets
        obs, n = batch.observations, cfg.target_samples
        with torch.no_grad(), self.autocast():
            next_obs = batch.next_observations.unsqueeze(1).expand(-1, n, -1)  # [B, N, obs]
            next_q = nets["critic_target"](next_obs, nets["generator_target"](next_obs)).float()  # [K, B, N]
            target = bcq_target(next_q, batch.rewards, batch.terminals, cfg.gamma, cfg.lam, cfg.target_subset)
        if cfg.conservative_weight <= 0:
            with self.autocast():
                q = nets["critic"](obs, batch.actions).float()  # [K, B]
            loss = F.mse_loss(q, target.expand_as(q), reduction="none").mean(1).sum()
            return loss, {"q_mean": q.mean()}

        m, b = cfg.conservative_samples, obs.shape[0]
        with torch.no_grad(), self.autocast():
            uniform = torch.empty(b, m, self.act_dim, device=obs.device).uniform_(-1.0, 1.0)
            both = torch.cat([obs, batch.next_observations]).unsqueeze(1).expand(-1, m, -1)  # [2B, M, obs]
            proposals = nets["generator"](both).float()  # [2B, M, act]
        # Data action first, then 3M proposals, all in one critic pass: [B, 1 + 3M, act].
        actions = torch.cat([batch.actions.unsqueeze(1), uniform, proposals[:b], proposals[b:]], dim=1)
        with self.autocast():
            q_all = nets["critic"](obs.unsqueeze(1).expand(-1, 1 + 3 * m, -1), actions).float()  # [K, B, 1+3M]
        q = q_all[..., 0]
        gap = conservative_penalty(q_all[..., 1:], q)  # [K]
        loss = F.mse_loss(q, target.expand_as(q), reduction="none").mean(1).sum()
        loss = loss + cfg.conservative_weight * gap.sum()
        return loss, {"q_mean": q.mean(), "cql_gap": gap.mean()}

    def _update(self, batch: Batch) -> dict[str, torch.Tensor]:
        cfg, nets = self.config, self.nets
        obs, actions = batch.observations, batch.actions
        generator = nets["generator"]

        critic_loss, metrics = self._critic_loss(batch)
        step(self.optimizers["critic"], critic_loss, list(nets["critic"].parameters()))

        alpha = nets["alpha"].value()
        behaviour = behaviour_rows(batch)
        with self.autocast():
            improving = self.updates >= cfg.warmup_steps
            # Under alpha the residual's fit may weigh e^10: kept out of the VAE, which its own loss trains.
            under_alpha = cfg.residual_fit_under_alpha and improving
            # So is the constraint's, when it is measured on the residual's fit (alpha reaches e^10 too).
            residual_only = under_alpha or cfg.constrain == "reconstruction"
            residual_fit, vae_fit = generator.generative_terms(behaviour.observations, behaviour.actions,
                                                               cfg.vae_kl_weight, residual_only=residual_only)
            fit_loss = residual_fit + vae_fit
            with torch.no_grad():
                vae_pre_tanh = generator.vae.decode_pre_tanh(obs)  # the VAE's proposal, a fixed input to r
            proposed = generator.correct(obs, vae_pre_tanh).float()  # G(s), [B, act]
            gen_error = behaviour_mean((proposed - actions).pow(2).mean(-1), batch)  # Figure 1's, as gen_mse
            constrained = residual_fit if cfg.constrain == "reconstruction" else gen_error
            threshold = torch.full_like(constrained, cfg.epsilon)  # a device-side fill: no host copy per update
            if cfg.epsilon_at_least_vae:
                vae_error = behaviour_mean((torch.tanh(vae_pre_tanh).float() - actions).pow(2).mean(-1), batch)
                threshold = torch.maximum(threshold, vae_error.detach())
            loss = (alpha if under_alpha else 1.0) * residual_fit + vae_fit + alpha * constrained
            if improving:
                proposed_q = nets["critic"](obs, proposed).float().amin(0)
                def over_rows(values: torch.Tensor) -> torch.Tensor:
                    return behaviour_mean(values, batch) if cfg.improve_on == "behaviour" else values.mean()

                scale = over_rows(proposed_q.abs()).detach().clamp_min(1e-6) if cfg.normalize_q else 1.0
                loss = loss - over_rows(proposed_q) / scale
        step(self.optimizers["generator"], loss, list(generator.parameters()))
        if improving or cfg.dual_in_warmup:
            step(self.optimizers["alpha"], nets["alpha"].loss(constrained, threshold), [nets["alpha"].log_alpha])
            nets["alpha"].clamp_()

        soft_update(nets["critic_target"], nets["critic"], cfg.tau)
        soft_update(nets["generator_target"], generator, cfg.tau)
        return {"critic_loss": critic_loss, "generator_loss": loss, "generative_fit": fit_loss, "alpha": alpha,
                "gen_error": gen_error, "constrained_error": constrained, "gen_threshold": threshold,
                "saturation": (proposed.detach().abs() > 0.99).float().mean(), **metrics}

    def forward_policy(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        repeated = obs.unsqueeze(1).expand(-1, self.config.act_samples, -1)  # [B, N, obs]
        suffix = "_target" if self.config.act_with_targets else ""
        return best_of_samples(self.nets["critic" + suffix], obs, self.nets["generator" + suffix](repeated))
