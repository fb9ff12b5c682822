"""Checkpoints and the policies loaded from them.

A checkpoint is a folder: `checkpoint.json` (format version, algorithm, shapes, learner config, data
preprocessing, step) and `model.pt` (state_dicts only, read back with `torch.load(weights_only=True)`).
Folders are written under a temporary name and renamed, so a checkpoint that exists is complete. A run
folder holds `checkpoints/step-NNNNNNNNN/` and `latest.json`, which names the newest one.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from aql_agent import __version__
from aql_agent.errors import AqlError, MissingFileError, require_number
from aql_agent.learners import Learner, make_learner

FORMAT = "aql-agent-checkpoint"
FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How raw observations, actions and rewards map to what the learner sees.

    Observations: (obs - obs_mean) / obs_std. Actions: the learner's [-1, 1] maps linearly onto
    [action_low, action_high] (empty for discrete actions, which pass unchanged). Rewards: multiplied by
    reward_scale (training only).
    """

    obs_mean: tuple[float, ...]
    obs_std: tuple[float, ...]
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]
    reward_scale: float = 1.0

    @classmethod
    def identity(cls, obs_dim: int, act_dim: int) -> Preprocessing:
        return cls((0.0,) * obs_dim, (1.0,) * obs_dim, (-1.0,) * act_dim, (1.0,) * act_dim)

    @functools.cached_property
    def _arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The tuples as float32 arrays, built once: a policy normalises every decision it makes."""
        return tuple(np.asarray(v, np.float32) for v in (self.obs_mean, self.obs_std, self.action_low,
                                                         self.action_high))

    def normalise_observations(self, obs: np.ndarray) -> np.ndarray:
        mean, std, _, _ = self._arrays
        return ((obs - mean) / std).astype(np.float32, copy=False)

    def actions_to_unit(self, actions: np.ndarray) -> np.ndarray:
        _, _, low, high = self._arrays
        return (2.0 * (actions - low) / (high - low) - 1.0).astype(np.float32, copy=False)

    def actions_from_unit(self, actions: np.ndarray) -> np.ndarray:
        _, _, low, high = self._arrays
        return (low + (np.clip(actions, -1.0, 1.0) + 1.0) * 0.5 * (high - low)).astype(np.float32, copy=False)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Preprocessing:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


class Policy:
    """A trained learner plus its preprocessing: raw observation in, environment action out."""

    def __init__(self, learner: Learner, preprocessing: Preprocessing, info: Mapping[str, Any] | None = None):
        self.learner, self.preprocessing, self.info = learner, preprocessing, dict(info or {})

    @property
    def obs_dim(self) -> int:
        return self.learner.obs_dim

    @property
    def act_dim(self) -> int:
        """Continuous: the action vector's length. Discrete: the number of actions."""
        return self.learner.act_dim

    @property
    def discrete(self) -> bool:
        return self.learner.discrete

    def __call__(self, obs: Any) -> np.ndarray:
        return self.act(obs)

    def act(self, obs: Any, deterministic: bool = True) -> np.ndarray:
        """Continuous: the action in the env's bounds. Discrete: the action index; `obs` may be a
        {"observation", "action_mask"} dict, and a masked-out action is never returned."""
        mask = None
        if isinstance(obs, Mapping) and self.learner.discrete:
            obs, mask = obs["observation"], obs.get("action_mask")
        array = np.asarray(obs, dtype=np.float32)
        if array.shape[-1:] != (self.learner.obs_dim,):
            raise AqlError(f"observation of shape {array.shape} does not fit this policy, which takes "
                           f"[..., {self.learner.obs_dim}]")
        normalised = self.preprocessing.normalise_observations(array)
        if self.learner.discrete:
            return self.learner.act(normalised, deterministic, action_mask=mask)
        return self.preprocessing.actions_from_unit(self.learner.act(normalised, deterministic))


def save_checkpoint(path: str | os.PathLike, learner: Learner, preprocessing: Preprocessing, step: int,
                    extra_state: Mapping[str, Any] | None = None, extra_info: Mapping[str, Any] | None = None
                    ) -> str:
    """Write a checkpoint folder atomically; `extra_state` (tensors only) holds the trainer's RNG states."""
    path = os.fspath(path)
    info = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "aql_agent_version": __version__,
        "algo": learner.algo, "obs_dim": learner.obs_dim, "act_dim": learner.act_dim, "step": step,
        "learner_config": learner.config.to_dict(), "preprocessing": preprocessing.to_dict(),
        **dict(extra_info or {}),
    }
    staging = path + ".tmp"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    torch.save({"learner": learner.state_dict(), "trainer": dict(extra_state or {})},
               os.path.join(staging, "model.pt"))
    with open(os.path.join(staging, "checkpoint.json"), "w") as f:
        json.dump(info, f, indent=2)
    if os.path.exists(path):
        shutil.rmtree(path)
    os.rename(staging, path)
    return path


def read_latest(run: str | os.PathLike) -> tuple[str, int] | None:
    """(checkpoint folder, step) that a run folder's latest.json names, or None without one; a hand-edited or
    damaged latest.json is one clear error."""
    run = os.fspath(run)
    path = os.path.join(run, "latest.json")
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            record = json.load(f)
        name, step = record["checkpoint"], record["step"]
        if not isinstance(name, str) or isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise TypeError(f"checkpoint {name!r}, step {step!r}")
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as error:
        raise AqlError(f"{path} is not a latest.json written by aql ({type(error).__name__}: {error}); restore it, "
                       "or point at a checkpoint folder inside the run") from None
    folder = os.path.normpath(os.path.join(run, name))
    if os.path.commonpath([os.path.abspath(folder), os.path.abspath(run)]) != os.path.abspath(run) \
            or not os.path.isdir(folder):
        raise AqlError(f"{path} names {name!r}, which is not a checkpoint folder in {run}")
    return folder, step


def resolve_checkpoint(path: str | os.PathLike) -> str:
    """A checkpoint folder, or a run folder whose `latest.json` names one."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MissingFileError(f"checkpoint not found: {path} (pass a run folder or a checkpoint folder)")
    if os.path.exists(os.path.join(path, "checkpoint.json")):
        return path
    latest = read_latest(path)
    if latest is not None:
        return latest[0]
    raise AqlError(f"{path} is neither a checkpoint (no checkpoint.json) nor a run folder (no latest.json)")


def _check_info(folder: str, info: Any) -> None:
    """checkpoint.json's fields of the right kinds and sizes: a hand-edited file is refused by name, and a
    preprocessing that would turn every observation into NaN (a zero std) never reaches a policy."""
    from aql_agent.learners import ALGORITHMS, is_discrete

    def refuse(what: str) -> None:
        raise AqlError(f"{folder}/checkpoint.json: {what}; it was edited or damaged (write it again with aql "
                       "train)")

    if not isinstance(info, dict):
        refuse("not a JSON object")
    if info.get("format") != FORMAT:
        raise AqlError(f"{folder} is not an aql-agent checkpoint")
    if not isinstance(info.get("format_version", 0), int):
        refuse("format_version is not a whole number")
    if info.get("format_version", 0) > FORMAT_VERSION:
        raise AqlError(f"{folder} has checkpoint format {info['format_version']}; this aql-agent reads up to "
                       f"{FORMAT_VERSION}: upgrade aql-agent")
    if not isinstance(info.get("algo"), str) or info["algo"] not in ALGORITHMS:
        refuse(f"algo {info.get('algo')!r} is not one of {list(ALGORITHMS)}")
    for key in ("obs_dim", "act_dim", "step"):
        value = info.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if key == "step" else 1):
            refuse(f"{key} is {value!r}")
    if not isinstance(info.get("learner_config"), dict):
        refuse("learner_config is not an object")
    pre = info.get("preprocessing")
    actions = 0 if is_discrete(info["algo"]) else info["act_dim"]
    sizes = {"obs_mean": info["obs_dim"], "obs_std": info["obs_dim"], "action_low": actions, "action_high": actions}
    if not isinstance(pre, dict) or set(pre) - {*sizes, "reward_scale"}:
        refuse("preprocessing is not {obs_mean, obs_std, action_low, action_high, reward_scale}")
    for key, size in sizes.items():
        values = pre.get(key)
        if not isinstance(values, list) or len(values) != size or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in values):
            refuse(f"preprocessing.{key} is not {size} finite numbers")
    if min(pre["obs_std"], default=1.0) <= 0:
        refuse("preprocessing.obs_std has a value <= 0 (observations would become NaN)")
    if any(low >= high for low, high in zip(pre["action_low"], pre["action_high"])):
        refuse("preprocessing.action_low is not below action_high everywhere")


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """(info from checkpoint.json, tensors from model.pt), validated; weights only, never a pickle."""
    folder = resolve_checkpoint(path)
    try:
        with open(os.path.join(folder, "checkpoint.json")) as f:
            info = json.load(f)
    except (OSError, ValueError, RecursionError) as error:
        raise AqlError(f"{folder}/checkpoint.json is unreadable: {error}") from None
    _check_info(folder, info)
    try:
        state = torch.load(os.path.join(folder, "model.pt"), map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or foreign files
        raise AqlError(f"{folder}/model.pt cannot be loaded as weights: {error}") from None
    if not (isinstance(state, dict) and isinstance(state.get("learner"), dict)
            and isinstance(state.get("trainer", {}), dict)):
        raise AqlError(f"{folder}/model.pt holds no learner state (it was replaced or damaged)")
    return info, state


def load_learner(path: str | os.PathLike, device: str = "cpu", expect_algo: str | None = None
                 ) -> tuple[Learner, dict[str, Any], dict[str, Any]]:
    """Rebuild the learner a checkpoint was written from: (learner, info, trainer state)."""
    info, state = read_checkpoint(path)
    if expect_algo is not None and info["algo"] != expect_algo:
        raise AqlError(f"checkpoint {path} was trained with {info['algo']!r}, not {expect_algo!r}")
    learner = make_learner(info["algo"], info["obs_dim"], info["act_dim"], info["learner_config"], device)
    try:
        learner.load_state_dict(state["learner"])
    except (KeyError, TypeError, AttributeError, ValueError, RuntimeError) as error:
        raise AqlError(f"{path}: model.pt does not fit its checkpoint.json ({type(error).__name__}: {error})") \
            from None
    return learner, info, state.get("trainer", {})


def load_policy(path: str | os.PathLike, device: str = "cpu") -> Policy:
    """The policy of a checkpoint or of a run folder's latest checkpoint."""
    learner, info, _ = load_learner(path, device)
    for net in learner.nets.values():
        net.eval()
    return Policy(learner, Preprocessing.from_dict(info["preprocessing"]), info)


def acting_as(policy: Policy, samples: int | None = None, targets: bool = False) -> Policy:
    """`policy` acting another way, nothing retrained: on the best of `samples` proposals (BCQ, BEAR, AQL) and/or,
    with `targets`, with its target networks, the Polyak averages training keeps (AQL; DQN, discrete BCQ and
    AQL: the target Q). Both are choices of acting only, so they can change after training. Returns the same
    policy, changed."""
    learner, changes = policy.learner, {}
    if samples is not None:
        require_number("--act-samples", samples, 1, whole=True)
        if not hasattr(learner.config, "act_samples"):
            raise AqlError(f"--act-samples: {learner.algo} does not act on sampled proposals; only bcq, bear and "
                           "aql checkpoints do")
        changes["act_samples"] = samples
    if targets:
        if not hasattr(learner.config, "act_with_targets"):
            raise AqlError(f"--act-with-targets: {learner.algo} has no option to act on its target networks; only "
                           "aql, dqn, bcq-discrete and aql-discrete checkpoints do")
        changes["act_with_targets"] = True
    learner.config = dataclasses.replace(learner.config, **changes)
    return policy


def policy_weights(policy: Policy) -> dict[str, Any]:
    """What rebuilds `policy` in another process: its checkpoint facts and network weights as numpy arrays
    (plain data, for Ray's object store; `policy_from_weights` is the other half)."""
    learner = policy.learner
    facts = {"algo": learner.algo, "obs_dim": learner.obs_dim, "act_dim": learner.act_dim,
             "learner_config": learner.config.to_dict()}  # also for a policy made from a live learner
    return {"info": {**policy.info, **facts}, "preprocessing": policy.preprocessing.to_dict(),
            "nets": {key: value.detach().cpu().numpy() for key, value in policy.learner.nets.state_dict().items()}}


def policy_from_weights(weights: Mapping[str, Any], device: str = "cpu") -> Policy:
    info = weights["info"]
    learner = make_learner(info["algo"], info["obs_dim"], info["act_dim"], info["learner_config"], device)
    learner.nets.load_state_dict({key: torch.from_numpy(np.array(value)) for key, value in weights["nets"].items()})
    for net in learner.nets.values():
        net.eval()
    return Policy(learner, Preprocessing.from_dict(weights["preprocessing"]), info)

