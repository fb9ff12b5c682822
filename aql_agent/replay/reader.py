"""Streaming replay-log reader: header, records, steps, episodes, and a fast path to column arrays.

Every problem with the bytes is a `ReplayLogError` naming the file and offset. A log that stops early
(a crash, a copy cut short) yields every complete record before the cut and a `ReplayLogWarning`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, NamedTuple

import msgpack
import numpy as np
from gymnasium import spaces

from aql_agent.errors import ReplayLogError, ReplayLogWarning, SpaceError, require_exists
from aql_agent.replay import format as fmt
from aql_agent.spaces import Leaf, SpaceCodec, Value, assemble_leaves, space_from_spec, value_violation


@dataclass(frozen=True)
class Header:
    """What a log says about itself: environment, agents and their spaces, who played, when."""

    env_id: str
    agents: list[str]
    observation_spaces: dict[str, spaces.Space]
    action_spaces: dict[str, spaces.Space]
    players: dict[str, dict]
    info_keys: list[str]
    recorder: dict
    created: str
    metadata: dict
    version: tuple[int, int]
    raw: dict = field(repr=False)


class Step(NamedTuple):
    """One agent's transition: it saw `observation`, took `action`, and got the rest back."""

    episode: int
    agent: str
    observation: Value
    action: Value
    reward: float
    terminated: bool
    truncated: bool
    info: dict | None


@dataclass
class AgentEpisode:
    """One agent's part of an episode, stacked into arrays."""

    observations: Value
    actions: Value
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    infos: list[dict | None]
    final_observation: Value | None
    outcome: str | None
    episode_return: float


@dataclass
class Episode:
    """An episode as it was recorded; `complete` is False when the log ends before its end record."""

    index: int
    seed: int | None
    metadata: dict
    agents: dict[str, AgentEpisode]
    complete: bool
    end_metadata: dict = field(default_factory=dict)


@dataclass
class EpisodeSummary:
    """An episode's start and end records, without its steps."""

    index: int
    seed: int | None
    metadata: dict
    complete: bool = False
    returns: dict[str, float] = field(default_factory=dict)
    lengths: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, str | None] = field(default_factory=dict)
    final_observations: dict[str, Value | None] = field(default_factory=dict)
    end_metadata: dict = field(default_factory=dict)


@dataclass
class AgentColumns:
    """All steps of one agent as contiguous arrays, in log order; `episode` maps each step to its episode."""

    episode: np.ndarray
    observations: Value
    actions: Value
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    infos: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.episode)


@dataclass
class LogColumns:
    """A whole log as arrays: the result of `ReplayReader.columns()`."""

    header: Header
    agents: dict[str, AgentColumns]
    episodes: list[EpisodeSummary]
    finalised: bool


@dataclass
class _Chunk:
    offset: int
    count: int
    raw: bytes
    verified: bool
    sequence: int
    after_skip: bool = False  # recovery skipped damaged bytes just before this chunk


def _header_from_record(record: Any, path: str) -> Header:
    def bad(message: str) -> ReplayLogError:
        return ReplayLogError(message, path, len(fmt.FILE_MAGIC))

    if not isinstance(record, (list, tuple)) or len(record) < 2 or record[0] != fmt.HEADER:
        raise bad("the first record is not a header record")
    head = record[1]
    if not isinstance(head, dict) or head.get("format") != fmt.FORMAT_NAME:
        raise bad(f"not an {fmt.FORMAT_NAME} log (the header's 'format' is missing or different)")
    version = head.get("version")
    if not (isinstance(version, list) and len(version) == 2 and all(isinstance(v, int) for v in version)):
        raise bad("the header's 'version' must be [major, minor]")
    if version[0] != fmt.FORMAT_VERSION[0]:
        raise bad(f"format version {version[0]}.{version[1]} is not readable by this aql-agent (it reads "
                  f"{fmt.FORMAT_VERSION[0]}.x): use a matching aql-agent release")
    agents = head.get("agents")
    if not isinstance(agents, list) or not agents:
        raise bad("the header's 'agents' must be a non-empty list")
    ids, obs, act, players = [], {}, {}, {}
    for entry in agents:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            raise bad("each header agent needs a string 'id'")
        agent = entry["id"]
        if agent in obs:
            raise bad(f"agent id {agent!r} appears twice in the header")
        try:
            obs[agent] = space_from_spec(entry.get("observation_space"), f"observation space of {agent!r}")
            act[agent] = space_from_spec(entry.get("action_space"), f"action space of {agent!r}")
        except SpaceError as exc:
            raise bad(str(exc)) from None
        ids.append(agent)
        players[agent] = entry.get("player") if isinstance(entry.get("player"), dict) else {}
    info_keys = head.get("info_keys", [])
    if not isinstance(info_keys, list) or not all(isinstance(k, str) for k in info_keys):
        raise bad("the header's 'info_keys' must be a list of strings")
    if not isinstance(head.get("env_id"), str):
        raise bad("the header's 'env_id' must be a string")

    def as_map(key: str) -> dict:
        value = head.get(key, {})
        return value if isinstance(value, dict) else {}

    return Header(env_id=head["env_id"], agents=ids, observation_spaces=obs, action_spaces=act, players=players,
                  info_keys=info_keys, recorder=as_map("recorder"), created=str(head.get("created", "")),
                  metadata=as_map("metadata"), version=(version[0], version[1]), raw=head)


class _StepTemplate:
    """The fixed byte layout of canonical step records of agents with one pair of spaces.

    A run of records that all match it is read as one (rows, record_length) uint8 array: no per-record
    unpacking. Every structure byte is checked, so a non-matching record simply ends the run.
    """

    def __init__(self, agent_ids: list[int], obs: SpaceCodec, act: SpaceCodec):
        self.allowed_agents = np.zeros(256, dtype=bool)
        self.allowed_agents[agent_ids] = True
        parts: list[bytes | tuple[str, Any]] = [bytes((0x98, fmt.STEP)), ("agent", None)]
        parts += [("obs", p) if isinstance(p, Leaf) else p for p in obs.layout()]
        parts += [("act", p) if isinstance(p, Leaf) else p for p in act.layout()]
        parts += [b"\xcb", ("reward", None), ("terminated", None), ("truncated", None), b"\xc0"]
        sizes = {"agent": 1, "reward": 8, "terminated": 1, "truncated": 1}
        struct_offsets: list[int] = []
        struct_values: list[int] = []
        self.slots: dict[str, list[tuple[int, Leaf]]] = {"obs": [], "act": []}
        self.offsets: dict[str, int] = {}
        offset = 0
        for part in parts:
            if isinstance(part, bytes):
                struct_offsets += range(offset, offset + len(part))
                struct_values += part
                offset += len(part)
            elif part[0] in self.slots:
                self.slots[part[0]].append((offset, part[1]))
                offset += part[1].nbytes
            else:
                self.offsets[part[0]] = offset
                offset += sizes[part[0]]
        self.length = offset
        self.struct_offsets = np.asarray(struct_offsets, dtype=np.intp)
        self.struct_values = np.asarray(struct_values, dtype=np.uint8)

    def matching_rows(self, rows: np.ndarray) -> int:
        """How many leading rows are canonical step records of this template."""
        ok = (rows[:, self.struct_offsets] == self.struct_values).all(axis=1)
        ok &= self.allowed_agents[rows[:, self.offsets["agent"]]]
        ok &= (rows[:, self.offsets["terminated"]] | 1) == 0xC3
        ok &= (rows[:, self.offsets["truncated"]] | 1) == 0xC3
        return len(ok) if ok.all() else int(np.argmin(ok))

    def extract(self, rows: np.ndarray) -> dict[str, Any]:
        def field(offset: int, nbytes: int, dtype: np.dtype, shape: tuple[int, ...] = ()) -> np.ndarray:
            return np.ascontiguousarray(rows[:, offset:offset + nbytes]).view(dtype).reshape(len(rows), *shape)

        result: dict[str, Any] = {
            "agent": rows[:, self.offsets["agent"]].astype(np.int64),
            "reward": field(self.offsets["reward"], 8, np.dtype(">f8")).astype(np.float64),
            "terminated": rows[:, self.offsets["terminated"]] == 0xC3,
            "truncated": rows[:, self.offsets["truncated"]] == 0xC3,
        }
        for name, slots in self.slots.items():
            result[name] = {leaf.key: field(off, leaf.nbytes, leaf.dtype, leaf.shape) for off, leaf in slots}
        return result


class _ColumnBuilder:
    """Collects one agent's steps, from fast-path blocks and from single decoded records."""

    def __init__(self, obs: SpaceCodec, act: SpaceCodec, info_keys: list[str]):
        self.obs, self.act, self.info_keys = obs, act, info_keys
        self.blocks: list[dict[str, Any]] = []
        self.pending: list[tuple] = []

    def add_block(self, episode: int, block: dict[str, Any], mask: np.ndarray | None) -> None:
        self._flush_pending()
        if mask is not None:
            block = {k: ({kk: vv[mask] for kk, vv in v.items()} if isinstance(v, dict) else v[mask])
                     for k, v in block.items()}
        n = len(block["reward"])
        if n:
            block["episode"] = np.full(n, episode, dtype=np.int64)
            block["info"] = [None] * n
            self.blocks.append(block)

    def add_record(self, episode: int, record: tuple) -> None:
        """Queue a step decoded record by record; `SpaceError` if its observation or action does not fit."""
        self.pending.append((episode, record, self.obs.split_leaves(record[2]), self.act.split_leaves(record[3])))

    def _flush_pending(self) -> None:
        if not self.pending:
            return
        records = [p[1] for p in self.pending]
        obs_leaves = [p[2] for p in self.pending]
        act_leaves = [p[3] for p in self.pending]

        def stack(codec: SpaceCodec, per_record: list[list[bytes]]) -> dict[str, np.ndarray]:
            return {leaf.key: np.frombuffer(b"".join(p[i] for p in per_record), leaf.dtype)
                    .reshape(len(per_record), *leaf.shape) for i, leaf in enumerate(codec.leaves)}

        self.blocks.append({
            "episode": np.asarray([p[0] for p in self.pending], dtype=np.int64),
            "obs": stack(self.obs, obs_leaves), "act": stack(self.act, act_leaves),
            "reward": np.asarray([r[4] for r in records], dtype=np.float64),
            "terminated": np.asarray([r[5] for r in records], dtype=bool),
            "truncated": np.asarray([r[6] for r in records], dtype=bool),
            "info": [r[7] for r in records],
        })
        self.pending = []

    def finish(self) -> AgentColumns:
        self._flush_pending()
        blocks = self.blocks

        def concat(name: str, codec: SpaceCodec) -> Value:
            cols = {leaf.key: (np.concatenate([b[name][leaf.key] for b in blocks]) if blocks
                               else np.zeros((0, *leaf.shape), leaf.dtype.newbyteorder("=")))
                    for leaf in codec.leaves}
            return assemble_leaves(codec.leaves, {k: v.astype(v.dtype.newbyteorder("="), copy=False)
                                                  for k, v in cols.items()})

        def flat(name: str, dtype: type) -> np.ndarray:
            return np.concatenate([b[name] for b in blocks]) if blocks else np.zeros(0, dtype)

        infos = [i for b in blocks for i in b["info"]]
        self.undeclared_info = {key for i in infos if i for key in i if key not in self.info_keys}
        info_columns = {}
        for key in self.info_keys:
            values = [None if i is None else i.get(key) for i in infos]
            if all(v is None for v in values):
                continue
            try:
                column = np.asarray(values)
                if column.dtype == object:
                    raise ValueError
            except ValueError:
                column = np.empty(len(values), dtype=object)
                column[:] = values
            info_columns[key] = column
        return AgentColumns(episode=flat("episode", np.int64), observations=concat("obs", self.obs),
                            actions=concat("act", self.act), rewards=flat("reward", np.float64),
                            terminated=flat("terminated", bool), truncated=flat("truncated", bool),
                            infos=info_columns)


class _RecordOrder:
    """The record order of docs/replay-log.md section 2, enforced the same way by every reading path, and the
    counts that catch damage above the chunk level (a chunk lost, duplicated or moved inside a log whose every
    chunk is sound): episode indices count up from 0 one by one, each agent's step records in an episode add up
    to its episode_end `length`, and log_end's totals match what was read. `damaged` raises, or warns when
    the reader recovers."""

    def __init__(self, path: str, agents: list[str], damaged: Callable[[str], None]):
        self.path, self.agents, self.damaged = path, agents, damaged
        self.episode: int | None = None
        self.finalised = False
        self.next_episode, self.episodes_ended, self.total_steps = 0, 0, 0
        self.lengths = [0] * len(agents)

    def count_steps(self, agent_ids: np.ndarray | list[int]) -> None:
        """Count step records read in bulk (the column reader's fast path) for their agents."""
        ids, counts = np.unique(np.asarray(agent_ids, dtype=np.int64), return_counts=True)
        for i, n in zip(ids.tolist(), counts.tolist()):
            if 0 <= i < len(self.lengths):
                self.lengths[i] += n
        self.total_steps += int(counts.sum())

    def accept(self, record: tuple) -> int | None:
        """Check that `record` may come next; return the episode it belongs to (None outside episodes)."""
        kind = record[0]
        if self.finalised:
            raise ReplayLogError("records after the end-of-log record", self.path)
        if kind == fmt.HEADER:
            raise ReplayLogError("a second header record", self.path)
        if kind == fmt.LOG_END:
            self.finalised = True
            self._check_totals(record[1])
        elif kind == fmt.EPISODE_START:
            if self.episode is not None:
                raise ReplayLogError(f"episode {record[1]} starts before episode {self.episode} ended", self.path)
            if record[1] != self.next_episode:
                self.damaged(f"episode {record[1]} starts where episode {self.next_episode} was due (episodes count "
                             "up from 0 one by one: a chunk was lost, duplicated or moved)")
            self.episode, self.next_episode = record[1], record[1] + 1
            self.lengths = [0] * len(self.agents)
        elif kind == fmt.STEP:
            if self.episode is None:
                raise ReplayLogError("a step record outside any episode", self.path)
            self.lengths[record[1]] += 1  # one record: no array work on the record-by-record path
            self.total_steps += 1
        else:
            if self.episode != record[1]:
                raise ReplayLogError(f"end record for episode {record[1]}, but the open episode is {self.episode}",
                                     self.path)
            self._check_lengths(record)
            self.episode = None
            self.episodes_ended += 1
            return record[1]
        return self.episode

    def _check_lengths(self, record: tuple) -> None:
        for i, agent in enumerate(self.agents):
            entry = record[2].get(agent) if isinstance(record[2], dict) else None
            length = entry.get("length") if isinstance(entry, dict) else None
            if isinstance(length, int) and not isinstance(length, bool) and length != self.lengths[i]:
                self.damaged(f"episode {record[1]}: {self.lengths[i]} step records of agent {agent!r}, its "
                             f"episode_end says {length} (a chunk was lost, duplicated or moved)")

    def _check_totals(self, summary: Any) -> None:
        if not isinstance(summary, dict):
            return
        for key, read in (("episodes", self.episodes_ended), ("steps", self.total_steps)):
            said = summary.get(key)
            if isinstance(said, int) and not isinstance(said, bool) and said != read:
                self.damaged(f"log_end counts {said} {key}, {read} were read (a chunk was lost or duplicated)")


_CUT = object()  # marks the end of the whole records in a chunk that was cut off


def _unpacker(size: int) -> msgpack.Unpacker:
    return msgpack.Unpacker(raw=False, max_buffer_size=max(size, 1))


class ReplayReader:
    """Reads a replay log lazily: `header` at once, then records, steps or episodes chunk by chunk.

    `recover=True` skips chunks that fail their checksum (with a warning naming what was lost) instead of
    raising: for salvaging a damaged log, never for normal reading.
    """

    def __init__(self, path: str | os.PathLike, recover: bool = False):
        self.path = os.fspath(path)
        self.recover = recover
        require_exists(self.path, "replay log")
        if os.path.isdir(self.path):
            raise ReplayLogError("is a directory, not a replay log", self.path)
        with open(self.path, "rb") as f:
            magic = f.read(len(fmt.FILE_MAGIC))
            if magic != fmt.FILE_MAGIC:
                raise ReplayLogError("not an aql replay log (wrong magic bytes at the start)", self.path, 0)
            first = next(self._chunks_from(f), None)
        if first is None:
            raise ReplayLogError("the log has no header (it was cut off right after the magic bytes)", self.path)
        records = self._unpack_all(first)
        if not records:
            raise ReplayLogError("the header record is cut off", self.path, first.offset)
        if first.count != 1:
            raise ReplayLogError(f"the first chunk holds {first.count} records; the header must be alone in it "
                                 "(docs/replay-log.md, section 1)", self.path, first.offset)
        self.header = _header_from_record(records[0], self.path)
        self._obs_codecs = [SpaceCodec(self.header.observation_spaces[a], f"observation of {a!r}")
                            for a in self.header.agents]
        self._act_codecs = [SpaceCodec(self.header.action_spaces[a], f"action of {a!r}")
                            for a in self.header.agents]
        self.finalised: bool | None = None  # known once the whole log has been read

    # -- chunks ------------------------------------------------------------------------------------------
    def _chunks_from(self, f: BinaryIO) -> Iterator[_Chunk]:
        offset = f.tell()
        skipped = False
        while True:
            head = f.read(fmt.CHUNK_HEADER_SIZE)
            if not head:
                return
            if len(head) < fmt.CHUNK_HEADER_SIZE:
                self._warn(f"the log is cut off inside a chunk header at byte {offset}; "
                           "every record before it was read")
                return
            magic, codec, sequence, count, stored_len, raw_len, payload_crc = fmt.CHUNK_HEADER.unpack(head[:-4])
            sequence = int.from_bytes(sequence, "little")
            header_ok = magic == fmt.CHUNK_MAGIC and fmt.crc32(head[:-4]) == int.from_bytes(head[-4:], "little")
            problem = None
            if not header_ok:
                problem = "corrupt chunk header (bad magic or checksum)"
            elif codec not in fmt.CODECS.values():
                problem = f"unknown chunk codec {codec}"
            elif raw_len > fmt.MAX_CHUNK_BYTES or stored_len > fmt.MAX_CHUNK_BYTES:
                problem = f"chunk claims {max(raw_len, stored_len)} bytes, over the {fmt.MAX_CHUNK_BYTES} limit"
            if problem is not None:
                offset, skipped = self._skip_or_raise(f, offset, problem), True
                if offset < 0:
                    return
                continue
            stored = f.read(stored_len)
            if len(stored) < stored_len:
                yield from self._salvage(offset, codec, count, stored, raw_len, sequence, skipped)
                return
            if fmt.crc32(stored) != payload_crc:
                offset, skipped = self._skip_or_raise(f, offset, f"chunk of {count} records fails its checksum"), True
                if offset < 0:
                    return
                continue
            raw = self._decompress(codec, stored, raw_len, offset)
            yield _Chunk(offset, count, raw, verified=True, sequence=sequence, after_skip=skipped)
            offset += fmt.CHUNK_HEADER_SIZE + stored_len
            skipped = False

    def _decompress(self, codec: int, stored: bytes, raw_len: int, offset: int) -> bytes:
        if codec == fmt.CODEC_NONE:
            raw = stored
        else:
            import zstandard

            try:  # one frame, or several back to back (a streaming compressor may flush more than one)
                with zstandard.ZstdDecompressor().stream_reader(stored, read_across_frames=True) as frames:
                    raw = frames.read(raw_len + 1)
            except zstandard.ZstdError as exc:
                raise ReplayLogError(f"chunk does not decompress ({exc})", self.path, offset) from None
        if len(raw) != raw_len:
            raise ReplayLogError(f"chunk holds {len(raw)} bytes, its header says {raw_len}", self.path, offset)
        return raw

    def _salvage(self, offset: int, codec: int, count: int, stored: bytes, raw_len: int, sequence: int,
                 after_skip: bool) -> Iterator[_Chunk]:
        """The log ends inside this chunk's payload: keep the records that are there in full."""
        raw = stored
        if codec == fmt.CODEC_ZSTD:
            import zstandard

            try:
                raw = zstandard.ZstdDecompressor().decompressobj().decompress(stored)
            except zstandard.ZstdError:
                raw = b""
        self._warn(f"the log is cut off inside the chunk at byte {offset} ({len(stored)} of its bytes are "
                   "there); the complete records in it are read without checksum verification")
        yield _Chunk(offset, count, raw[:raw_len], verified=False, sequence=sequence, after_skip=after_skip)

    def _skip_or_raise(self, f: BinaryIO, offset: int, problem: str) -> int:
        """In recover mode, find the next intact chunk header and return its offset (-1 at the end)."""
        if not self.recover:
            raise ReplayLogError(problem + " (the log is damaged here; ReplayReader(path, recover=True) "
                                 "skips damaged chunks)", self.path, offset)
        f.seek(offset + 1)
        data = f.read()
        start = 0
        while True:
            found = data.find(fmt.CHUNK_MAGIC, start)
            if found < 0 or found + fmt.CHUNK_HEADER_SIZE > len(data):
                self._warn(f"{problem} at byte {offset}; no intact chunk follows, the rest of the log is lost")
                return -1
            head = data[found:found + fmt.CHUNK_HEADER_SIZE]
            if fmt.crc32(head[:-4]) == int.from_bytes(head[-4:], "little"):
                new_offset = offset + 1 + found
                self._warn(f"{problem} at byte {offset}; skipped {new_offset - offset} bytes to the next intact chunk")
                f.seek(new_offset)
                return new_offset
            start = found + 1

    def _damaged(self, problem: str) -> None:
        """Damage found above the chunk level: an error, or with `recover=True` a warning."""
        if not self.recover:
            raise ReplayLogError(problem + " (recover=True reads what is there)", self.path)
        self._warn(problem)

    def _warn(self, message: str) -> None:
        warnings.warn(ReplayLogWarning(f"{self.path}: {message}"), stacklevel=4)

    def _chunks(self) -> Iterator[_Chunk]:
        """Every chunk, the header's first. Since version 1.1 their sequence numbers count up one by one, which
        catches a chunk lost, duplicated or moved anywhere (1.0 logs hold zeros there and are not checked)."""
        sequenced = self.header.version >= fmt.SEQUENCED_SINCE
        due = 0
        with open(self.path, "rb") as f:
            f.seek(len(fmt.FILE_MAGIC))
            for chunk in self._chunks_from(f):
                if sequenced and chunk.sequence != due and not chunk.after_skip:  # a skip was warned about already
                    self._damaged(f"the chunk at byte {chunk.offset} has sequence number {chunk.sequence} where "
                                  f"{due} was due (chunks were lost, duplicated or reordered)")
                due = (chunk.sequence + 1) % fmt.SEQUENCE_MODULUS
                yield chunk

    def _next_record(self, unpacker: msgpack.Unpacker, chunk: _Chunk, index: int) -> Any:
        """The chunk's next record, or `_CUT` where an unverified (cut) chunk runs out; errors otherwise."""
        try:
            return unpacker.unpack()
        except msgpack.OutOfData:
            problem = f"chunk holds fewer records than its header's {chunk.count}"
        except Exception as exc:  # any msgpack decoding failure of checksummed bytes: a writer bug
            problem = f"record {index} of the chunk is not valid msgpack ({exc})"
        if chunk.verified:
            raise ReplayLogError(problem, self.path, chunk.offset)
        return _CUT

    def _check_consumed(self, unpacker: msgpack.Unpacker, chunk: _Chunk) -> None:
        if chunk.verified and unpacker.tell() != len(chunk.raw):
            raise ReplayLogError("chunk has bytes after its last record", self.path, chunk.offset)

    def _unpack_all(self, chunk: _Chunk) -> list:
        unpacker = _unpacker(len(chunk.raw))
        unpacker.feed(chunk.raw)
        records = []
        for index in range(chunk.count):
            record = self._next_record(unpacker, chunk, index)
            if record is _CUT:
                return records
            records.append(record)
        self._check_consumed(unpacker, chunk)
        return records

    # -- records -----------------------------------------------------------------------------------------
    def _check(self, record: Any, chunk: _Chunk, index: int) -> tuple:
        if not isinstance(record, (list, tuple)) or not record or not isinstance(record[0], int) \
                or record[0] not in fmt.RECORD_LENGTHS:
            raise ReplayLogError(f"record {index} of the chunk is not a known record", self.path, chunk.offset)
        kind = record[0]
        if len(record) < fmt.RECORD_LENGTHS[kind]:
            raise ReplayLogError(f"{fmt.RECORD_NAMES[kind]} record {index} of the chunk has {len(record)} fields, "
                                 f"needs {fmt.RECORD_LENGTHS[kind]}", self.path, chunk.offset)
        if kind == fmt.STEP:
            agent, reward, terminated, truncated, info = record[1], record[4], record[5], record[6], record[7]
            if not (isinstance(agent, int) and 0 <= agent < len(self.header.agents)
                    and isinstance(reward, (int, float)) and not isinstance(reward, bool)
                    and isinstance(terminated, bool) and isinstance(truncated, bool)
                    and (info is None or isinstance(info, dict))):
                raise ReplayLogError(f"step record {index} of the chunk has fields of the wrong types",
                                     self.path, chunk.offset)
        elif kind in (fmt.EPISODE_START, fmt.EPISODE_END):
            if not isinstance(record[1], int) or not isinstance(record[3], dict):
                raise ReplayLogError(f"{fmt.RECORD_NAMES[kind]} record {index} has fields of the wrong types",
                                     self.path, chunk.offset)
            if kind == fmt.EPISODE_START and not (record[2] is None or isinstance(record[2], int)):
                raise ReplayLogError(f"episode_start record {index} has a non-integer seed", self.path, chunk.offset)
            if kind == fmt.EPISODE_END and not isinstance(record[2], dict):
                raise ReplayLogError(f"episode_end record {index} has no per-agent map", self.path, chunk.offset)
        return tuple(record)

    def _ordered_records(self) -> Iterator[tuple[tuple, int | None]]:
        """Every record after the header, checked, with the episode it belongs to."""
        order = _RecordOrder(self.path, self.header.agents, self._damaged)
        for n, chunk in enumerate(self._chunks()):
            records = self._unpack_all(chunk)
            for index, record in enumerate(records[1:] if n == 0 else records, start=1 if n == 0 else 0):
                record = self._check(record, chunk, index)
                yield record, order.accept(record)
        self._finish(order)

    def _finish(self, order: _RecordOrder) -> None:
        self.finalised = order.finalised
        if not self.finalised:
            self._warn("the log has no end-of-log record: its writer did not finish (crashed or still running); "
                       "every complete record was read")

    def records(self) -> Iterator[tuple]:
        """Every record after the header as a checked tuple (see docs/replay-log.md for the fields)."""
        for record, _ in self._ordered_records():
            yield record

    def _decode(self, codec: SpaceCodec, wire: Any, where: str) -> Value:
        try:
            value = codec.decode(wire)
        except SpaceError as exc:
            raise ReplayLogError(f"{where}: {exc}", self.path) from None
        problem = value_violation(codec.space, value)
        if problem:
            raise ReplayLogError(f"{where} {problem}", self.path)
        return value

    def _step(self, record: tuple, episode: int) -> Step:
        index = record[1]
        return Step(episode=episode, agent=self.header.agents[index],
                    observation=self._decode(self._obs_codecs[index], record[2], "step observation"),
                    action=self._decode(self._act_codecs[index], record[3], "step action"),
                    reward=float(record[4]), terminated=record[5], truncated=record[6], info=record[7])

    def steps(self) -> Iterator[Step]:
        """Every step of every agent, in recorded order, decoded to arrays."""
        for record, episode in self._ordered_records():
            if record[0] == fmt.STEP:
                yield self._step(record, episode)

    def _summary_of_end(self, summary: EpisodeSummary, record: tuple) -> None:
        summary.complete = True
        summary.end_metadata = record[3]
        for i, agent in enumerate(self.header.agents):
            entry = record[2].get(agent)
            if not isinstance(entry, dict):
                entry = {}
            final = entry.get("final_observation")
            summary.final_observations[agent] = (None if final is None else
                                                 self._decode(self._obs_codecs[i], final, "final observation"))
            outcome = entry.get("outcome")
            summary.outcomes[agent] = outcome if outcome in fmt.OUTCOMES else None
            ret = entry.get("return")
            summary.returns[agent] = float(ret) if isinstance(ret, (int, float)) else float("nan")
            length = entry.get("length")
            summary.lengths[agent] = length if isinstance(length, int) else -1

    def episodes(self) -> Iterator[Episode]:
        """Episodes one at a time (memory holds one episode). The last may be incomplete."""
        agents = self.header.agents
        summary: EpisodeSummary | None = None
        steps: dict[str, list[Step]] = {}
        for step_or_record in self._with_steps():
            if isinstance(step_or_record, Step):
                steps[step_or_record.agent].append(step_or_record)
                continue
            record = step_or_record
            if record[0] == fmt.EPISODE_START:
                summary = EpisodeSummary(index=record[1], seed=record[2], metadata=record[3])
                steps = {a: [] for a in agents}
            elif record[0] == fmt.EPISODE_END:
                self._summary_of_end(summary, record)
                yield self._episode(summary, steps)
                summary = None
        if summary is not None:
            yield self._episode(summary, steps)

    def _with_steps(self) -> Iterator[Step | tuple]:
        for record, episode in self._ordered_records():
            yield self._step(record, episode) if record[0] == fmt.STEP else record

    def _episode(self, summary: EpisodeSummary, steps: dict[str, list[Step]]) -> Episode:
        parts = {}
        for i, agent in enumerate(self.header.agents):
            agent_steps = steps[agent]
            rewards = np.asarray([s.reward for s in agent_steps], dtype=np.float64)
            parts[agent] = AgentEpisode(
                observations=_stack([s.observation for s in agent_steps], self._obs_codecs[i]),
                actions=_stack([s.action for s in agent_steps], self._act_codecs[i]),
                rewards=rewards,
                terminated=np.asarray([s.terminated for s in agent_steps], dtype=bool),
                truncated=np.asarray([s.truncated for s in agent_steps], dtype=bool),
                infos=[s.info for s in agent_steps],
                final_observation=summary.final_observations.get(agent),
                outcome=summary.outcomes.get(agent),
                episode_return=float(rewards.sum()),
            )
        return Episode(index=summary.index, seed=summary.seed, metadata=summary.metadata, agents=parts,
                       complete=summary.complete, end_metadata=summary.end_metadata)

    # -- the fast path -----------------------------------------------------------------------------------
    def _templates(self) -> dict[int, _StepTemplate]:
        """One template per distinct (observation, action) space pair, shared by the agents that have it."""
        groups: dict[tuple, list[int]] = {}
        for i, agent in enumerate(self.header.agents):
            key = (repr(self.header.raw["agents"][i]["observation_space"]),
                   repr(self.header.raw["agents"][i]["action_space"]))
            groups.setdefault(key, []).append(i)
        templates = {}
        if len(self.header.agents) <= 0x7F:
            for ids in groups.values():
                template = _StepTemplate(ids, self._obs_codecs[ids[0]], self._act_codecs[ids[0]])
                templates.update({i: template for i in ids})
        return templates

    def columns(self) -> LogColumns:
        """The whole log as per-agent arrays, fast: runs of canonical step records are read as numpy views."""
        agents = self.header.agents
        templates = self._templates()
        builders = [_ColumnBuilder(self._obs_codecs[i], self._act_codecs[i], self.header.info_keys)
                    for i in range(len(agents))]
        episodes: list[EpisodeSummary] = []
        order = _RecordOrder(self.path, self.header.agents, self._damaged)
        for n, chunk in enumerate(self._chunks()):
            self._columns_of_chunk(chunk, n == 0, templates, builders, episodes, order)
        self._finish(order)
        columns = {a: b.finish() for a, b in zip(agents, builders)}
        for i, (agent, data) in enumerate(columns.items()):
            for what, space, values in (("observations", self.header.observation_spaces[agent], data.observations),
                                        ("actions", self.header.action_spaces[agent], data.actions)):
                problem = value_violation(space, values)
                if problem:
                    raise ReplayLogError(f"agent {agent!r}'s step {what} {problem}", self.path)
        undeclared = sorted({key for b in builders for key in b.undeclared_info})
        if undeclared:
            self._warn(f"step info keys {undeclared} are not in the header's info_keys: they were not read")
        return LogColumns(header=self.header, agents=columns, episodes=episodes, finalised=self.finalised)

    def _columns_of_chunk(self, chunk: _Chunk, first: bool, templates: dict[int, _StepTemplate],
                          builders: list[_ColumnBuilder], episodes: list[EpisodeSummary], order: _RecordOrder) -> None:
        raw = chunk.raw
        view = np.frombuffer(raw, dtype=np.uint8)
        unpacker = _unpacker(len(raw))
        unpacker.feed(raw)
        index = 0
        if first:
            unpacker.skip()  # the header, already read
            index = 1
        while index < chunk.count:
            pos = unpacker.tell()
            template = None
            if len(raw) - pos > 3 and raw[pos] == 0x98 and raw[pos + 1] == fmt.STEP:
                template = templates.get(raw[pos + 2])
                # a step with info (a map where the template has nil) is never canonical: skip the fast attempt
                if template is not None and raw[min(pos + template.length, len(raw)) - 1] != 0xC0:
                    template = None
            if template is not None and order.episode is not None and not order.finalised:
                rows_left = min(chunk.count - index, (len(raw) - pos) // template.length)
                taken = self._fast_run(view, pos, rows_left, template, builders, order)
                if taken:
                    index += taken
                    unpacker.read_bytes(taken * template.length)
                    continue
            record = self._next_record(unpacker, chunk, index)
            if record is _CUT:
                return
            self._column_record(self._check(record, chunk, index), builders, episodes, order)
            index += 1
        self._check_consumed(unpacker, chunk)

    def _fast_run(self, view: np.ndarray, pos: int, rows_left: int, template: _StepTemplate,
                  builders: list[_ColumnBuilder], order: _RecordOrder) -> int:
        """Read the run of canonical step records at `pos` (checked in growing windows); return its length."""
        taken, window = 0, 1024
        while taken < rows_left:
            count = min(window, rows_left - taken)
            start = pos + taken * template.length
            rows = view[start:start + count * template.length].reshape(count, template.length)
            good = template.matching_rows(rows)
            if good:
                block = template.extract(rows[:good])
                agent_col = block.pop("agent")
                order.count_steps(agent_col)
                for i in map(int, np.unique(agent_col)):
                    mask = None if len(builders) == 1 else agent_col == i
                    builders[i].add_block(order.episode, dict(block), mask)
                taken += good
            if good < count:
                break
            window *= 4
        return taken

    def _column_record(self, record: tuple, builders: list[_ColumnBuilder], episodes: list[EpisodeSummary],
                       order: _RecordOrder) -> None:
        episode = order.accept(record)
        kind = record[0]
        if kind == fmt.EPISODE_START:
            episodes.append(EpisodeSummary(index=record[1], seed=record[2], metadata=record[3]))
        elif kind == fmt.STEP:
            try:
                builders[record[1]].add_record(episode, record)
            except SpaceError as exc:
                raise ReplayLogError(f"step record: {exc}", self.path) from None
        elif kind == fmt.EPISODE_END:
            self._summary_of_end(episodes[-1], record)


def _stack(values: list[Value], codec: SpaceCodec) -> Value:
    if codec.children is None:
        leaf = codec.leaves[0]
        return np.stack(values) if values else np.zeros((0, *leaf.shape), leaf.dtype.newbyteorder("="))
    return {key: _stack([v[key] for v in values], child) for key, child in codec.children.items()}


def read_header(path: str | os.PathLike) -> Header:
    """Just the header of a log (reads only the first chunk)."""
    return ReplayReader(path).header


def copy_episodes(source: str | os.PathLike, writer: Any) -> int:
    """Append every complete episode of the log at `source` to an open `ReplayWriter` of the same agents,
    spaces and info keys, records in their order, values as encoded (`ReplayWriter.copy_episode`; the writer
    numbers the episodes on); returns how many. What joins the logs that workers recorded in parallel."""
    reader = ReplayReader(source)
    _check_joinable(reader.header.raw, writer.header, reader.path)
    copied = 0
    buffered: list = []  # an episode's records, written once its end is read (an unfinished one is left out)
    for record in reader.records():
        if record[0] in (fmt.EPISODE_START, fmt.STEP):
            buffered.append(record)
        elif record[0] == fmt.EPISODE_END and buffered:
            writer.copy_episode(buffered[0], buffered[1:], record)
            buffered = []
            copied += 1
    return copied


def _check_joinable(header: dict, target: dict, path: str) -> None:
    """A log's records can be copied as encoded into a log of header `target`: same agents, spaces, info keys."""
    def spaces_of(raw: dict) -> list:
        return [(agent["id"], agent["observation_space"], agent["action_space"]) for agent in raw["agents"]]

    if spaces_of(header) != spaces_of(target):
        raise ReplayLogError(f"its agents and spaces ({[a['id'] for a in header['agents']]}) are not those of the "
                             f"log it joins ({[a['id'] for a in target['agents']]})", path)
    if list(header.get("info_keys", [])) != list(target.get("info_keys", [])):
        raise ReplayLogError(f"its info keys {header.get('info_keys', [])} are not those of the log it joins "
                             f"{target.get('info_keys', [])}", path)


def join_logs(sources: Sequence[str | os.PathLike], target: str | os.PathLike, *, compression: str = "none",
              overwrite: bool = False, recorder: Mapping[str, Any] | None = None) -> str:
    """One log at `target` holding the complete episodes of `sources`, in order, under the first one's header
    (its recorder entry updated with `recorder`): a recording split into parts, put back together."""
    from aql_agent.replay.writer import ReplayWriter

    first = ReplayReader(sources[0]).header
    for path in sources[1:]:  # refuse before the target is opened: nothing half-written is left behind
        _check_joinable(ReplayReader(path).header.raw, first.raw, os.fspath(path))
    with ReplayWriter(target, first.env_id, first.observation_spaces, first.action_spaces, agents=first.agents,
                      players=first.players, info_keys=first.info_keys, compression=compression,
                      overwrite=overwrite, recorder={**first.recorder, **(recorder or {})},
                      metadata=first.metadata) as writer:
        for path in sources:
            copy_episodes(path, writer)
    return os.fspath(target)
