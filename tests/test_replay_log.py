import os
import struct
import warnings

import msgpack
import numpy as np
import pytest
from conftest import ACT_SPACE, OBS_SPACE, write_single_agent_log

from aql_agent.errors import MissingFileError, ReplayLogError, ReplayLogWarning, SpaceError
from aql_agent.replay import ReplayReader, ReplayWriter
from aql_agent.replay import format as fmt


def _steps_equal(read_steps, recorded):
    assert len(read_steps) == len(recorded)
    for step, (episode, obs, act, reward, term, trunc, info) in zip(read_steps, recorded):
        assert step.episode == episode
        _assert_value_equal(step.observation, obs)
        _assert_value_equal(step.action, act)
        assert step.reward == reward and step.terminated == term and step.truncated == trunc
        assert step.info == info


def _assert_value_equal(a, b):
    if isinstance(b, dict):
        assert a.keys() == b.keys()
        for key in b:
            np.testing.assert_array_equal(a[key], b[key])
    else:
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_single_agent_round_trip_through_steps_episodes_and_columns(tmp_path, compression):
    rec = write_single_agent_log(str(tmp_path / "a.aqlog"), episodes=5, compression=compression, info=True)
    reader = ReplayReader(rec.path)
    header = reader.header
    assert header.env_id == "Toy-v0" and header.agents == ["agent"]
    assert header.observation_spaces["agent"] == OBS_SPACE and header.action_spaces["agent"] == ACT_SPACE
    assert header.players["agent"] == {"kind": "bot", "name": "toy", "level": "easy"}
    assert header.metadata == {"purpose": "test"} and header.info_keys == ["x", "flag"]
    _steps_equal(list(reader.steps()), rec.steps["agent"])
    assert reader.finalised

    episodes = list(reader.episodes())
    assert [e.index for e in episodes] == list(range(5)) and all(e.complete for e in episodes)
    assert [e.seed for e in episodes] == list(range(5))
    for e in episodes:
        part = e.agents["agent"]
        assert len(part.rewards) == rec.lengths[e.index]
        np.testing.assert_array_equal(part.final_observation, rec.finals[(e.index, "agent")])
        assert part.outcome == rec.outcomes[(e.index, "agent")]
        assert e.metadata == {"map": "lane"}

    columns = reader.columns()
    cols = columns.agents["agent"]
    recorded = rec.steps["agent"]
    np.testing.assert_array_equal(cols.observations, np.stack([r[1] for r in recorded]))
    np.testing.assert_array_equal(cols.actions, np.stack([r[2] for r in recorded]))
    np.testing.assert_array_equal(cols.rewards, [r[3] for r in recorded])
    np.testing.assert_array_equal(cols.terminated, [r[4] for r in recorded])
    np.testing.assert_array_equal(cols.truncated, [r[5] for r in recorded])
    np.testing.assert_array_equal(cols.episode, [r[0] for r in recorded])
    assert [None if v is None else v for v in cols.infos["x"]] == [
        None if r[6] is None else r[6]["x"] for r in recorded]
    returns = [s.returns["agent"] for s in columns.episodes]
    np.testing.assert_allclose(returns, [e.agents["agent"].episode_return for e in episodes])


def test_two_agents_with_masked_dict_observations_round_trip(moba_log):
    reader = ReplayReader(moba_log.path)
    assert reader.header.agents == ["blue", "red"]
    assert reader.header.players["red"] == {"kind": "bot", "name": "bt", "level": "hard"}
    steps = list(reader.steps())
    for agent in ("blue", "red"):
        _steps_equal([s for s in steps if s.agent == agent], moba_log.steps[agent])
        cols = reader.columns().agents[agent]
        recorded = moba_log.steps[agent]
        for key in ("action_mask", "observation"):
            np.testing.assert_array_equal(cols.observations[key], np.stack([r[1][key] for r in recorded]))
        np.testing.assert_array_equal(cols.actions, np.stack([r[2] for r in recorded]))
        assert cols.observations["action_mask"].dtype == np.int8
    summaries = reader.columns().episodes
    assert [s.outcomes for s in summaries] == [{"blue": "win", "red": "loss"}] * len(summaries)
    for summary, length in zip(summaries, moba_log.lengths):
        assert summary.lengths == {"blue": length, "red": length}
        assert summary.returns["red"] == sum(range(length))  # reward t at step t


def test_agents_with_different_spaces_each_get_their_own_columns(tmp_path):
    from gymnasium import spaces

    path = str(tmp_path / "mixed.aqlog")
    obs = {"hero": spaces.Box(-1, 1, (3,), np.float32), "tower": spaces.Box(-1, 1, (7,), np.float32)}
    act = {"hero": spaces.Discrete(4), "tower": spaces.Box(-1, 1, (1,), np.float32)}
    with ReplayWriter(path, "x", obs, act, agents=["hero", "tower"]) as w:
        w.begin_episode()
        for t in range(4):
            w.add_step(np.full(3, t, np.float32), t % 4, 1.0, False, False, agent="hero")
            w.add_step(np.full(7, -t, np.float32), np.array([0.5], np.float32), 2.0, False, t == 3, agent="tower")
        w.end_episode({"hero": np.zeros(3, np.float32), "tower": np.zeros(7, np.float32)})
    cols = ReplayReader(path).columns().agents
    np.testing.assert_array_equal(cols["hero"].actions, [0, 1, 2, 3])
    assert cols["tower"].observations.shape == (4, 7) and cols["tower"].truncated.tolist() == [False] * 3 + [True]


def test_fast_columns_equal_generic_decoding_for_a_foreign_non_canonical_writer(tmp_path):
    """A C# writer may pack rewards as float32 and short byte strings as bin16: the reader must not care."""
    path = str(tmp_path / "foreign.aqlog")
    write_single_agent_log(path, episodes=2, lengths=[3, 2])
    canonical = ReplayReader(path).columns().agents["agent"]
    reader = ReplayReader(path)
    records = [r for r in reader.records()]
    header = [fmt.HEADER, reader.header.raw]

    def bin16(data: bytes) -> bytes:
        return b"\xc5" + len(data).to_bytes(2, "big") + data

    def pack_record(record) -> bytes:
        if record[0] != fmt.STEP:
            return msgpack.packb(list(record))
        parts = [b"\x98", msgpack.packb(record[0]), msgpack.packb(record[1]), bin16(record[2]), bin16(record[3]),
                 b"\xca" + struct.pack(">f", record[4]), msgpack.packb(record[5]),
                 msgpack.packb(record[6]), msgpack.packb(record[7])]
        return b"".join(parts)

    with open(path, "wb") as f:
        f.write(fmt.FILE_MAGIC)
        for sequence, group in enumerate(([header], records)):
            raw = b"".join(pack_record(r) for r in group)
            f.write(fmt.pack_chunk_header(fmt.CODEC_NONE, len(group), raw, len(raw), sequence) + raw)
    foreign = ReplayReader(path).columns().agents["agent"]
    np.testing.assert_array_equal(foreign.observations, canonical.observations)
    np.testing.assert_allclose(foreign.rewards, canonical.rewards.astype(np.float32))
    np.testing.assert_array_equal(foreign.truncated, canonical.truncated)


def test_log_appears_atomically_at_close(tmp_path):
    path = str(tmp_path / "atomic.aqlog")
    writer = ReplayWriter(path, "Toy-v0", OBS_SPACE, ACT_SPACE)
    writer.begin_episode()
    writer.add_step(np.zeros(5, np.float32), np.zeros(2, np.float32), 0.0, True, False)
    writer.end_episode(np.zeros(5, np.float32))
    assert not os.path.exists(path) and os.path.exists(path + ".partial")
    with pytest.warns(ReplayLogWarning, match="no end-of-log record"):
        assert len(list(ReplayReader(path + ".partial").steps())) == 1  # flushed at the episode end
    writer.close()
    assert os.path.exists(path) and not os.path.exists(path + ".partial")


def test_an_error_while_recording_leaves_a_readable_partial_log(tmp_path):
    path = str(tmp_path / "crash.aqlog")
    with pytest.warns(ReplayLogWarning, match="recording interrupted"), pytest.raises(RuntimeError):
        with ReplayWriter(path, "Toy-v0", OBS_SPACE, ACT_SPACE) as w:
            w.begin_episode()
            for _ in range(3):
                w.add_step(np.ones(5, np.float32), np.zeros(2, np.float32), 1.0, False, False)
            raise RuntimeError("game crashed")
    assert not os.path.exists(path)
    with pytest.warns(ReplayLogWarning):
        episodes = list(ReplayReader(path + ".partial").episodes())
    assert len(episodes) == 1 and not episodes[0].complete and len(episodes[0].agents["agent"].rewards) == 3


def test_writer_rejects_misuse_with_clear_errors(tmp_path):
    path = str(tmp_path / "w.aqlog")
    with ReplayWriter(path, "Toy-v0", OBS_SPACE, ACT_SPACE) as w:
        with pytest.raises(ReplayLogError, match="outside an episode"):
            w.add_step(np.zeros(5, np.float32), np.zeros(2, np.float32), 0.0, False, False)
        w.begin_episode()
        with pytest.raises(SpaceError, match=r"observation of 'agent': expected shape \(5,\), got \(4,\)"):
            w.add_step(np.zeros(4, np.float32), np.zeros(2, np.float32), 0.0, False, False)
        with pytest.raises(ReplayLogError, match="unknown agent 'red'"):
            w.add_step(np.zeros(5, np.float32), np.zeros(2, np.float32), 0.0, False, False, agent="red")
        with pytest.raises(ReplayLogError, match="outcome of 'agent' must be one of"):
            w.end_episode(np.zeros(5, np.float32), outcome="victory")
        w.end_episode(np.zeros(5, np.float32))
    with pytest.raises(ReplayLogError, match="already exists"):
        ReplayWriter(path, "Toy-v0", OBS_SPACE, ACT_SPACE)
    open_episode = ReplayWriter(str(tmp_path / "open.aqlog"), "Toy-v0", OBS_SPACE, ACT_SPACE)
    open_episode.begin_episode()
    with pytest.warns(ReplayLogWarning, match="still open"):
        open_episode.close()
    with pytest.raises(ReplayLogError, match="the writer is closed"):
        open_episode.add_step(np.zeros(5, np.float32), np.zeros(2, np.float32), 0.0, False, False)
    with pytest.raises(ReplayLogError, match="unknown compression 'lz4'"):
        ReplayWriter(str(tmp_path / "b.aqlog"), "Toy-v0", OBS_SPACE, ACT_SPACE, compression="lz4")


def _record_ends(path: str) -> list[tuple[int, int]]:
    """(end offset, record type) of every record of an uncompressed log, from the format's own rules."""
    data = open(path, "rb").read()
    ends, offset = [], len(fmt.FILE_MAGIC)
    while offset < len(data):
        _, _, _, count, stored, _, _ = fmt.CHUNK_HEADER.unpack(data[offset:offset + fmt.CHUNK_HEADER.size])
        payload = offset + fmt.CHUNK_HEADER_SIZE
        unpacker = msgpack.Unpacker()
        unpacker.feed(data[payload:payload + stored])
        for _ in range(count):
            record = unpacker.unpack()
            ends.append((payload + unpacker.tell(), record[0]))
        offset = payload + stored
    return ends


def test_a_log_cut_at_any_byte_yields_every_complete_record_before_the_cut(tmp_path):
    rec = write_single_agent_log(str(tmp_path / "cut.aqlog"), episodes=3, lengths=[4, 3, 5])
    data = open(rec.path, "rb").read()
    ends = _record_ends(rec.path)
    header_end = ends[0][0]
    cut_path = str(tmp_path / "cut-copy.aqlog")
    for cut in range(len(data)):
        with open(cut_path, "wb") as f:
            f.write(data[:cut])
        if cut < header_end:
            with pytest.raises(ReplayLogError), warnings.catch_warnings():
                warnings.simplefilter("ignore", ReplayLogWarning)
                ReplayReader(cut_path)
            continue
        expected_steps = sum(1 for end, kind in ends if kind == fmt.STEP and end <= cut)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            reader = ReplayReader(cut_path)
            steps = list(reader.steps())
            columns = reader.columns()
        assert len(steps) == expected_steps, cut
        assert len(columns.agents["agent"]) == expected_steps, cut
        _steps_equal(steps, rec.steps["agent"][:expected_steps])
        assert any(issubclass(w.category, ReplayLogWarning) for w in caught), cut


def test_a_cut_compressed_log_keeps_its_complete_chunks(tmp_path):
    rec = write_single_agent_log(str(tmp_path / "z.aqlog"), episodes=4, compression="zstd", lengths=[5, 5, 5, 5])
    data = open(rec.path, "rb").read()
    cut = str(tmp_path / "z-cut.aqlog")
    with open(cut, "wb") as f:
        f.write(data[: len(data) - 60])  # inside the last episode's chunk or the end record
    with pytest.warns(ReplayLogWarning):
        steps = list(ReplayReader(cut).steps())
    assert len(steps) >= 15
    _steps_equal(steps, rec.steps["agent"][: len(steps)])


def test_a_flipped_byte_is_an_error_naming_file_and_chunk_offset(tmp_path, single_log):
    data = bytearray(open(single_log.path, "rb").read())
    chunk_offsets = []
    offset = len(fmt.FILE_MAGIC)
    while offset < len(data):
        chunk_offsets.append(offset)
        offset += fmt.CHUNK_HEADER_SIZE + fmt.CHUNK_HEADER.unpack(data[offset:offset + 24])[4]
    target = chunk_offsets[2] + fmt.CHUNK_HEADER_SIZE + 10
    data[target] ^= 0x40
    bad = str(tmp_path / "flipped.aqlog")
    open(bad, "wb").write(bytes(data))
    with pytest.raises(ReplayLogError, match=rf"flipped.aqlog at byte {chunk_offsets[2]}: .*fails its checksum"):
        list(ReplayReader(bad).steps())
    with pytest.raises(ReplayLogError):
        ReplayReader(bad).columns()
    with pytest.warns(ReplayLogWarning, match="skipped .* bytes to the next intact chunk"):
        columns = ReplayReader(bad, recover=True).columns()
    # the damaged chunk held episode 1 (after the header and episode 0): the others survive
    lost = single_log.lengths[1]
    assert len(columns.agents["agent"]) == len(single_log.steps["agent"]) - lost
    assert [e.index for e in columns.episodes] == [0, 2]


def test_headers_that_are_not_ours_or_too_new_are_refused(tmp_path):
    def log_with_header(name, header):
        path = str(tmp_path / name)
        raw = msgpack.packb([fmt.HEADER, header])
        with open(path, "wb") as f:
            f.write(fmt.FILE_MAGIC + fmt.pack_chunk_header(fmt.CODEC_NONE, 1, raw, len(raw), 0) + raw)
        return path

    good = ReplayReader(write_single_agent_log(str(tmp_path / "ok.aqlog")).path).header.raw
    with pytest.raises(ReplayLogError, match="format version 2.0 is not readable"):
        ReplayReader(log_with_header("v2.aqlog", {**good, "version": [2, 0]}))
    newer_minor = ReplayReader(log_with_header("v1_7.aqlog", {**good, "version": [1, 7]}))
    assert newer_minor.header.version == (1, 7)
    bad_dtype = {**good, "agents": [{**good["agents"][0], "observation_space": {
        "type": "box", "dtype": "complex128", "shape": [5], "low": 0, "high": 1}}]}
    with pytest.raises(ReplayLogError, match="unknown dtype 'complex128'"):
        ReplayReader(log_with_header("dtype.aqlog", bad_dtype))
    with pytest.raises(ReplayLogError, match="not an aql-replay log"):
        ReplayReader(log_with_header("other.aqlog", {"format": "something-else"}))


def test_missing_files_directories_and_foreign_files_get_one_clear_error(tmp_path):
    with pytest.raises(MissingFileError, match="replay log not found"):
        ReplayReader(tmp_path / "nope.aqlog")
    with pytest.raises(ReplayLogError, match="is a directory"):
        ReplayReader(tmp_path)
    text = tmp_path / "notes.aqlog"
    text.write_text("hello, this is not a log")
    with pytest.raises(ReplayLogError, match="wrong magic bytes"):
        ReplayReader(text)
    empty = tmp_path / "empty.aqlog"
    empty.write_bytes(fmt.FILE_MAGIC)
    with pytest.raises(ReplayLogError, match="no header"):
        ReplayReader(empty)


def test_big_episodes_span_several_chunks(tmp_path):
    rec = write_single_agent_log(str(tmp_path / "chunks.aqlog"), episodes=2, lengths=[300, 200], chunk_bytes=2048)
    data = open(rec.path, "rb").read()
    assert data.count(fmt.CHUNK_MAGIC) > 10
    reader = ReplayReader(rec.path)
    _steps_equal(list(reader.steps()), rec.steps["agent"])
    columns = reader.columns()
    assert len(columns.agents["agent"]) == 500
    for summary, (start, stop) in zip(columns.episodes, [(0, 300), (300, 500)]):
        assert summary.lengths["agent"] == stop - start
        assert summary.returns["agent"] == pytest.approx(sum(r[3] for r in rec.steps["agent"][start:stop]))


def test_dict_values_are_read_in_the_headers_key_order_not_sorted(tmp_path):
    from gymnasium import spaces

    from aql_agent.replay import ReplayReader, ReplayWriter

    unsorted = spaces.Dict([("observation", spaces.Box(0, 9, (3,), np.float32)),
                            ("action_mask", spaces.MultiBinary(2))])
    assert list(unsorted.spaces) == ["observation", "action_mask"]  # another writer's order
    path = tmp_path / "keys.aqlog"
    with ReplayWriter(path, "toy", unsorted, spaces.Discrete(2)) as writer:
        writer.begin_episode()
        writer.add_step({"observation": np.array([1, 2, 3], np.float32), "action_mask": np.array([0, 1], np.int8)},
                        1, 0.0, True, False)
        writer.end_episode()
    (step,) = list(ReplayReader(path).steps())
    np.testing.assert_array_equal(step.observation["observation"], [1, 2, 3])
    np.testing.assert_array_equal(step.observation["action_mask"], [0, 1])


@pytest.mark.parametrize("damage", ["drop", "duplicate", "duplicate-episode", "drop-episode", "swap"])
def test_chunks_lost_or_repeated_inside_a_sound_log_are_detected(tmp_path, damage):
    path = str(tmp_path / "log.aqlog")
    write_single_agent_log(path, lengths=[30, 30, 30, 30], chunk_bytes=400)
    data = open(path, "rb").read()
    chunks = fmt.split_chunks(data)
    assert len(chunks) > 8  # several chunks per episode
    reader = ReplayReader(path)

    def closes_an_episode(chunk: bytes) -> bool:  # the writer ends a chunk at every episode_end
        unpacker = msgpack.Unpacker(raw=False)
        unpacker.feed(chunk[fmt.CHUNK_HEADER_SIZE:])
        records = list(unpacker)
        return records[-1][0] == fmt.EPISODE_END

    starts = [1] + [i for i in range(2, len(chunks)) if closes_an_episode(chunks[i - 1])]
    middle = starts[1] + 1  # a steps-only chunk inside episode 1
    edited = {"drop": chunks[:middle] + chunks[middle + 1:],
              "duplicate": chunks[:middle + 1] + chunks[middle:],
              "duplicate-episode": chunks[:starts[2]] + chunks[starts[1]:starts[2]] + chunks[starts[2]:],
              "drop-episode": chunks[:starts[1]] + chunks[starts[2]:],
              "swap": chunks[:middle] + [chunks[middle + 1], chunks[middle]] + chunks[middle + 2:]}[damage]
    damaged = tmp_path / "damaged.aqlog"
    damaged.write_bytes(fmt.FILE_MAGIC + b"".join(edited))
    with pytest.raises(ReplayLogError, match="lost|duplicated|moved|reordered"):
        ReplayReader(str(damaged)).columns()
    with pytest.raises(ReplayLogError, match="lost|duplicated|moved|reordered"):
        list(ReplayReader(str(damaged)).episodes())
    with pytest.warns(ReplayLogWarning, match="lost|duplicated|moved|reordered"):
        ReplayReader(str(damaged), recover=True).columns()  # recovering reads on, and says what it saw
    assert len(ReplayReader(path).columns().agents["agent"]) == 120 and reader.header.agents == ["agent"]


def _as_version_1_0(data: bytes) -> bytes:
    """The same log as a 1.0 writer makes it: version [1, 0] and zeros where 1.1 keeps chunk sequence numbers."""
    out = [fmt.FILE_MAGIC]
    for n, chunk in enumerate(fmt.split_chunks(data)):
        magic, codec, _, count, stored, raw, _ = fmt.CHUNK_HEADER.unpack_from(chunk)
        payload = chunk[fmt.CHUNK_HEADER_SIZE:]
        if n == 0:
            tag, header = msgpack.unpackb(payload, raw=False)
            payload = msgpack.packb([tag, {**header, "version": [1, 0]}])
            stored = raw = len(payload)
        head = fmt.CHUNK_HEADER.pack(magic, codec, b"\0\0\0", count, stored, raw, fmt.crc32(payload))
        out.append(head + fmt.crc32(head).to_bytes(4, "little") + payload)
    return b"".join(out)


def test_version_1_0_logs_without_chunk_sequence_numbers_still_read(tmp_path):
    path = str(tmp_path / "new.aqlog")
    recorded = write_single_agent_log(path, lengths=[30, 30], chunk_bytes=400)
    assert ReplayReader(path).header.version == (1, 1)
    old = tmp_path / "old.aqlog"
    old.write_bytes(_as_version_1_0(open(path, "rb").read()))
    reader = ReplayReader(str(old))
    assert reader.header.version == (1, 0)
    _steps_equal(list(reader.steps()), recorded.steps["agent"])
    assert len(reader.columns().agents["agent"]) == 60


def test_values_the_spec_forbids_are_refused_and_undeclared_info_is_named(tmp_path, monkeypatch):
    from gymnasium import spaces

    bad_bool = np.array([1, 2, 0], np.uint8).view(bool)  # a bool byte of 2
    cases = {"bool": (spaces.Box(0, 1, (3,), bool), spaces.Discrete(3), bad_bool, 1, "bool byte"),
             "discrete": (spaces.Box(-1, 1, (3,), np.float32), spaces.Discrete(3), np.zeros(3, np.float32), 7,
                          "outside Discrete's 0..2")}
    for name, (obs_space, act_space, observation, action, message) in cases.items():
        path = tmp_path / f"{name}.aqlog"
        with ReplayWriter(path, "toy", obs_space, act_space) as writer:
            writer.begin_episode()
            writer.add_step(observation, action, 0.0, True, False)
            writer.end_episode()
        with pytest.raises(ReplayLogError, match=message):
            ReplayReader(path).columns()
        with pytest.raises(ReplayLogError, match=message):
            list(ReplayReader(path).steps())
    monkeypatch.setattr(ReplayWriter, "_select_info", lambda self, info: dict(info))  # a writer that does not filter
    path = tmp_path / "info.aqlog"
    with ReplayWriter(path, "toy", OBS_SPACE, ACT_SPACE, info_keys=("x",)) as writer:
        writer.begin_episode()
        writer.add_step(np.zeros(5, np.float32), np.zeros(2, np.float32), 0.0, True, False, {"x": 1, "secret": 2})
        writer.end_episode()
    with pytest.warns(ReplayLogWarning, match="\\['secret'\\] are not in the header's info_keys"):
        columns = ReplayReader(path).columns()
    assert list(columns.agents["agent"].infos) == ["x"]


def test_a_first_chunk_holding_more_than_the_header_is_refused(tmp_path):
    header = msgpack.packb([fmt.HEADER, {"format": "aql-replay", "version": [1, 0], "env_id": "toy", "agents": [
        {"id": "agent", "observation_space": {"type": "discrete", "n": 2}, "action_space": {"type": "discrete",
                                                                                          "n": 2}}]}])
    payload = header + msgpack.packb([fmt.EPISODE_START, 0, None, {}])
    path = tmp_path / "two.aqlog"
    path.write_bytes(fmt.FILE_MAGIC + fmt.pack_chunk_header(fmt.CODEC_NONE, 2, payload, len(payload), 0) + payload)
    with pytest.raises(ReplayLogError, match="the first chunk holds 2 records"):
        ReplayReader(path)


def test_a_zstd_chunk_of_several_frames_is_read(tmp_path):
    zstandard = pytest.importorskip("zstandard")
    header = msgpack.packb([fmt.HEADER, {"format": "aql-replay", "version": [1, 0], "env_id": "toy", "agents": [
        {"id": "agent", "observation_space": {"type": "discrete", "n": 2}, "action_space": {"type": "discrete",
                                                                                          "n": 2}}]}])
    records = [msgpack.packb(r) for r in ([fmt.EPISODE_START, 0, None, {}],
                                           [fmt.STEP, 0, (1).to_bytes(8, "little"), (0).to_bytes(8, "little"), 1.0,
                                            True, False, None],
                                           [fmt.EPISODE_END, 0, {"agent": {"length": 1}}, {}])]
    raw = b"".join(records)
    compress = zstandard.ZstdCompressor().compress
    stored = compress(records[0]) + compress(b"".join(records[1:]))  # two frames back to back
    chunks = [fmt.pack_chunk_header(fmt.CODEC_NONE, 1, header, len(header), 0) + header,
              fmt.pack_chunk_header(fmt.CODEC_ZSTD, 3, stored, len(raw), 1) + stored]
    path = tmp_path / "frames.aqlog"
    path.write_bytes(fmt.FILE_MAGIC + b"".join(chunks))
    (step,) = list(ReplayReader(path).steps())
    assert int(step.observation) == 1 and step.reward == 1.0 and step.terminated


def test_the_spec_s_worked_example_is_what_the_writer_writes(tmp_path):
    """docs/replay-log.md section 6: its second chunk, byte for byte (the header chunk holds the host name)."""
    import re

    from gymnasium import spaces

    doc = open(os.path.join(os.path.dirname(__file__), "..", "docs", "replay-log.md")).read()
    example = doc[doc.index("## 6. A worked example"):doc.index("## 7. Versioning")]
    block = example.split("```")[3]  # the second code block: the episode's chunk
    expected = bytearray()
    for line in block.strip().splitlines():
        if not re.match(r"\s*[0-9a-f]{2}\s", line):
            continue  # the annotation lines under the chunk header
        hex_part = re.split(r"\s{2,}(?=[\[\"a-z(])", line.strip(), maxsplit=1)[0]  # up to the annotation
        for token in re.findall(r'"[^"]*"|[0-9a-f]{2}(?=\s|$)', hex_part):
            expected += token.strip('"').encode() if token.startswith('"') else bytes.fromhex(token)
    path = str(tmp_path / "example.aqlog")
    with ReplayWriter(path, "Toy-v0", spaces.Box(-np.inf, np.inf, (2,), np.float32), spaces.Discrete(3)) as writer:
        writer.begin_episode(seed=7)
        writer.add_step(np.array([0.5, -0.25], np.float32), 2, 1.0, False, False)
        writer.end_episode(final_observation=np.array([0.75, 0.0], np.float32), outcome="win")
    second = fmt.split_chunks(open(path, "rb").read())[1]
    assert bytes(expected) == second


def test_joined_logs_hold_the_parts_episodes_exactly_and_parts_of_other_spaces_are_refused(tmp_path):
    from aql_agent.replay import join_logs

    first = write_single_agent_log(str(tmp_path / "a.aqlog"), episodes=3, seed=0, info=True)
    second = write_single_agent_log(str(tmp_path / "b.aqlog"), episodes=2, seed=7, info=True, lengths=[300, 4])
    cut = tmp_path / "cut.aqlog"  # a part whose writer died mid-episode: its complete episodes are joined
    data = open(second.path, "rb").read()
    cut.write_bytes(data[:len(data) - 200])
    with pytest.warns(ReplayLogWarning, match="cut off"):
        joined = join_logs([first.path, second.path, str(cut)], str(tmp_path / "joined.aqlog"), compression="zstd")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the joined log is whole
        episodes = list(ReplayReader(joined).episodes())
    expected = [e for path in (first.path, second.path) for e in ReplayReader(path).episodes()]
    with pytest.warns(ReplayLogWarning):
        expected += [e for e in ReplayReader(str(cut)).episodes() if e.complete]
    assert [e.index for e in episodes] == list(range(len(expected))) and len(expected) == 6
    for got, want in zip(episodes, expected, strict=True):
        assert (got.seed, got.metadata, got.complete) == (want.seed, want.metadata, want.complete)
        a, b = got.agents["agent"], want.agents["agent"]
        np.testing.assert_array_equal(a.observations, b.observations)
        np.testing.assert_array_equal(a.actions, b.actions)
        np.testing.assert_array_equal(a.rewards, b.rewards)
        np.testing.assert_array_equal(a.final_observation, b.final_observation)
        assert (a.infos, a.outcome, a.episode_return, list(a.terminated), list(a.truncated)) == (
            b.infos, b.outcome, b.episode_return, list(b.terminated), list(b.truncated))
    other = tmp_path / "other.aqlog"
    with ReplayWriter(str(other), "Toy-v0", OBS_SPACE, ACT_SPACE) as w:  # no info keys
        w.begin_episode()
        w.end_episode()
    with pytest.raises(ReplayLogError, match="info keys"):
        join_logs([first.path, str(other)], str(tmp_path / "refused.aqlog"))
    assert not list(tmp_path.glob("refused*"))  # refused before anything was written
