"""`TransitionDataset`: the contiguous arrays an offline learner trains on, and how they come from logs.

The rules offline-RL code most often gets wrong, and which this module tests:
- `next_observations[i]` at an episode's last step is the observation *after* that step (the log's final
  observation), never the first observation of the next episode;
- `terminals` (the environment ended: do not bootstrap) and `timeouts` (the episode was cut: bootstrap) are
  kept apart, verbatim from the source;
- a transition whose next observation is unknown is dropped with a warning, not invented.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from aql_agent.errors import DatasetError, MissingFileError, ReplayLogWarning
from aql_agent.replay.reader import AgentColumns, LogColumns, ReplayReader
from aql_agent.spaces import space_to_spec

#: Keys of a dict observation that a dataset splits into `observations` and `action_masks`.
OBSERVATION_KEY, ACTION_MASK_KEY = "observation", "action_mask"
ARRAY_FIELDS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts",
                "action_masks", "next_action_masks")


@dataclass
class TransitionDataset:
    """Transitions as contiguous arrays with D4RL's names, plus optional legal-action masks.

    `metadata` carries the environment id and the spaces (as replay-log space specs) when they are known, so
    that conversions back to a replay log keep them.
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray
    action_masks: np.ndarray | None = None
    next_action_masks: np.ndarray | None = None
    infos: dict[str, np.ndarray] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.rewards) if np.ndim(self.rewards) else -1
        for name in ARRAY_FIELDS:
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, np.ndarray):
                raise DatasetError(f"{name} must be a numpy array, got {type(value).__name__}")
            if value.ndim == 0 or len(value) != n:
                raise DatasetError(f"{name} has {len(value) if value.ndim else 0} rows, rewards has {n}: "
                                   "every array needs one row per transition")
        if self.rewards.ndim != 1:
            raise DatasetError(f"rewards must be 1-D, got shape {self.rewards.shape}")
        if self.observations.shape != self.next_observations.shape:
            raise DatasetError(f"observations {self.observations.shape} and next_observations "
                               f"{self.next_observations.shape} must have the same shape")
        if (self.action_masks is None) != (self.next_action_masks is None):
            raise DatasetError("action_masks and next_action_masks go together: give both or neither")
        self.terminals = _as_flags(self.terminals, "terminals")
        self.timeouts = _as_flags(self.timeouts, "timeouts")
        for key, value in self.infos.items():
            if len(value) != n:
                raise DatasetError(f"infos[{key!r}] has {len(value)} rows, expected {n}")

    def __len__(self) -> int:
        return len(self.rewards)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TransitionDataset):
            return NotImplemented
        return all(_same(getattr(self, f.name), getattr(other, f.name)) for f in fields(self) if f.name != "metadata")

    def digest(self) -> str:
        """sha256 of what `==` compares (every array and info, not metadata): the same for the same data in any
        format, unlike a file's hash (.npz members carry write times), so a result can name the data it came from."""
        digest = hashlib.sha256()
        arrays = [(name, getattr(self, name)) for name in ARRAY_FIELDS]
        arrays += [(f"infos/{key}", self.infos[key]) for key in sorted(self.infos)]
        for name, value in arrays:
            if value is None:
                continue
            value = np.ascontiguousarray(value)
            digest.update(f"{name}:{value.dtype.str}:{value.shape};".encode())
            digest.update(value.tobytes())
        return digest.hexdigest()

    def episode_ends(self) -> np.ndarray:
        """Where episodes end: terminal, timeout, a jump in observations (next_obs[i] != obs[i+1]), the end."""
        ends = self.terminals | self.timeouts
        if len(self) > 1:
            jumps = np.any((self.next_observations[:-1] != self.observations[1:]).reshape(len(self) - 1, -1), axis=1)
            ends[:-1] |= jumps
        if len(self):
            ends[-1] = True
        return ends

    def episode_slices(self) -> list[slice]:
        """One slice per episode, in order."""
        stops = np.flatnonzero(self.episode_ends()) + 1
        starts = np.concatenate([[0], stops[:-1]])
        return [slice(int(a), int(b)) for a, b in zip(starts, stops)]

    def episode_returns(self) -> np.ndarray:
        """The undiscounted return of every episode."""
        if not len(self):
            return np.zeros(0)
        stops = np.flatnonzero(self.episode_ends())
        cumulative = np.cumsum(self.rewards, dtype=np.float64)
        ends = cumulative[stops]
        return np.diff(np.concatenate([[0.0], ends]))

    def returns_to_go(self, gamma: float) -> np.ndarray:
        """Every row's discounted return from it to its episode's end, sum_t gamma^t r_t: the value of the
        behaviour that logged it (Cal-QL's reference). An episode cut short (a timeout, the data's end) counts
        only what was logged."""
        rewards, ends = self.rewards.astype(np.float64).tolist(), self.episode_ends().tolist()
        out, running = [0.0] * len(rewards), 0.0
        for i in range(len(rewards) - 1, -1, -1):
            running = rewards[i] + (0.0 if ends[i] else gamma * running)
            out[i] = running
        return np.asarray(out)

    def select(self, index: np.ndarray | slice) -> TransitionDataset:
        """The transitions at `index` (rows keep their order)."""
        pick = {name: None if getattr(self, name) is None else getattr(self, name)[index] for name in ARRAY_FIELDS}
        return TransitionDataset(**pick, infos={k: v[index] for k, v in self.infos.items()},
                                 metadata=dict(self.metadata))

    @classmethod
    def concatenate(cls, parts: Sequence[TransitionDataset]) -> TransitionDataset:
        """One dataset from several with the same shapes (for example one per log)."""
        if not parts:
            raise DatasetError("nothing to concatenate: no datasets given")
        first = parts[0]
        for part in parts[1:]:
            for name in ("observations", "actions"):
                a, b = getattr(first, name), getattr(part, name)
                if a.shape[1:] != b.shape[1:] or a.dtype != b.dtype:
                    raise DatasetError(f"cannot concatenate: {name} {a.shape[1:]} {a.dtype} vs {b.shape[1:]} {b.dtype}"
                                       f" ({first.metadata.get('source')} vs {part.metadata.get('source')})")
            if (part.action_masks is None) != (first.action_masks is None):
                raise DatasetError("cannot concatenate datasets with and without action masks")
        joined = {name: None if getattr(first, name) is None else np.concatenate([getattr(p, name) for p in parts])
                  for name in ARRAY_FIELDS}
        info_keys = set.intersection(*(set(p.infos) for p in parts))
        metadata = dict(first.metadata)
        metadata["source"] = [s for p in parts for s in _as_list(p.metadata.get("source"))]
        return cls(**joined, infos={k: np.concatenate([p.infos[k] for p in parts]) for k in sorted(info_keys)},
                   metadata=metadata)

    @classmethod
    def from_log(cls, path: str | os.PathLike | Iterable[str | os.PathLike], agent: str | None = None,
                 recover: bool = False) -> TransitionDataset:
        """Transitions of one agent (or `agent="all"`: every agent, concatenated) from replay logs.

        `path` may be a log, a directory of `*.aqlog` files, or a list of logs.
        """
        paths = log_paths(path)
        parts = []
        for log_path in paths:
            columns = ReplayReader(log_path, recover=recover).columns()
            agents = columns.header.agents
            if agent == "all":
                chosen = agents
            elif agent is None:
                if len(agents) != 1:
                    raise DatasetError(f"{log_path} holds agents {agents}: choose one with agent=... "
                                       "(--agent on the command line), or 'all'")
                chosen = agents
            elif agent in agents:
                chosen = [agent]
            else:
                raise DatasetError(f"{log_path} has no agent {agent!r}; its agents are {agents}")
            parts += [_transitions(columns, a, os.fspath(log_path)) for a in chosen]
        return parts[0] if len(parts) == 1 else cls.concatenate(parts)


def log_paths(path: str | os.PathLike | Iterable[str | os.PathLike]) -> list[str]:
    """The logs a path names: itself, the `*.aqlog` files of a directory (sorted), or each of a list."""
    if not isinstance(path, (str, os.PathLike)):
        return [p for item in path for p in log_paths(item)]
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MissingFileError(f"replay log not found: {path} (check the path)")
    if not os.path.isdir(path):
        return [path]
    names = sorted(os.listdir(path))
    logs = [os.path.join(path, n) for n in names if n.endswith(".aqlog")]
    unfinished = [n for n in names if n.endswith(".aqlog.partial")]
    if unfinished:
        warnings.warn(ReplayLogWarning(f"{path}: skipping unfinished logs {unfinished} (name them explicitly to "
                                       "read what they hold)"), stacklevel=3)
    if not logs:
        raise DatasetError(f"{path} holds no replay logs (*.aqlog)")
    return logs


def _transitions(columns: LogColumns, agent: str, source: str) -> TransitionDataset:
    """One agent's steps as transitions: next observation from the following step or the episode's end."""
    cols: AgentColumns = columns.agents[agent]
    header = columns.header
    episode = cols.episode
    n = len(cols)
    finals = {s.index: s.final_observations.get(agent) for s in columns.episodes}
    obs, masks = split_observation(cols.observations, source)
    last = np.ones(n, dtype=bool)
    last[:-1] = episode[1:] != episode[:-1]
    next_obs = next_rows(obs, last)
    next_masks = None if masks is None else next_rows(masks, last)
    keep = np.ones(n, dtype=bool)
    for i in np.flatnonzero(last):
        final = finals.get(int(episode[i]))
        if final is None:
            keep[i] = False
            continue
        final_obs, final_mask = split_observation(final, source)
        next_obs[i] = final_obs
        if next_masks is not None:
            next_masks[i] = final_mask
    dropped = int(n - keep.sum())
    if dropped:
        warnings.warn(ReplayLogWarning(
            f"{source}: {dropped} transition(s) of agent {agent!r} dropped: their episode has no final observation "
            "(the log ends inside the episode, or end_episode() was called without final_observation)"), stacklevel=4)
    metadata = {
        "env_id": header.env_id, "agent": agent, "source": [source], "players": header.players,
        "observation_space": space_to_spec(header.observation_spaces[agent]),
        "action_space": space_to_spec(header.action_spaces[agent]),
        "log_metadata": header.metadata,
    }
    actions = cols.actions
    if isinstance(actions, dict):
        raise DatasetError(f"{source}: dict action spaces cannot form a TransitionDataset; flatten the actions")
    dataset = TransitionDataset(
        observations=obs, actions=actions, rewards=cols.rewards, next_observations=next_obs,
        terminals=cols.terminated, timeouts=cols.truncated, action_masks=masks, next_action_masks=next_masks,
        infos=dict(cols.infos), metadata=metadata)
    _restore_dtypes(dataset, header.metadata)
    return dataset if not dropped else dataset.select(keep)


def next_rows(array: np.ndarray, episode_last: np.ndarray) -> np.ndarray:
    """Each row's successor inside its episode; a row that ends its episode keeps its own value (a filler
    for the caller to overwrite or to leave unused)."""
    result = array.copy()
    inner = ~episode_last[:-1]
    result[:-1][inner] = array[1:][inner]
    return result


def _restore_dtypes(dataset: TransitionDataset, log_metadata: Mapping) -> None:
    """Undo the widening a replay log applies to a converted dataset (rewards and info numbers are float64)."""
    stored = log_metadata.get("dataset")
    if not isinstance(stored, Mapping):
        return
    try:
        if isinstance(stored.get("reward_dtype"), str):
            dataset.rewards = dataset.rewards.astype(stored["reward_dtype"])
        for key, dtype in (stored.get("info_dtypes") or {}).items():
            if key in dataset.infos:
                dataset.infos[key] = dataset.infos[key].astype(dtype)
    except (TypeError, ValueError) as exc:
        warnings.warn(ReplayLogWarning(f"cannot restore dataset dtypes from the log metadata ({exc})"), stacklevel=4)


def split_observation(value: Any, source: str) -> tuple[np.ndarray, np.ndarray | None]:
    """A flat observation, or the {'observation', 'action_mask'} pair of a masked one."""
    if not isinstance(value, dict):
        return value, None
    if set(value) != {OBSERVATION_KEY, ACTION_MASK_KEY} or any(isinstance(v, dict) for v in value.values()):
        raise DatasetError(
            f"{source}: dict observations with keys {sorted(value)} cannot form a TransitionDataset; supported is "
            f"{{'{OBSERVATION_KEY}', '{ACTION_MASK_KEY}'}} (flatten others with gymnasium.wrappers.FlattenObservation "
            "before recording)")
    return value[OBSERVATION_KEY], value[ACTION_MASK_KEY]


def _as_flags(value: np.ndarray, name: str) -> np.ndarray:
    if value.ndim != 1:
        raise DatasetError(f"{name} must be 1-D, got shape {value.shape}")
    if value.dtype == bool:
        return value
    if not np.isin(value, (0, 1)).all():
        raise DatasetError(f"{name} must hold booleans (or 0/1), found other values")
    return value.astype(bool)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if a is None or b is None:
        return a is b
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]
