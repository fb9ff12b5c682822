"""The protocol every learner meets, and the plumbing they share.

A learner is built from (obs_dim, act_dim, config), takes `update(batch) -> dict of floats`, answers
`act(obs, deterministic)`, and round-trips through `state_dict()` / `load_state_dict()`. It never knows
which game it plays: observations are flat float vectors and continuous actions live in [-1, 1] (the
trainer scales from and to the environment's bounds). Discrete learners (`DiscreteLearner`, act_dim = the
number of actions) take integer actions and legal-action masks, and never choose a masked-out action.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from aql_agent.errors import AqlError
from aql_agent.nn import legal_or_all, masked_logits, random_allowed


class Batch(NamedTuple):
    """A minibatch of transitions as tensors; continuous actions already in [-1, 1]."""

    observations: torch.Tensor  # [B, obs_dim]
    actions: torch.Tensor  # [B, act_dim]
    rewards: torch.Tensor  # [B]
    next_observations: torch.Tensor  # [B, obs_dim]
    terminals: torch.Tensor  # [B], 1.0 where the episode truly ended (no bootstrap)
    action_masks: torch.Tensor | None = None  # [B, n] bool, discrete learners: legal actions at s
    next_action_masks: torch.Tensor | None = None  # [B, n] bool: legal actions at s'
    returns_to_go: torch.Tensor | None = None  # [B] discounted return from s to the episode's end (Cal-QL)
    offline: torch.Tensor | None = None  # [B] bool while fine-tuning: the rows from the logged data


def behaviour_rows(batch: Batch) -> Batch:
    """The rows a behaviour model and its constraint learn from: while fine-tuning, the logged data's only (on
    the agent's own play the constraint would hold it near itself, which is no constraint); otherwise all."""
    if batch.offline is None or not bool(batch.offline.any()):
        return batch
    keep = batch.offline
    return Batch(*(None if field is None else field[keep] for field in batch[:-1]))


def behaviour_mean(values: torch.Tensor, batch: Batch) -> torch.Tensor:
    """The mean of per-row `values` [B] over `behaviour_rows(batch)`."""
    if batch.offline is None or not bool(batch.offline.any()):
        return values.mean()
    return values[batch.offline].mean()


@dataclasses.dataclass(frozen=True)
class LearnerConfig:
    """Fields every learner has."""

    batch_size: int = 256
    """Transitions per update."""
    hidden: tuple[int, ...] = (256, 256)
    """Hidden layer sizes of the actor and critics (BEAR's D4RL variant and d3rlpy use 256-256)."""
    bf16: bool = False
    """Run forward passes under bfloat16 autocast (weights and optimiser state stay fp32)."""
    gen_window: int = 500
    """Batches averaged into the reported `gen_mse` (the paper's Figure 1 uses the last 500)."""

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> LearnerConfig:
        """Build from JSON-style values; unknown keys are an error that names the valid ones."""
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise AqlError(f"unknown {cls.__name__} field(s) {unknown}; valid fields: {sorted(names)}")
        converted = {}
        for key, value in values.items():
            default = getattr(cls, key, None)
            converted[key] = tuple(value) if isinstance(default, tuple) and isinstance(value, list) else value
            _check_value(cls.__name__, key, default, converted[key])
        return cls(**converted)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def _check_value(config: str, key: str, default: Any, value: Any) -> None:
    """A config value of the field's kind and in its range: sizes and counts whole and >= 1 (warm-ups >= 0),
    rates >= 0, gamma in [0, 1], tau in (0, 1], every number finite: a bad override is refused before
    training, not found later as NaN losses."""
    def refuse(what: str) -> None:
        raise AqlError(f"{config}.{key} must be {what}, got {value!r}")

    if isinstance(default, bool):
        if not isinstance(value, bool):
            refuse("true or false")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            refuse("a whole number")
        if value < (0 if key.endswith("warmup_steps") else 1):
            refuse("at least " + ("0" if key.endswith("warmup_steps") else "1"))
    elif isinstance(default, float) or (default is None and isinstance(value, (int, float))):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            refuse("a finite number")
        if "learning_rate" in key and value < 0:
            refuse("at least 0 (0 freezes the network)")
        if key == "gamma" and not 0 <= value <= 1:
            refuse("in [0, 1]")
        if key == "tau" and not 0 < value <= 1:
            refuse("in (0, 1]")
    elif isinstance(default, str):
        if not isinstance(value, str):
            refuse("a string")
    elif isinstance(default, tuple):
        least = 0 if key == "exploration_exclude" else 1  # action indices, or sizes
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= least for v in value):
            refuse(f"a list of whole numbers >= {least}")


@dataclasses.dataclass(frozen=True)
class CriticConfig(LearnerConfig):
    """Fields of every learner that bootstraps a critic."""

    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Polyak rate of the target networks."""
    critic_layer_norm: bool = False
    """LayerNorm before every hidden ReLU of the critics (RLPD's critic; an offline checkpoint trained with it
    is the one to fine-tune with a looser constraint: the norm bounds how far Q extrapolates off the data)."""


@dataclasses.dataclass(frozen=True)
class EnsembleConfig(CriticConfig):
    """Fields of the learners whose critic is an ensemble of K Q-networks (the shared QEnsemble)."""

    critics: int = 2
    """K, critics in the ensemble (the BCQ, BEAR and AQL papers: 2)."""
    target_subset: int | None = None
    """REDQ's and RLPD's random-subset targets: every update, each target takes the ensemble's minimum (BCQ,
    BEAR, AQL: its lambda-mix of minimum and maximum) over this many critics drawn at random, instead of over all
    K. With many critics (RLPD: 10, subset 2) the target is less pessimistic than the minimum of all, and the
    draw decorrelates the members. None: all K."""

    def __post_init__(self) -> None:
        subset = self.target_subset
        if subset is not None and (isinstance(subset, bool) or not isinstance(subset, int)
                                   or not 1 <= subset <= self.critics):
            raise AqlError(f"{type(self).__name__}.target_subset must be a whole number from 1 to critics "
                           f"({self.critics}), or null for all of them; got {subset!r}")


@dataclasses.dataclass(frozen=True)
class DiscreteCriticConfig(CriticConfig):
    """Fields of the discrete Q-learners (DQN, discrete BCQ, discrete AQL)."""

    critic_learning_rate: float = 3e-4
    """Adam step size of the Q network."""
    exploration: str = "epsilon"
    """How the policy explores when it acts non-deterministically (online play, fine-tuning): `epsilon` (a
    uniformly random legal action with chance `exploration_epsilon`, else the greedy one) or `boltzmann` (an
    action drawn from softmax(Q / (temperature * spread)) over the actions the greedy policy may choose, where
    spread is the standard deviation of those actions' Q values at the state: near-equal actions are tried
    often, clearly worse ones rarely, whatever the reward scale)."""
    exploration_epsilon: float = 0.05
    """epsilon exploration: chance of a random legal action."""
    exploration_temperature: float = 0.5
    """boltzmann exploration: temperature in units of the state's Q spread (0.5: an action one spread below the
    best is drawn e^2 = 7.4 times less often)."""
    exploration_exclude: tuple[int, ...] = ()
    """Actions exploration never draws at random (the greedy choice may still be one). Fine-tuning fills it from
    the game kind: moba-1v1's heal and recall, which cost a fight or a minute of lane when pressed at random."""
    act_with_targets: bool = False
    """Act with the target Q network (the Polyak average, over ~1/tau updates, the targets already keep) instead
    of the one just updated. A choice of acting only: training is the same either way (as AQL's option)."""
    conservative_weight: float = 0.0
    """Discrete CQL(H) (Kumar et al., 2020): adds `weight * (logsumexp_a Q(s, a) - Q(s, a_data))` over the legal
    actions to the critic loss, pulling down the values of actions the data rarely shows. Offline, a critic
    without it over-values rare actions more with every update (moba-1v1: Q(heal) above the logged action's in
    98% of states; see docs/results.md). 0 (the default) leaves the critic as DQN's / BCQ's."""
    calibrated: bool = False
    """Cal-QL (Nakamoto et al., 2023) for the penalty above: the values it pulls down are floored at the state's
    logged return-to-go, so it never pushes Q below what the data shows the behaviour earns (the batches carry
    the returns: `Learner.returns_discount`)."""

    def __post_init__(self) -> None:
        if self.exploration not in EXPLORATION_STYLES:
            raise AqlError(f"{type(self).__name__}.exploration must be one of {list(EXPLORATION_STYLES)}, "
                           f"got {self.exploration!r}")
        if not 0 <= self.exploration_epsilon <= 1:
            raise AqlError(f"{type(self).__name__}.exploration_epsilon must be in [0, 1], "
                           f"got {self.exploration_epsilon!r}")
        if not self.conservative_weight >= 0:
            raise AqlError(f"{type(self).__name__}.conservative_weight must be 0 or more, "
                           f"got {self.conservative_weight!r}")
        if self.calibrated and not self.conservative_weight > 0:
            raise AqlError(f"{type(self).__name__}.calibrated floors the conservative penalty, which is off: "
                           "set conservative_weight above 0 too")
        if not self.exploration_temperature > 0:
            raise AqlError(f"{type(self).__name__}.exploration_temperature must be above 0, "
                           f"got {self.exploration_temperature!r}")


EXPLORATION_STYLES = ("epsilon", "boltzmann")


class GenerativeError:
    """Running window of the per-batch generative-modelling error (mean squared error to dataset actions)."""

    def __init__(self, window: int):
        self.values = torch.zeros(window)
        self.count = 0

    def add(self, value: torch.Tensor) -> None:
        self.values[self.count % len(self.values)] = value.detach().float()
        self.count += 1

    def window(self) -> torch.Tensor:
        return self.values[: min(self.count, len(self.values))]


def adam(module: nn.Module | list[nn.Parameter], lr: float) -> torch.optim.Adam:
    """Adam with the fused CPU/GPU kernel: one op per step instead of one per parameter."""
    params = list(module.parameters()) if isinstance(module, nn.Module) else module
    return torch.optim.Adam(params, lr=lr, fused=True)


class Learner:
    """Base class: subclasses build `self.nets` and `self.optimizers` and implement `_update` and
    `forward_policy`."""

    name: ClassVar[str]
    config_class: ClassVar[type[LearnerConfig]]
    discrete: ClassVar[bool] = False
    #: the offline constraint fine-tuning may relax: (config field, +1 if a larger value is looser), or None
    constraint: ClassVar[tuple[str, int] | None] = None
    #: whether online reward can improve it (learners without a value function, like BC, cannot)
    fine_tunable: ClassVar[bool] = True
    #: the name `update` reports the windowed generative error under (its `gen_window` mean)
    gen_metric: ClassVar[str] = "gen_mse"

    def __init__(self, obs_dim: int, act_dim: int, config: LearnerConfig | None = None, device: str = "cpu"):
        config = config if config is not None else self.config_class()
        if not isinstance(config, self.config_class):
            raise AqlError(f"{type(self).__name__} takes a {self.config_class.__name__}, "
                           f"not a {type(config).__name__}")
        self.obs_dim, self.act_dim, self.config, self.device = obs_dim, act_dim, config, torch.device(device)
        self.algo = self.name  # the registry name; make_learner sets it for variants such as "aql-cql"
        self.nets = nn.ModuleDict()
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.updates = 0
        self.gen_error = GenerativeError(config.gen_window)

    # -- the protocol ---------------------------------------------------------------------------------
    def update(self, batch: Batch) -> dict[str, float]:
        """One gradient step on every network; returns the metrics of this step as floats."""
        metrics = self._update(batch)
        self.updates += 1
        if "gen_error" in metrics:
            self.gen_error.add(metrics.pop("gen_error"))
            metrics[self.gen_metric] = self.gen_error.window().mean()
        names = list(metrics)
        values = torch.stack([metrics[n].detach().float().reshape(()) for n in names]).tolist()
        return dict(zip(names, values))

    @torch.inference_mode()
    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Actions for one observation [obs_dim] or a batch [B, obs_dim]."""
        array = np.asarray(obs, dtype=np.float32)
        single = array.ndim == 1
        tensor = torch.as_tensor(array.reshape(-1, self.obs_dim), device=self.device)
        with self.autocast():
            action = self.forward_policy(tensor, deterministic)
        out = action.float().cpu().numpy()
        return out[0] if single else out

    def state_dict(self) -> dict[str, Any]:
        """Weights, optimiser states and counters: tensors and plain values only (safe for weights_only)."""
        return {
            "nets": self.nets.state_dict(),
            "optimizers": {k: opt.state_dict() for k, opt in self.optimizers.items()},
            "updates": self.updates,
            "gen_error": {"values": self.gen_error.values.clone(), "count": self.gen_error.count},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        try:
            self.nets.load_state_dict(state["nets"])
            missing = set(self.optimizers) ^ set(state["optimizers"])
            if missing:
                raise AqlError(f"optimiser states do not match: {sorted(missing)}")
            for key, opt in self.optimizers.items():
                # The step sizes are this learner's config's (fine-tuning may change them with --set): an
                # optimiser state carries the step sizes it was saved with, and loading it would put them back.
                step_sizes = [group["lr"] for group in opt.param_groups]
                # Deep copy: torch keeps same-device state tensors by reference, which would tie this
                # learner's Adam moments to those of the learner the state came from.
                opt.load_state_dict(copy.deepcopy(state["optimizers"][key]))
                for group, step_size in zip(opt.param_groups, step_sizes):
                    group["lr"] = step_size
        except (KeyError, RuntimeError, ValueError) as error:
            raise AqlError(f"this checkpoint does not fit a {self.name} learner with obs_dim={self.obs_dim}, "
                           f"act_dim={self.act_dim} and this config: {error}") from error
        self.updates = int(state["updates"])
        self.gen_error.values.copy_(state["gen_error"]["values"])
        self.gen_error.count = int(state["gen_error"]["count"])

    def constraint_field(self) -> tuple[str, int] | None:
        """The constraint of this learner as configured (a variant may constrain through another field)."""
        return self.constraint

    def returns_discount(self) -> float | None:
        """The discount of the return-to-go every batch must carry (`Batch.returns_to_go`; the samplers add the
        column), or None when this learner as configured reads none: only Cal-QL's floor (`calibrated`) does."""
        return self.config.gamma if getattr(self.config, "calibrated", False) else None

    def logged_returns(self, batch: Batch) -> torch.Tensor:
        """The batch's return-to-go, which a calibrated critic floors its penalty at; refused when it has none."""
        if batch.returns_to_go is None:
            raise AqlError(f"calibrated {self.name} needs batches with returns_to_go: sample them from a "
                           "TensorSampler given returns_discount=learner.returns_discount()")
        return batch.returns_to_go

    # -- helpers for subclasses -----------------------------------------------------------------------
    def autocast(self) -> contextlib.AbstractContextManager:
        if not self.config.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def _update(self, batch: Batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def forward_policy(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        """The policy on a batch of normalised observations [B, obs_dim] -> unit-box actions [B, act_dim]: what
        `act`, `checkpoint.Policy`, ONNX export and the bridge all run."""
        raise NotImplementedError


class DiscreteLearner(Learner):
    """A learner over `act_dim` discrete actions: integer actions, legal-action masks in targets, losses and
    action selection. `act(obs, action_mask=...)` returns action indices and never a masked-out one."""

    discrete = True
    gen_metric = "gen_ce"

    def __init__(self, obs_dim: int, act_dim: int, config: LearnerConfig | None = None, device: str = "cpu"):
        super().__init__(obs_dim, act_dim, config, device)
        self.check_actions(self.config)

    def check_actions(self, config: LearnerConfig) -> None:
        """Refuse a config whose exploration_exclude names actions this learner does not have."""
        outside = [a for a in getattr(config, "exploration_exclude", ()) if a >= self.act_dim]
        if outside:
            raise AqlError(f"{self.config_class.__name__}.exploration_exclude: actions {outside} do not exist; "
                           f"there are {self.act_dim} (0..{self.act_dim - 1})")

    @torch.inference_mode()
    def act(self, obs: np.ndarray, deterministic: bool = True, action_mask: np.ndarray | None = None
            ) -> np.ndarray:
        """Action indices for one observation [obs_dim] or a batch [B, obs_dim]; `action_mask` [.., n] is
        nonzero where an action is legal (all legal when omitted)."""
        array = np.asarray(obs, dtype=np.float32)
        single = array.ndim == 1
        tensor = torch.as_tensor(array.reshape(-1, self.obs_dim), device=self.device)
        if action_mask is None:
            mask = torch.ones(len(tensor), self.act_dim, dtype=torch.bool, device=self.device)
        else:
            mask_array = np.asarray(action_mask)
            if mask_array.shape[-1:] != (self.act_dim,) or mask_array.size != len(tensor) * self.act_dim:
                raise AqlError(f"action mask of shape {mask_array.shape} does not fit {len(tensor)} observation(s) "
                               f"and {self.act_dim} actions")
            legal = mask_array.reshape(-1, self.act_dim) != 0
            legal |= ~legal.any(-1, keepdims=True)  # legal_or_all in numpy: a fraction of torch's cost at batch 1
            mask = torch.from_numpy(legal).to(self.device)
        with self.autocast():
            action = self.forward_policy(tensor, deterministic, mask)
        out = action.cpu().numpy().astype(np.int64)
        return out[0] if single else out

    def masks(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(legal at s, legal at s') of a batch; all legal where the data has no masks. At s the dataset's own
        action always counts as legal (a logged action is what was played, whatever the mask said)."""
        if batch.action_masks is None:
            ones = torch.ones(len(batch.actions), self.act_dim, dtype=torch.bool, device=batch.actions.device)
            return ones, ones
        legal = batch.action_masks.clone()
        legal[torch.arange(len(legal), device=legal.device), batch.actions] = True
        return legal, legal_or_all(batch.next_action_masks)

    def explore(self, q: torch.Tensor, greedy: torch.Tensor, choosable: torch.Tensor, legal: torch.Tensor
                ) -> torch.Tensor:
        """The exploring action per row (config.exploration), given Q [B, n], the greedy action [B], the actions
        the greedy policy chooses among [B, n] (discrete BCQ's allowed set; the legal ones for DQN) and the legal
        ones. Never an illegal action; never one of `exploration_exclude` unless it is the greedy one."""
        cfg = self.config
        if cfg.exploration_exclude:
            excluded = torch.zeros(self.act_dim, dtype=torch.bool, device=legal.device)
            excluded[list(cfg.exploration_exclude)] = True
            legal, choosable = legal & ~excluded, choosable & ~excluded
        one_hot = F.one_hot(greedy, self.act_dim).bool()
        if cfg.exploration == "boltzmann":
            candidates = choosable | one_hot
            q = q.float().masked_fill(~candidates, float("nan"))
            mean = q.nanmean(-1, keepdim=True)
            spread = ((q - mean).pow(2).nansum(-1, keepdim=True) / candidates.sum(-1, keepdim=True)).sqrt()
            scores = (q - q.nan_to_num(-torch.inf).amax(-1, keepdim=True)) / (cfg.exploration_temperature
                                                                            * spread.clamp_min(1e-6))
            return torch.multinomial(torch.softmax(masked_logits(scores.nan_to_num(0.0), candidates), -1),
                                     1).squeeze(-1)
        explore = torch.rand(len(greedy), device=greedy.device) < cfg.exploration_epsilon
        return torch.where(explore, random_allowed(legal | (one_hot & ~legal.any(-1, keepdim=True))), greedy)

    def forward_policy(self, obs: torch.Tensor, deterministic: bool, mask: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """Action indices [B] for normalised observations [B, obs_dim] and legal-action masks [B, n]."""
        raise NotImplementedError


def imitation_metrics(logits: torch.Tensor, actions: torch.Tensor, legal: torch.Tensor) -> dict[str, torch.Tensor]:
    """The discrete generative error: G's cross-entropy on the dataset actions (reported as the `gen_window`
    mean `gen_ce`) and this batch's accuracy of G's masked argmax."""
    masked = masked_logits(logits.detach().float(), legal)
    return {"gen_error": F.cross_entropy(masked, actions),
            "gen_accuracy": (masked.argmax(-1) == actions).float().mean()}


def step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, params: list[nn.Parameter]) -> None:
    """Backward into `params` only (no weight gradients for networks the loss merely passes through)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward(inputs=params)
    optimizer.step()


def best_of_samples(critic: nn.Module, obs: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """argmax over N candidate actions [B, N, act] of the first critic's Q (BCQ's and BEAR's act rule)."""
    n = candidates.shape[1]
    q = critic(obs.unsqueeze(1).expand(-1, n, -1), candidates)[0]  # [B, N]
    index = q.argmax(-1)[:, None, None].expand(-1, 1, candidates.shape[-1])
    return candidates.gather(1, index).squeeze(1)  # gather, not arange(len(obs)): keeps the batch size symbolic
