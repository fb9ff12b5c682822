"""Streaming replay-log writer: append steps, flush at episode ends, finalise atomically."""

from __future__ import annotations

import datetime as _dt
import os
import socket
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import msgpack
import numpy as np
from numpy import ndarray
from gymnasium import spaces

from aql_agent import __version__
from aql_agent.errors import ReplayLogError, ReplayLogWarning
from aql_agent.replay import format as fmt
from aql_agent.spaces import SpaceCodec, array_header, space_to_spec

PARTIAL_SUFFIX = ".partial"
SpaceOrPerAgent = spaces.Space | Mapping[str, spaces.Space]


def _per_agent(value: Any, agents: list[str], name: str) -> dict[str, Any]:
    if isinstance(value, Mapping) and not isinstance(value, spaces.Space):
        missing = [a for a in agents if a not in value]
        if missing:
            raise ReplayLogError(f"{name} has no entry for agents {missing}")
        return {a: value[a] for a in agents}
    return {a: value for a in agents}


def plain(value: Any) -> Any:
    """`value` as msgpack-native data: numpy scalars become Python numbers, small arrays become lists."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    raise ReplayLogError(f"cannot store a {type(value).__name__} in a replay log (use numbers, strings, lists, dicts)")


class ReplayWriter:
    """Writes one replay log (format v1, see docs/replay-log.md).

    Records go to `PATH.partial` and the file is renamed to `PATH` by `close()`, so a finished name always
    holds a finished log. Buffered records are written as one checksummed chunk at every episode end (and
    whenever `chunk_bytes` have accumulated), so a crash loses at most the episode in progress.

    Single agent:  ``w.begin_episode(); w.add_step(obs, act, r, term, trunc); w.end_episode(final_obs)``.
    Several agents share one step clock: pass ``agent=`` to `add_step` and mappings to `end_episode`.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        env_id: str,
        observation_space: SpaceOrPerAgent,
        action_space: SpaceOrPerAgent,
        *,
        agents: Iterable[str] = ("agent",),
        players: Mapping[str, Any] | None = None,
        info_keys: Iterable[str] = (),
        recorder: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        compression: str = "none",
        compression_level: int = 3,
        chunk_bytes: int = 1 << 20,
        fsync: bool = False,
        overwrite: bool = False,
    ):
        self.path = os.fspath(path)
        self.agents = list(agents)
        if not self.agents or len(set(self.agents)) != len(self.agents):
            raise ReplayLogError(f"agents must be distinct ids, got {self.agents}")
        if compression not in fmt.CODECS:
            raise ReplayLogError(f"unknown compression {compression!r}; choose one of {sorted(fmt.CODECS)}")
        if os.path.exists(self.path) and not overwrite:
            raise ReplayLogError("log already exists (pass overwrite=True to replace it)", self.path)
        obs_spaces = _per_agent(observation_space, self.agents, "observation_space")
        act_spaces = _per_agent(action_space, self.agents, "action_space")
        player_of = self._players(players)
        self._obs_codecs = [SpaceCodec(obs_spaces[a], f"observation of {a!r}") for a in self.agents]
        self._act_codecs = [SpaceCodec(act_spaces[a], f"action of {a!r}") for a in self.agents]
        self._agent_index = {a: i for i, a in enumerate(self.agents)}
        self._single = len(self.agents) == 1
        self._step_encoders = [(*o.inline_check(), o.encode, *a.inline_check(), a.encode,
                                sum(leaf.nbytes for leaf in o.leaves + a.leaves) + 24)
                               for o, a in zip(self._obs_codecs, self._act_codecs)]
        self.info_keys = tuple(info_keys)
        self.header = {
            "format": fmt.FORMAT_NAME,
            "version": list(fmt.FORMAT_VERSION),
            "env_id": str(env_id),
            "agents": [
                {"id": a, "observation_space": space_to_spec(obs_spaces[a], f"observation space of {a!r}"),
                 "action_space": space_to_spec(act_spaces[a], f"action space of {a!r}"),
                 "player": player_of[a]}
                for a in self.agents
            ],
            "info_keys": list(self.info_keys),
            "recorder": plain({"library": "aql-agent", "version": __version__, "host": socket.gethostname(),
                               **(recorder or {})}),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "metadata": plain(dict(metadata or {})),
        }
        self._codec = fmt.CODECS[compression]
        self._compressor = None
        if self._codec == fmt.CODEC_ZSTD:
            import zstandard

            self._compressor = zstandard.ZstdCompressor(level=compression_level)
        self._chunk_bytes = chunk_bytes
        self._fsync = fsync
        self._packer = msgpack.Packer()
        self._records: list[tuple] = []
        self._append = self._records.append
        self._accounted = 0
        self._buffered = 0
        self._episode: int | None = None
        self._episodes = 0
        self._steps_before = 0  # steps of the episodes already ended
        self._returns = [0.0] * len(self.agents)
        self._lengths = [0] * len(self.agents)
        self._closed = False
        self._chunks_written = 0  # the next chunk's sequence number
        self._file = open(self.path + PARTIAL_SUFFIX, "wb")
        self._file.write(fmt.FILE_MAGIC)
        self._records.append((fmt.HEADER, self.header))
        self._flush_chunk()

    def _players(self, players: Mapping[str, Any] | None) -> dict[str, dict]:
        """Per-agent 'who played' maps; a single map is accepted for a single-agent log."""
        players = dict(players or {})
        if players and not set(players) <= set(self.agents):
            if len(self.agents) != 1:
                raise ReplayLogError(f"players must map agent ids {self.agents} to player descriptions")
            players = {self.agents[0]: players}
        return {a: plain(dict(players.get(a) or {"kind": "unknown"})) for a in self.agents}

    # -- episodes ----------------------------------------------------------------------------------------
    def begin_episode(self, seed: int | None = None, metadata: Mapping[str, Any] | None = None) -> int:
        """Open the next episode and return its index (0, 1, ...)."""
        self._check_open()
        if self._episode is not None:
            raise ReplayLogError(f"episode {self._episode} is still open: call end_episode() first", self.path)
        self._episode = self._episodes
        self._records.append((fmt.EPISODE_START, self._episode, None if seed is None else int(seed),
                              plain(dict(metadata or {}))))
        return self._episode

    def add_step(self, observation: Any, action: Any, reward: float, terminated: bool, truncated: bool,
                 info: Mapping[str, Any] | None = None, agent: str | None = None) -> None:
        """Record that `agent` saw `observation`, took `action` and got `reward` and the done flags back."""
        if self._episode is None:
            self._check_open()
            raise ReplayLogError("add_step() outside an episode: call begin_episode() first", self.path)
        if agent is None and self._single:
            index = 0
        elif agent in self._agent_index:
            index = self._agent_index[agent]
        else:
            raise ReplayLogError(f"unknown agent {agent!r}; this log's agents are {self.agents}", self.path)
        obs_shape, obs_dtype, encode_obs, act_shape, act_dtype, encode_act, step_bytes = self._step_encoders[index]
        # the common case inline (an ndarray of the exact shape and dtype): this is the recorder's hot loop
        if type(observation) is ndarray and observation.shape == obs_shape and observation.dtype is obs_dtype:
            obs_wire = observation.tobytes()
        else:
            obs_wire = encode_obs(observation)
        if type(action) is ndarray and action.shape == act_shape and action.dtype is act_dtype:
            act_wire = action.tobytes()
        else:
            act_wire = encode_act(action)
        reward = float(reward)
        self._append((fmt.STEP, index, obs_wire, act_wire, reward, bool(terminated), bool(truncated),
                      self._select_info(info) if self.info_keys and info else None))
        self._buffered += step_bytes
        if self._buffered >= self._chunk_bytes:
            self._flush_chunk()

    def _select_info(self, info: Mapping[str, Any]) -> dict | None:
        return {key: plain(info[key]) for key in self.info_keys if key in info} or None

    def end_episode(self, final_observation: Any = None, outcome: str | Mapping[str, str | None] | None = None,
                    metadata: Mapping[str, Any] | None = None) -> None:
        """Close the episode: the observation after each agent's last action, and its outcome.

        Without `final_observation` the last transition of each agent has no next observation and is left
        out of datasets built from this log (with a warning); pass it whenever the environment gave one.
        """
        self._check_open()
        if self._episode is None:
            raise ReplayLogError("end_episode() without begin_episode()", self.path)
        self._account()
        finals = {self.agents[0]: final_observation} if self._single else dict(final_observation or {})
        outcomes = ({self.agents[0]: outcome} if self._single and not isinstance(outcome, Mapping)
                    else dict(outcome or {}))
        unknown = (set(finals) | set(outcomes)) - set(self.agents)
        if unknown:
            raise ReplayLogError(f"end_episode() names unknown agents {sorted(unknown)}", self.path)
        summary = {}
        for i, agent in enumerate(self.agents):
            result = outcomes.get(agent)
            if result is not None and result not in fmt.OUTCOMES:
                raise ReplayLogError(f"outcome of {agent!r} must be one of {fmt.OUTCOMES} or None, got {result!r}")
            final = finals.get(agent)
            summary[agent] = {
                "return": self._returns[i], "length": self._lengths[i], "outcome": result,
                "final_observation": None if final is None else self._obs_codecs[i].encode(final),
            }
        self._close_episode(summary, plain(dict(metadata or {})))

    def copy_episode(self, start: tuple, steps: Iterable[tuple], end: tuple) -> None:
        """Append an episode as another log of the same agents, spaces and info keys holds it: its checked
        records (`ReplayReader.records()`), values copied as encoded, not decoded and encoded again. What joins
        the parts of a recording made in parallel, at the speed of copying bytes."""
        self.begin_episode(seed=start[2], metadata=start[3])
        sizes = [encoders[-1] for encoders in self._step_encoders]
        for step in steps:
            self._append(tuple(step))
            self._buffered += sizes[step[1]]
            if self._buffered >= self._chunk_bytes:
                self._flush_chunk()
        self._account()
        ended = end[2]
        summary = {agent: {**ended.get(agent, {}), "return": self._returns[i], "length": self._lengths[i]}
                   for i, agent in enumerate(self.agents)}
        for agent, entry in summary.items():
            entry.setdefault("outcome", None)
            entry.setdefault("final_observation", None)
        self._close_episode(summary, end[3])

    def _close_episode(self, summary: dict[str, dict], metadata: dict) -> None:
        self._records.append((fmt.EPISODE_END, self._episode, summary, metadata))
        self._episode = None
        self._episodes += 1
        self._steps_before += sum(self._lengths)
        self._returns = [0.0] * len(self.agents)
        self._lengths = [0] * len(self.agents)
        self._flush_chunk()

    # -- chunks and the file -----------------------------------------------------------------------------
    def _account(self) -> None:
        """Add steps buffered since the last call to each agent's return and length (off the per-step path)."""
        fresh = self._records[self._accounted:]
        self._accounted = len(self._records)
        if self._single:
            rewards = [r[4] for r in fresh if r[0] == fmt.STEP]
            self._returns[0] += sum(rewards)
            self._lengths[0] += len(rewards)
            return
        for record in fresh:
            if record[0] == fmt.STEP:
                self._returns[record[1]] += record[4]
                self._lengths[record[1]] += 1

    def _flush_chunk(self) -> None:
        if not self._records:
            return
        self._account()
        count = len(self._records)
        packed = self._packer.pack(self._records)
        raw = packed[len(array_header(count)):]  # the records back to back, without the list header
        stored = raw if self._compressor is None else self._compressor.compress(raw)
        self._file.write(fmt.pack_chunk_header(self._codec, count, stored, len(raw), self._chunks_written))
        self._chunks_written += 1
        self._file.write(stored)
        self._file.flush()
        if self._fsync:
            os.fsync(self._file.fileno())
        self._records = []
        self._append = self._records.append
        self._accounted = 0
        self._buffered = 0

    def flush(self) -> None:
        """Write buffered records now (they are written at every episode end anyway)."""
        self._check_open()
        self._flush_chunk()

    def close(self) -> None:
        """Write the end-of-log record and rename `PATH.partial` to `PATH`. An open episode is kept as is."""
        if self._closed:
            return
        if self._episode is not None:
            warnings.warn(ReplayLogWarning(f"{self.path}: closed with episode {self._episode} still open; "
                                           "its steps are kept but it has no end record"), stacklevel=2)
        finished = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        self._records.append((fmt.LOG_END, {"episodes": self._episodes, "steps": self.steps, "finished": finished}))
        self._flush_chunk()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.path + PARTIAL_SUFFIX, self.path)
        self._closed = True
        self._episode = None

    def abort(self) -> None:
        """Stop after an error: flush what was recorded and leave it at `PATH.partial` (still readable)."""
        if self._closed:
            return
        try:
            self._flush_chunk()  # may fail again (a full disk): the file is closed all the same
        finally:
            self._file.close()
            self._closed = True
            self._episode = None
        warnings.warn(ReplayLogWarning(f"recording interrupted: what was recorded is in {self.path}{PARTIAL_SUFFIX}"),
                      stacklevel=2)

    def _check_open(self) -> None:
        if self._closed:
            raise ReplayLogError("the writer is closed", self.path)

    @property
    def episode_open(self) -> bool:
        """Whether an episode was begun and not yet ended."""
        return self._episode is not None

    @property
    def episodes(self) -> int:
        return self._episodes

    @property
    def steps(self) -> int:
        self._account()
        return self._steps_before + sum(self._lengths)

    def __enter__(self) -> ReplayWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
