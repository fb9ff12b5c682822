"""docs/replay-log.md as a contract: a reader and a writer written from the spec alone in another language
(tests/conformance/replay_log.mjs, Node.js, no shared code) must agree with aql_agent's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest
from conftest import write_moba_log, write_single_agent_log

from aql_agent.data import TransitionDataset
from aql_agent.replay import ReplayReader

NODE = shutil.which("node")
SCRIPT = os.path.join(os.path.dirname(__file__), "conformance", "replay_log.mjs")
pytestmark = pytest.mark.skipif(NODE is None, reason="Node.js is not installed: the second-language check needs it")


def node(command: str, path: str) -> dict:
    result = subprocess.run([NODE, SCRIPT, command, path], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("kind", ["single-agent box", "two agents, masked dict observations"])
def test_a_reader_written_from_the_spec_reads_our_logs_exactly(tmp_path, kind):
    path = str(tmp_path / "ours.aqlog")
    if kind == "single-agent box":
        write_single_agent_log(path, lengths=[5, 7, 4])
    else:
        write_moba_log(path)
    theirs = node("read", path)
    reader = ReplayReader(path)
    columns = reader.columns()
    assert theirs["env_id"] == reader.header.env_id and theirs["agents"] == reader.header.agents
    assert theirs["finalised"] and theirs["log_end"]["steps"] == sum(theirs["steps"].values())
    for agent, data in columns.agents.items():
        assert theirs["steps"][agent] == len(data)
        assert theirs["reward_sums"][agent] == pytest.approx(float(np.sum(data.rewards)))
        first = theirs["first_step"][agent]
        ours = data.observations
        if isinstance(ours, dict):
            for key, values in ours.items():
                np.testing.assert_allclose(first["observation"][key], np.asarray(values[0]).reshape(-1))
        else:
            np.testing.assert_allclose(first["observation"], ours[0].reshape(-1))
        np.testing.assert_allclose(first["action"], np.asarray(data.actions[0]).reshape(-1))
    assert [e["index"] for e in theirs["episodes"]] == [e.index for e in columns.episodes]
    for episode, summary in zip(theirs["episodes"], columns.episodes):
        assert episode["outcomes"] == summary.outcomes and episode["lengths"] == episode["said_lengths"]


def test_our_reader_reads_a_log_written_from_the_spec_exactly(tmp_path):
    path = str(tmp_path / "theirs.aqlog")
    wrote = node("write", path)
    reader = ReplayReader(path)
    columns = reader.columns()
    assert reader.finalised and reader.header.agents == wrote["agents"]
    assert list(reader.header.observation_spaces["north"].spaces) == ["observation", "action_mask"]  # their order
    for agent in wrote["agents"]:
        data = columns.agents[agent]
        assert len(data) == wrote["steps"][agent]
        assert float(np.sum(data.rewards)) == wrote["reward_sums"][agent]
        first = wrote["first_step"][agent]
        np.testing.assert_array_equal(data.observations["observation"][0], first["observation"]["observation"])
        np.testing.assert_array_equal(data.observations["action_mask"][0], first["observation"]["action_mask"])
        assert int(data.actions[0]) == first["action"][0]
    assert [e.outcomes for e in columns.episodes] == [e["outcomes"] for e in wrote["episodes"]]
    dataset = TransitionDataset.from_log(path, agent="all")  # and it trains: masks split out, finals used
    assert len(dataset) == sum(wrote["steps"].values()) and dataset.action_masks.shape[1] == 4


def test_the_reader_written_from_the_spec_finds_a_flipped_byte(tmp_path):
    path = str(tmp_path / "ours.aqlog")
    write_single_agent_log(path, lengths=[5])
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "flipped.aqlog").write_bytes(bytes(data))
    result = subprocess.run([NODE, SCRIPT, "read", str(tmp_path / "flipped.aqlog")], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1 and "CRC fails" in result.stderr


def test_the_reader_written_from_the_spec_finds_swapped_chunks_by_their_sequence_numbers(tmp_path):
    from aql_agent.replay import format as fmt

    path = str(tmp_path / "ours.aqlog")
    write_single_agent_log(path, lengths=[40], chunk_bytes=300)
    chunks = fmt.split_chunks(open(path, "rb").read())
    assert len(chunks) > 4  # steps-only chunks inside the one episode: every count still holds after a swap
    chunks[2], chunks[3] = chunks[3], chunks[2]
    (tmp_path / "swapped.aqlog").write_bytes(fmt.FILE_MAGIC + b"".join(chunks))
    result = subprocess.run([NODE, SCRIPT, "read", str(tmp_path / "swapped.aqlog")], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1 and "chunk 2 has sequence number 3" in result.stderr


def test_an_engine_written_from_the_protocol_doc_plays_and_is_recorded(tmp_path):
    """tests/conformance/bridge_engine.mjs: ZMTP 3.0 over a plain TCP socket plus the bridge's messages, from
    docs/bridge-protocol.md alone (no ZeroMQ library, no shared code)."""
    import threading

    from aql_agent.adapters.bridge import AgentServer, RandomPolicy

    agent = AgentServer(RandomPolicy(seed=0), "tcp://127.0.0.1:*", log=None, record_dir=str(tmp_path))
    thread = threading.Thread(target=agent.serve, kwargs={"poll_ms": 10}, daemon=True)
    thread.start()
    try:
        result = subprocess.run([NODE, os.path.join(os.path.dirname(SCRIPT), "bridge_engine.mjs"), agent.endpoint],
                                capture_output=True, text=True, timeout=120)
    finally:
        agent.stop()
        thread.join(5)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["decisions"] == 10 and summary["illegal"] == 0 and summary["mismatched"] == 0
    assert summary["acks"] == 2 and not summary["errors"] and summary["heartbeat"] == "heartbeat"
    assert summary["bye"] == "ack" and summary["policy"] == {"name": "random"}
    (log,) = [name for name in os.listdir(tmp_path) if name.endswith(".aqlog")]
    columns = ReplayReader(os.path.join(tmp_path, log)).columns()
    data = columns.agents["agent"]
    assert [e.outcomes["agent"] for e in columns.episodes] == ["win", "loss"] and len(data) == 10
    np.testing.assert_array_equal(data.observations["observation"][6], [1, 1, 0.5, -1])  # episode 1, frame 1
    assert data.rewards.tolist() == [1.5] * 4 + [2.0] + [1.5] * 4 + [2.0]  # each reward is the next step's
    assert (data.observations["action_mask"][np.arange(10), data.actions] == 1).all()
