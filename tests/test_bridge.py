"""The ZeroMQ bridge: protocol checks, a fuzzed server that keeps serving, engine and agent in separate
processes, an agent killed and restarted mid-game, recording, refusals and batching."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time

import msgpack
import numpy as np
import pytest
import torch
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aql_agent.adapters.bridge import AgentServer, BridgeError, BridgeRefused, EngineClient, EnvSpec, RandomPolicy
from aql_agent.adapters.bridge.policies import ServedPolicy
from aql_agent.adapters.bridge import protocol as p
from aql_agent.replay import ReplayReader

SPEC = EnvSpec("toy-v0", (4,), "float32", actions=5, action_mask=True, agents=("agent",))


@pytest.fixture
def server():
    """An agent serving uniform legal actions, in a thread, on a free loopback port."""
    agent = AgentServer(RandomPolicy(seed=0), "tcp://127.0.0.1:*", session_timeout=5.0, max_message_bytes=4096,
                        log=None)
    with serving(agent):
        yield agent


def raw_request(endpoint: str, payload: bytes, timeout_ms: int = 2000) -> dict:
    socket = zmq.Context.instance().socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(endpoint)
    try:
        socket.send(payload)
        assert socket.poll(timeout_ms), "the agent did not answer"
        return msgpack.unpackb(socket.recv(), raw=False)
    finally:
        socket.close(0)


@contextlib.contextmanager
def serving(agent: AgentServer):
    """`agent` serving in a thread for the block; stopped (and its logs closed) when the block ends."""
    thread = threading.Thread(target=agent.serve, kwargs={"poll_ms": 10}, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        agent.stop()
        thread.join(5)


# -- protocol ----------------------------------------------------------------------------------------------


def test_env_spec_round_trips_and_bad_specs_are_named():
    assert EnvSpec.from_wire({"env": SPEC.to_wire()}) == SPEC
    continuous = EnvSpec("Hopper-v5", (11,), actions=None, action_shape=(3,))
    assert EnvSpec.from_wire({"env": continuous.to_wire()}) == continuous
    with pytest.raises(BridgeError, match="env.observation.shape must be an integer >= 1"):
        EnvSpec.from_wire({"env": {**SPEC.to_wire(), "observation": {"dtype": "float32", "shape": [0]}}})
    with pytest.raises(BridgeError, match="'discrete' or 'continuous'"):
        EnvSpec.from_wire({"env": {**SPEC.to_wire(), "action": {"type": "box"}}})


@pytest.mark.parametrize("payload, code", [
    (b"\xc1", p.MALFORMED), (msgpack.packb([1, 2]), p.MALFORMED), (msgpack.packb({"type": "launch", "seq": 1}),
                                                                    p.UNKNOWN_TYPE),
    (msgpack.packb({"type": "step"}), p.BAD_FIELD), (msgpack.packb({"type": "step", "seq": True}), p.BAD_FIELD),
    (b"\x00" * 5000, p.TOO_LARGE)])
def test_decode_names_what_is_wrong(payload, code):
    with pytest.raises(BridgeError) as failure:
        p.decode(payload, max_bytes=4096)
    assert failure.value.code == code


def test_arrays_of_the_wrong_size_are_refused():
    with pytest.raises(BridgeError, match="declared float32 \\[4\\], which is 16 bytes"):
        p.array_from_wire(b"\x00" * 12, "float32", (4,), "step.observation")


# -- the agent keeps serving ---------------------------------------------------------------------------------


def valid_step(session: str, frame: int, seq: int = 7) -> bytes:
    return p.encode({"type": "step", "seq": seq, "session": session, "agent": "agent", "episode": 0, "frame": frame,
                     "observation": np.zeros(4, np.float32).tobytes(), "action_mask": bytes([0, 0, 1, 0, 1]),
                     "reward": 0.0})


# one server for every input on purpose: it must survive them all
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=st.one_of(
    st.binary(max_size=300),
    st.dictionaries(st.sampled_from(["type", "seq", "session", "agent", "episode", "frame", "observation",
                                     "action_mask", "reward", "env", "version", "protocol"]),
                    st.one_of(st.none(), st.booleans(), st.integers(-5, 2**40), st.floats(allow_nan=True),
                              st.text(max_size=8), st.binary(max_size=40),
                              st.lists(st.integers(-2**63, 2**63 - 1), max_size=3)),
                    max_size=8).map(lambda d: msgpack.packb(d, use_bin_type=True))))
def test_random_and_malformed_frames_get_an_error_and_a_valid_step_is_still_served(server, garbage):
    reply = raw_request(server.endpoint, garbage)
    assert reply["type"] in ("error", "refuse", "welcome", "ack", "heartbeat", "action")
    client = EngineClient(server.endpoint, SPEC, timeout_s=2.0)
    client.connect()
    action = client.act("agent", "e", 1, np.zeros(4, np.float32), np.array([0, 0, 1, 0, 1]))
    assert action in (2, 4)  # a legal action, never the fallback
    assert client.stats["fallbacks"] == 0
    client.close()


def test_errors_name_the_problem_and_out_of_order_frames_are_refused(server):
    client = EngineClient(server.endpoint, SPEC, timeout_s=2.0)
    session = client.connect()["session"]
    assert raw_request(server.endpoint, valid_step(session, 5))["type"] == "action"
    reply = raw_request(server.endpoint, valid_step(session, 5))
    assert reply["type"] == "error" and reply["code"] == p.OUT_OF_ORDER and reply["seq"] == 7
    short = msgpack.unpackb(valid_step(session, 6), raw=False)
    short["observation"] = b"\x00" * 8
    reply = raw_request(server.endpoint, p.encode(short))
    assert reply["code"] == p.SHAPE and "16 bytes" in reply["message"]
    reply = raw_request(server.endpoint, valid_step("no-such-session", 1))
    assert reply["code"] == p.NO_SESSION and "hello" in reply["message"]
    assert raw_request(server.endpoint, b"\x00" * 5000)["code"] == p.TOO_LARGE
    assert raw_request(server.endpoint, valid_step(session, 6))["type"] == "action"


def test_hostile_requests_inside_a_session_get_an_error_and_the_agent_keeps_serving(tmp_path):
    agent = AgentServer(RandomPolicy(seed=0), "tcp://127.0.0.1:*", record_dir=str(tmp_path), log=None)
    with serving(agent) as thread:
        client = EngineClient(agent.endpoint, SPEC, timeout_s=2.0)
        session = client.connect()["session"]
        nested: list = []
        for _ in range(900):
            nested = [nested]
        hostile = [{"type": "end", "seq": 3, "session": session, "agent": "agent", "episode": "e", "frame": b"\x01"},
                   {"type": "end", "seq": 4, "session": session, "agent": "agent", "episode": "e", "frame": 1,
                    "outcome": "win", "extra": {b"key": nested}},
                   {"type": "launch", "seq": 5, "session": session}]
        # a bytes frame; an end nesting 900 levels (malformed: read no further, seq 0); an unknown type
        for message, seq in zip(hostile, (3, 0, 5)):
            reply = raw_request(agent.endpoint, msgpack.packb(message, use_bin_type=True))
            assert reply["type"] == "error" and reply["seq"] == seq  # the request's seq whenever it was read
        deep = {"type": "heartbeat", "seq": 9, "session": session, "extra": nested}
        reply = raw_request(agent.endpoint, msgpack.packb(deep, use_bin_type=True))
        assert reply["code"] == p.MALFORMED and "nests" in reply["message"]
        action = client.act("agent", "e2", 1, np.zeros(4, np.float32), np.array([0, 1, 0, 0, 0]))
        assert action == 1 and client.stats["fallbacks"] == 0
        assert client.end_episode("agent", "e2", 2, np.zeros(4, np.float32), outcome="win")
        client.close()
    assert not thread.is_alive()


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_the_agent_refuses_a_major_version_or_a_spec_its_policy_cannot_play(tmp_path, backend):
    from aql_agent.adapters.bridge import CheckpointPolicy
    from aql_agent.checkpoint import Preprocessing, save_checkpoint
    from aql_agent.learners import make_learner

    if backend == "onnx":
        pytest.importorskip("onnxruntime")
    path = save_checkpoint(tmp_path / "dqn", make_learner("dqn", 4, 5, {"hidden": [8]}),
                           Preprocessing.identity(4, 0), step=0)
    agent = AgentServer(CheckpointPolicy(path, backend), "tcp://127.0.0.1:*", log=None)
    thread = threading.Thread(target=agent.serve, kwargs={"poll_ms": 10}, daemon=True)
    thread.start()
    try:
        hello = {"type": "hello", "seq": 1, "protocol": p.PROTOCOL, "version": [2, 0], "env": SPEC.to_wire()}
        reply = raw_request(agent.endpoint, p.encode(hello))
        assert reply["type"] == "refuse" and "major version 2" in reply["reason"]
        wrong = EnvSpec("toy-v0", (6,), actions=5, action_mask=True)
        with pytest.raises(BridgeRefused, match="observations of shape \\(4,\\)"):
            EngineClient(agent.endpoint, wrong).connect()
        client = EngineClient(agent.endpoint, SPEC)
        assert client.connect()["policy"] == {"name": "dqn", "checkpoint": os.path.abspath(path), "step": 0,
                                              "backend": backend}
        assert client.act("agent", 0, 0, np.ones(4, np.float32), np.array([0, 1, 0, 0, 0])) == 1
        client.close()
    finally:
        agent.stop()
        thread.join(5)


def unserved_endpoint() -> str:
    """A free loopback port below Linux's ephemeral range: a client retrying a port in that range can be
    handed it as its own source port and connect to itself, which then holds the port. Probed with a plain
    socket, whose close frees the port at once (a ZeroMQ socket's close is finished later by its I/O thread,
    so on a loaded machine the agent's bind could still find the port taken)."""
    import random
    import socket

    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 32000)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return f"tcp://127.0.0.1:{port}"
    raise RuntimeError("no free loopback port in 20000-32000")


def test_an_engine_started_before_its_agent_waits_for_it():
    endpoint = unserved_endpoint()
    client = EngineClient(endpoint, SPEC, timeout_s=0.2, connect_timeout_s=20.0)
    agent = AgentServer(RandomPolicy(0), endpoint, log=None)
    late = threading.Timer(0.5, lambda: threading.Thread(target=agent.serve, kwargs={"poll_ms": 10},
                                                         daemon=True).start())
    late.start()
    try:
        assert client.connect()["type"] == "welcome"  # sent before the agent bound; answered once it serves
        assert client.act("agent", 0, 0, np.zeros(4, np.float32), np.array([0, 1, 0, 0, 0])) == 1
        client.close()
    finally:
        late.join()
        agent.stop()


def test_tools_engine_gives_up_on_an_absent_agent_after_its_connect_timeout(capsys):
    from aql_agent.cli import main

    started = time.perf_counter()
    assert main(["engine", "--connect", unserved_endpoint(), "--games", "1", "--connect-timeout", "0.5",
                 "--no-progress"]) == 2
    assert time.perf_counter() - started < 10
    assert "no agent answered" in capsys.readouterr().err


def test_concurrent_engines_are_answered_in_batches(server):
    clients = [EngineClient(server.endpoint, SPEC, timeout_s=5.0) for _ in range(6)]
    for client in clients:
        client.connect()

    def play(client: EngineClient) -> None:
        for frame in range(60):
            client.act("agent", 0, frame, np.zeros(4, np.float32), np.ones(5))

    threads = [threading.Thread(target=play, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert server.stats["steps"] == 360 and all(c.stats["fallbacks"] == 0 for c in clients)
    assert server.stats["batches"] < server.stats["steps"]  # some requests shared a policy call


# -- separate processes ---------------------------------------------------------------------------------------


def start_agent(*arguments: str) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([sys.executable, "-m", "aql_agent", "deploy", *arguments], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    first = json.loads(process.stdout.readline())
    return process, first["endpoint"]


def test_engine_and_agent_in_separate_processes_play_and_record(tmp_path):
    agent, endpoint = start_agent("--policy", "bt:easy", "--bind", "tcp://127.0.0.1:*", "--record", str(tmp_path))
    try:
        result = subprocess.run([sys.executable, "-m", "aql_agent", "engine", "--connect", endpoint, "--games", "2",
                                 "--opponent", "random", "--set", "max_frames=600", "--no-progress"],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["games"] == 2 and report["wins"] + report["losses"] + report["draws"] == 2
        assert report["agent"] == {"name": "bt", "level": "easy"}
        assert report["bridge"]["fallbacks"] == 0 and report["bridge"]["latency_ms_p99"] > 0
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(10)
    logs = [name for name in os.listdir(tmp_path) if name.endswith(".aqlog")]
    assert len(logs) == 1
    reader = ReplayReader(os.path.join(tmp_path, logs[0]))
    assert reader.header.env_id == "moba-1v1" and len(list(reader.episodes())) == 2
    with open(tmp_path / "games.jsonl") as f:
        assert len(f.readlines()) == 2


def test_an_agent_killed_mid_game_is_noticed_and_a_restarted_one_takes_over(tmp_path):
    import socket as sockets

    with sockets.socket() as probe:  # a fixed free port, so that the restarted agent binds the same one
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = f"tcp://127.0.0.1:{port}"
    agent, _ = start_agent("--policy", "random", "--bind", endpoint, "--record", str(tmp_path / "first"))
    client = EngineClient(endpoint, SPEC, timeout_s=0.3, fallback_action=-1)
    client.connect()
    for frame in range(200):
        assert client.act("agent", 0, frame, np.zeros(4, np.float32), np.ones(5)) != -1
    time.sleep(1.5)  # the agent flushes its log every second
    agent.kill()
    agent.wait(10)
    started = time.perf_counter()
    assert client.act("agent", 0, 200, np.zeros(4, np.float32), np.ones(5)) == -1  # the fallback, in time
    assert time.perf_counter() - started < 1.0
    restarted, _ = start_agent("--policy", "random", "--bind", endpoint)
    try:
        actions = [client.act("agent", 0, frame, np.zeros(4, np.float32), np.ones(5)) for frame in range(201, 260)]
        assert actions[-1] != -1 and client.stats["rehandshakes"] >= 1
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(10)
    partial = [os.path.join(tmp_path / "first", n) for n in os.listdir(tmp_path / "first") if ".aqlog" in n]
    with pytest.warns(Warning):
        steps = list(ReplayReader(partial[0], recover=True).steps())
    assert len(steps) >= 199  # every decision before the kill was flushed (the last awaits its reward)


def test_curve_encryption_and_the_loopback_default(tmp_path):
    import zmq.auth

    from aql_agent.cli import main

    public_file, secret_file = zmq.auth.create_certificates(str(tmp_path), "agent")
    public, secret = zmq.auth.load_certificate(secret_file)
    agent = AgentServer(RandomPolicy(0), "tcp://127.0.0.1:*", curve_secret_key=secret, log=None)
    thread = threading.Thread(target=agent.serve, kwargs={"poll_ms": 10}, daemon=True)
    thread.start()
    try:
        client = EngineClient(agent.endpoint, SPEC, curve_server_key=zmq.auth.load_certificate(public_file)[0])
        client.connect()
        assert client.act("agent", 0, 0, np.zeros(4, np.float32), np.array([0, 1, 0, 0, 0])) == 1
        client.close()
        plain = EngineClient(agent.endpoint, SPEC, timeout_s=0.3, connect_timeout_s=0.3)  # no key: never heard
        with pytest.raises(Exception, match="no agent answered"):
            plain.connect()
    finally:
        agent.stop()
        thread.join(5)
    assert main(["deploy", "--policy", "random", "--bind", "tcp://0.0.0.0:5599"]) == 2  # needs --public


@pytest.mark.parametrize("argv, message", [
    (["deploy", "--policy", "random", "--bind", "tcp://127.0.0.1:99999"], "the port must be 1..65535"),
    (["deploy", "--policy", "random", "--bind", "127.0.0.1:5555"], "is not an endpoint"),
    (["deploy", "--policy", "random", "--bind", "tcp://127.0.0.1:*", "--session-timeout", "nan"],
     "--session-timeout must be a finite number"),
    (["deploy", "--policy", "random", "--bind", "tcp://127.0.0.1:*", "--max-message-bytes", "0"],
     "--max-message-bytes must be at least 1024"),
    (["engine", "--connect", "tcp://127.0.0.1:5555", "--games", "0"], "--games must be at least 1"),
    (["engine", "--connect", "tcp://nowhere", "--games", "1"], "the port must be"),
    (["deploy", "--policy", "random", "--bind", "tcp://127.0.0.1:*", "--curve-secret-key", __file__],
     "is not a ZeroMQ certificate")])
def test_bad_bridge_flags_are_one_clear_error(argv, message, capsys):
    from aql_agent.cli import main

    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.startswith("aql: error: ") and message in error and error.count("\n") == 1


def test_a_taken_port_and_a_record_file_are_named(tmp_path, capsys):
    from aql_agent.cli import main

    first = AgentServer(RandomPolicy(seed=0), "tcp://127.0.0.1:*", log=None)
    try:
        assert main(["deploy", "--policy", "random", "--bind", first.endpoint]) == 2
        assert "cannot bind" in capsys.readouterr().err
    finally:
        first.close()
    (tmp_path / "logs").write_text("")
    assert main(["deploy", "--policy", "random", "--bind", "tcp://127.0.0.1:*", "--record",
                 str(tmp_path / "logs")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_a_hello_flood_is_refused_past_the_session_cap():
    agent = AgentServer(RandomPolicy(seed=0), "tcp://127.0.0.1:*", log=None, max_sessions=3)
    thread = threading.Thread(target=agent.serve, kwargs={"poll_ms": 10}, daemon=True)
    thread.start()
    try:
        hello = {"type": "hello", "seq": 1, "protocol": p.PROTOCOL, "version": list(p.VERSION), "env": SPEC.to_wire()}
        replies = [raw_request(agent.endpoint, p.encode(hello))["type"] for _ in range(5)]
        assert replies == ["welcome"] * 3 + ["refuse"] * 2 and len(agent.sessions) == 3
        many = {**hello, "env": {**SPEC.to_wire(), "agents": [f"a{i}" for i in range(300)]}}
        agent.sessions.clear()
        assert raw_request(agent.endpoint, p.encode(many))["type"] == "refuse"
    finally:
        agent.stop()
        thread.join(5)


def test_masks_are_zero_or_one_and_allow_something(server):
    client = EngineClient(server.endpoint, SPEC, timeout_s=2.0)
    session = client.connect()["session"]
    for mask, message in ((bytes([0, 2, 0, 0, 0]), "bytes are 1 (legal) or 0"), (bytes(5), "allows no action")):
        step = msgpack.unpackb(valid_step(session, 1), raw=False)
        step["action_mask"] = mask
        reply = raw_request(server.endpoint, p.encode(step))
        assert reply["code"] == p.BAD_FIELD and message in reply["message"] and reply["seq"] == 7
    client.close()


def test_a_nan_box_bound_is_one_line():
    from aql_agent.errors import SpaceError
    from aql_agent.spaces import space_from_spec

    with pytest.raises(SpaceError, match="'low' holds NaN") as failure:
        space_from_spec({"type": "box", "dtype": "float32", "shape": [2], "low": [0.0, float("nan")], "high": 1.0})
    assert "\n" not in str(failure.value)


def test_framing_and_session_fields_are_checked_as_the_doc_says(server):
    socket = zmq.Context.instance().socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(server.endpoint)
    try:
        heartbeat = p.encode({"type": "heartbeat", "seq": 4, "session": "x"})
        for frames in ([b"", b"", heartbeat], [heartbeat, heartbeat]):
            socket.send_multipart(frames)
            assert socket.poll(2000)
            reply = socket.recv_multipart()
            assert len(reply) == 1 and msgpack.unpackb(reply[0], raw=False)["code"] == p.MALFORMED  # nothing echoed
    finally:
        socket.close(0)
    for session in (None, 7):
        message = {"type": "heartbeat", "seq": 5, **({} if session is None else {"session": session})}
        reply = raw_request(server.endpoint, p.encode(message))
        assert reply["code"] == p.BAD_FIELD and "session" in reply["message"] and reply["seq"] == 5


def test_a_recording_that_fails_ends_that_session_only(tmp_path, monkeypatch):
    """A full disk while recording one engine's games: that engine gets an error and must say hello again;
    the agent and the other engines' sessions carry on, and what was flushed stays readable."""
    import errno

    from aql_agent.replay import ReplayWriter

    agent = AgentServer(RandomPolicy(seed=0), "tcp://127.0.0.1:*", record_dir=str(tmp_path), log=None)
    with serving(agent) as thread:
        doomed, other = (EngineClient(agent.endpoint, SPEC, timeout_s=2.0) for _ in range(2))
        doomed_session, other_session = doomed.connect()["session"], other.connect()["session"]
        mask = np.ones(5, np.int8)
        for frame in range(3):
            for client in (doomed, other):
                client.act("agent", "e", frame, np.zeros(4, np.float32), mask)
        real_add_step = ReplayWriter.add_step

        def disk_full(self, *args, **kwargs):
            if doomed_session in self.path:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_add_step(self, *args, **kwargs)

        monkeypatch.setattr(ReplayWriter, "add_step", disk_full)
        message = {"type": "step", "seq": 77, "session": doomed_session, "agent": "agent", "episode": "e", "frame": 9,
                   "observation": np.zeros(4, np.float32).tobytes(), "action_mask": bytes(mask), "reward": 0.0}
        reply = raw_request(agent.endpoint, msgpack.packb(message, use_bin_type=True))
        assert reply["type"] == "error" and reply["code"] == p.INTERNAL and reply["seq"] == 77
        assert "No space left" in reply["message"] and "send hello again" in reply["message"]
        reply = raw_request(agent.endpoint, msgpack.packb({**message, "seq": 78, "frame": 10}, use_bin_type=True))
        assert reply["code"] == p.NO_SESSION  # the engine re-handshakes, as after an agent restart
        assert other.act("agent", "e", 3, np.zeros(4, np.float32), mask) is not None
        assert other.end_episode("agent", "e", 4, np.zeros(4, np.float32), outcome="win")
        assert agent.stats["recording_failures"] == 1 and thread.is_alive()
        other.close()
        doomed.close()
    with pytest.warns(Warning):  # the failed log is an unfinished .partial: every flushed step reads
        (partial,) = [f for f in tmp_path.iterdir() if f.name.endswith(".partial")]
        assert len(list(ReplayReader(str(partial)).steps())) == 2  # frames 0-2: two rewarded decisions
    (finished,) = [f for f in tmp_path.iterdir() if f.name.endswith(".aqlog")]
    assert other_session in finished.name and len(list(ReplayReader(str(finished)).steps())) == 4


def test_a_step_of_an_episode_whose_log_episode_closed_is_not_logged_into_the_next(tmp_path):
    """Two agents of one engine in different episodes at once: when one starts episode 2, the log closes
    episode 1; the other's later episode-1 decisions must not land in episode 2's record."""
    spec = EnvSpec("toy-v0", (4,), "float32", actions=5, action_mask=True, agents=("a", "b"))
    agent = AgentServer(RandomPolicy(seed=0), "tcp://127.0.0.1:*", record_dir=str(tmp_path), log=None)
    with serving(agent):
        client = EngineClient(agent.endpoint, spec, timeout_s=2.0)
        session = client.connect()["session"]
        observation, mask = np.zeros(4, np.float32), np.ones(5, np.int8)

        def step(seq, who, episode, frame, value):
            reply = raw_request(agent.endpoint, msgpack.packb(
                {"type": "step", "seq": seq, "session": session, "agent": who, "episode": episode, "frame": frame,
                 "observation": np.full(4, value, np.float32).tobytes(), "action_mask": bytes(mask), "reward": 1.0},
                use_bin_type=True))
            assert reply["type"] == "action", reply

        step(1, "a", 1, 0, 10.0)
        step(2, "b", 1, 0, 20.0)
        step(3, "a", 1, 1, 11.0)  # logs a's first decision (episode 1)
        step(4, "a", 2, 0, 12.0)  # a starts episode 2: the log closes episode 1
        step(5, "b", 1, 1, 21.0)  # b is still in episode 1: its pending decision has no log episode to go to
        for seq, who, episode in ((6, "a", 2), (7, "b", 1)):
            end = {"type": "end", "seq": seq, "session": session, "agent": who, "episode": episode, "frame": 5,
                   "observation": observation.tobytes(), "reward": 0.0, "terminated": True, "outcome": "draw"}
            assert raw_request(agent.endpoint, msgpack.packb(end, use_bin_type=True))["type"] == "ack"
        client.close()
    (log,) = [f for f in tmp_path.iterdir() if f.suffix == ".aqlog"]
    steps = list(ReplayReader(str(log)).steps())
    logged = [(s.episode, s.agent, float(s.observation["observation"][0])) for s in steps]
    assert logged == [(0, "a", 10.0), (1, "a", 12.0)]  # nothing of b's episode 1 inside episode 2
    assert agent.stats["steps"] == 5 and agent.stats["decisions_unrecorded"] == 3  # 2 logged + 3 = 5 answered


class _Exploring:
    """A stand-in exploring policy: every action is a torch random draw."""
    discrete, obs_dim, act_dim = True, 2, 50

    def act(self, obs, deterministic):
        return torch.randint(0, self.act_dim, (len(obs["observation"]),)).numpy()


def test_seeded_streams_explore_alike_however_decisions_are_batched_or_shared():
    spec = EnvSpec("toy", (2,), "float32", actions=50, action_mask=True)

    def play(batches, session=1):
        served = ServedPolicy(_Exploring(), {}, deterministic=False, seeded_streams=True)
        draws: dict = {}
        for batch in batches:
            batch = [(session if s == 1 else s, agent, episode) for s, agent, episode in batch]
            actions = served.act(spec, batch, np.zeros((len(batch), 2), np.float32), np.ones((len(batch), 50), bool))
            for (_, agent, episode), action in zip(batch, actions):
                draws.setdefault((agent, episode), []).append(int(action))
        return draws

    streams = [(1, "a", 10), (1, "b", 10), (2, "a", 11)]
    torch.manual_seed(0)
    before = torch.get_rng_state()
    together = play([streams] * 6)
    assert torch.equal(torch.get_rng_state(), before)  # the server's own stream is left alone
    assert together == play([[s] for s in reversed(streams) for _ in range(6)])  # one at a time, another order
    assert together == play([streams] * 6, session=7)  # another engine playing the same game draws the same
    assert len({tuple(d) for d in together.values()}) == 3  # each stream its own draws


@pytest.mark.parametrize("endpoint, loopback", [
    ("tcp://127.0.0.1:5555", True), ("tcp://127.1.2.3:*", True), ("tcp://[::1]:5555", True),
    ("tcp://localhost:5555", True), ("ipc:///tmp/agent", True), ("inproc://agent", True),
    ("tcp://0.0.0.0:5555", False), ("tcp://*:5555", False), ("tcp://[::]:5555", False), ("tcp://eth0:5555", False),
    ("tcp://127.0.0.1.example.com:5555", False), ("tcp://10.0.0.1:5555", False), ("udp://127.0.0.1:5555", False)])
def test_loopback_is_judged_from_the_parsed_host(endpoint, loopback):
    assert p.is_loopback(endpoint) is loopback


def test_an_ipv6_loopback_endpoint_serves_and_connects():
    """tcp://[::1]:PORT is loopback (so no --public is needed) and must work end to end: ZeroMQ binds and
    connects to an IPv6 host only with the socket's IPV6 option on."""
    agent = AgentServer(RandomPolicy(seed=0), "tcp://[::1]:*", log=None)
    with serving(agent):
        assert agent.endpoint.startswith("tcp://[::1]:")
        client = EngineClient(agent.endpoint, SPEC, timeout_s=2.0)
        assert client.connect()["type"] == "welcome"
        assert client.act("agent", 0, 0, np.zeros(4, np.float32), np.array([0, 1, 0, 0, 0])) == 1
        client.close()
