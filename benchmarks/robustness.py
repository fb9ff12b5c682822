"""Hostile input at scale: corrupted replay logs through `aql inspect` / `aql convert`, malformed frames against
running agents (`aql deploy --record` and a checkpoint agent).

    python benchmarks/robustness.py --logs 2000 --frames 10000          # the figures in docs/benchmarks.md

Logs: each corrupted log is read by both commands (in this process, through `aql_agent.cli.main`, so an
exception escaping it is a traceback a user would see). Every outcome is classified: one `aql: error:` line,
a result with warnings, or a clean result; a clean result of byte-level damage (cuts, flips, lost, repeated or
reordered chunks, inserted bytes, checksummed headers that lie) must equal the undamaged log's arrays, or it
is counted as *silently wrong*. Content rewritten with valid checksums (a field of another type) is a
different log, so there only tracebacks and multi-line errors count against us.

Bridge: two agents run as separate processes; a DEALER client sends frames built by hand with msgpack (no code
of ours), every field of every message type replaced by values of wrong types, sizes and nesting, missing,
doubled or unknown, plus garbage, wrong framings and oversize frames, interleaved with valid games. Counted:
replies by code, timeouts, agent crashes, tracebacks on the agents' stderr, the agents' memory (RSS) after
warm-up and at the end, and for the recording agent whether its logs hold exactly the steps it answered.

Writes benchmarks/results/robustness.json and .png.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from typing import Any

import msgpack
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from aql_agent.cli import main as aql  # noqa: E402
from aql_agent.replay import ReplayReader, ReplayWriter  # noqa: E402
from aql_agent.replay import format as fmt  # noqa: E402

# -- logs ------------------------------------------------------------------------------------------------------


def _base_logs(folder: str) -> dict[str, str]:
    """Four sound logs: one agent (Box observations, Box actions) and two agents (masked Dict observations,
    MultiDiscrete actions, outcomes, info), each uncompressed and zstd, several chunks per episode."""
    from gymnasium import spaces

    rng = np.random.default_rng(0)
    paths = {}
    for compression in ("none", "zstd"):
        path = os.path.join(folder, f"single-{compression}.aqlog")
        with ReplayWriter(path, "Toy-v0", spaces.Box(-5, 5, (6,), np.float32), spaces.Box(-1, 1, (2,), np.float32),
                          compression=compression, chunk_bytes=600, info_keys=("x",)) as writer:
            for _ in range(4):
                writer.begin_episode(seed=int(rng.integers(100)))
                for t in range(25):
                    writer.add_step(rng.normal(size=6).astype(np.float32), rng.uniform(-1, 1, 2).astype(np.float32),
                                    float(rng.normal()), t == 24, False, {"x": t})
                writer.end_episode(final_observation=np.zeros(6, np.float32))
        paths[f"single-{compression}"] = path
        path = os.path.join(folder, f"two-agents-{compression}.aqlog")
        observation = spaces.Dict({"observation": spaces.Box(-1, 1, (5,), np.float32),
                                   "action_mask": spaces.MultiBinary(7)})
        with ReplayWriter(path, "duel-v0", observation, spaces.MultiDiscrete([3, 4]), agents=("blue", "red"),
                          compression=compression, chunk_bytes=800) as writer:
            for _ in range(3):
                writer.begin_episode()
                for _ in range(20):
                    for agent in ("blue", "red"):
                        writer.add_step({"observation": rng.uniform(-1, 1, 5).astype(np.float32),
                                         "action_mask": rng.integers(0, 2, 7).astype(np.int8)},
                                        rng.integers(0, 3, 2), float(rng.normal()), False, False, agent=agent)
                final = {"observation": np.zeros(5, np.float32), "action_mask": np.ones(7, np.int8)}
                writer.end_episode(final_observation={"blue": final, "red": final}, outcome={"blue": "win",
                                                                                               "red": "loss"})
        paths[f"two-agents-{compression}"] = path
    return paths


def _rechunk(head: tuple, payload: bytes, count: int | None = None) -> bytes:
    """A chunk with `payload` whose checksums are right again (codec and sequence kept)."""
    magic, codec, sequence, old_count, _, _, _ = head
    stored = payload
    raw_length = len(payload)
    if codec == fmt.CODEC_ZSTD:
        import zstandard

        stored = zstandard.ZstdCompressor().compress(payload)
    packed = fmt.CHUNK_HEADER.pack(magic, codec, sequence, old_count if count is None else count, len(stored),
                                   raw_length, fmt.crc32(stored))
    return packed + fmt.crc32(packed).to_bytes(4, "little") + stored


def _raw_payload(chunk: bytes) -> tuple[tuple, bytes]:
    head = fmt.CHUNK_HEADER.unpack_from(chunk)
    stored = chunk[fmt.CHUNK_HEADER_SIZE:]
    if head[1] == fmt.CODEC_ZSTD:
        import zstandard

        with zstandard.ZstdDecompressor().stream_reader(stored, read_across_frames=True) as reader:
            stored = reader.read()
    return head, stored


WRONG_VALUES: list[Any] = [None, True, -1, 2 ** 64 - 1, -2 ** 63, 1.5, float("nan"), float("inf"), "", "x" * 300,
                           b"", b"\x00" * 7, [], [1, [2, [3]]], {}, {"a": 1}, {1: 2}]


def _mutate_value(value: Any, rng: random.Random, depth: int = 0) -> Any:
    """`value` with one element somewhere replaced, dropped or added."""
    if isinstance(value, dict) and value and depth < 4 and rng.random() < 0.7:
        key = rng.choice(list(value))
        out = dict(value)
        action = rng.random()
        if action < 0.2:
            del out[key]
        elif action < 0.3:
            out[rng.choice(["extra", 7, b"k"])] = rng.choice(WRONG_VALUES)
        else:
            out[key] = _mutate_value(value[key], rng, depth + 1)
        return out
    if isinstance(value, list) and value and depth < 4 and rng.random() < 0.7:
        out = list(value)
        index = rng.randrange(len(out))
        action = rng.random()
        if action < 0.15:
            del out[index]
        elif action < 0.25:
            out.append(rng.choice(WRONG_VALUES))
        else:
            out[index] = _mutate_value(value[index], rng, depth + 1)
        return out
    if isinstance(value, bytes) and value and rng.random() < 0.5:
        return value[:rng.randrange(len(value))] if rng.random() < 0.5 else value + b"\x01"
    return rng.choice(WRONG_VALUES)


def corrupt(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """One damaged copy of a log and its damage class."""
    chunks = fmt.split_chunks(data)
    kind = rng.choice(["cut", "flip", "drop", "duplicate", "swap", "move", "insert", "lying-header", "content"])
    if kind == "cut":
        return kind, data[:rng.randrange(len(data))]
    if kind == "flip":
        out = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            out[rng.randrange(len(out))] ^= rng.randint(1, 255)
        return kind, bytes(out)
    if kind == "insert":
        at = rng.randrange(len(fmt.FILE_MAGIC), len(data))
        return kind, data[:at] + rng.randbytes(rng.randint(1, 64)) + data[at:]
    body = list(chunks)
    i = rng.randrange(1, len(body))
    if kind == "drop":
        del body[i]
    elif kind == "duplicate":
        body.insert(i, body[i])
    elif kind == "swap":
        j = rng.randrange(1, len(body))
        while j == i and len(body) > 2:
            j = rng.randrange(1, len(body))
        body[i], body[j] = body[j], body[i]
    elif kind == "move":
        chunk = body.pop(i)
        body.insert(rng.randrange(1, len(body) + 1), chunk)
    elif kind == "lying-header":  # a checksummed chunk header whose fields do not match its payload
        i = rng.randrange(len(body))
        magic, codec, sequence, count, stored, raw, crc = fmt.CHUNK_HEADER.unpack_from(body[i])
        field = rng.choice(["count", "raw", "codec", "sequence"])
        count = count + rng.choice([-1, 1, 1000]) if field == "count" else count
        raw = max(0, raw + rng.choice([-1, 1, 4096])) if field == "raw" else raw
        codec = rng.choice([1 - codec, 7]) if field == "codec" else codec
        sequence = (int.from_bytes(sequence, "little") + rng.choice([1, 2, 255])).to_bytes(4, "little")[:3] \
            if field == "sequence" else sequence
        head = fmt.CHUNK_HEADER.pack(magic, codec, sequence, max(0, count), stored, raw, crc)
        body[i] = head + fmt.crc32(head).to_bytes(4, "little") + body[i][fmt.CHUNK_HEADER_SIZE:]
    else:  # content: one record's field replaced, checksums made right again
        i = rng.randrange(len(body))
        head, payload = _raw_payload(body[i])
        records = list(msgpack.Unpacker(io.BytesIO(payload), raw=False, strict_map_key=False))
        r = rng.randrange(len(records))
        records[r] = _mutate_value(records[r], rng)
        payload = b"".join(msgpack.packb(record, use_bin_type=True) for record in records)
        body[i] = _rechunk(head, payload)
    return kind, fmt.FILE_MAGIC + b"".join(body)


def _run(argv: list[str]) -> tuple[str, str]:
    """(outcome, stderr) of one `aql` command run in this process."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("always")
            status = aql(argv)
    except SystemExit as exit_:
        status = exit_.code
    except BaseException as exc:  # escaped `main`: the user would see a traceback
        return "traceback", f"{type(exc).__name__}: {exc}"
    text = err.getvalue()
    lines = [line for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if not line.startswith("aql: warning:")]
    if status == 2 and len(errors) == 1 and errors[0].startswith("aql: error: "):
        return "error", text
    if status == 0 and not errors:
        return ("warned" if lines else "clean"), text
    return "multi-line or bad status", text


def fuzz_logs(count: int, seed: int, work: str) -> dict[str, Any]:
    rng = random.Random(seed)
    os.makedirs(work, exist_ok=True)
    bases = _base_logs(work)
    originals = {}
    for name, path in bases.items():
        out = os.path.join(work, f"{name}.npz")
        agent = ["--agent", "blue"] if name.startswith("two") else []
        assert _run(["convert", path, out, *agent])[0] == "clean"
        with np.load(out) as arrays:
            originals[name] = {key: arrays[key] for key in arrays.files}
    outcomes: dict[str, Counter] = {}
    examples: dict[str, list[str]] = {"traceback": [], "silently wrong": [], "multi-line or bad status": []}
    damaged = os.path.join(work, "damaged.aqlog")
    started = time.perf_counter()
    for n in range(count):
        name = rng.choice(sorted(bases))
        kind, data = corrupt(open(bases[name], "rb").read(), rng)
        with open(damaged, "wb") as f:
            f.write(data)
        agent = ["--agent", "blue"] if name.startswith("two") else []
        out = os.path.join(work, "damaged.npz")
        if os.path.exists(out):
            os.remove(out)
        for command, argv in (("inspect", ["inspect", damaged]), ("convert", ["convert", damaged, out, *agent])):
            outcome, text = _run(argv)
            if command == "convert" and outcome == "clean" and kind != "content":
                with np.load(out) as arrays:  # aql_metadata names the source file: not compared
                    keys = set(arrays.files) - {"aql_metadata"}
                    same = keys == set(originals[name]) - {"aql_metadata"} and all(
                        np.array_equal(arrays[k], originals[name][k]) for k in keys)
                outcome = "clean, unchanged" if same else "silently wrong"
            outcomes.setdefault(f"{command}/{kind}", Counter())[outcome] += 1
            if outcome in examples and len(examples[outcome]) < 5:
                keep = os.path.join(work, f"example-{n}-{command}.aqlog")
                shutil.copy(damaged, keep)
                examples[outcome].append(f"{command} {kind} {name}: {text.strip()[:300]}")
        if (n + 1) % 500 == 0:
            print(f"logs: {n + 1}/{count}", flush=True)
    totals = Counter()
    for counter in outcomes.values():
        totals.update(counter)
    return {"logs": count, "runs": 2 * count, "seconds": time.perf_counter() - started, "totals": dict(totals),
            "by_command_and_damage": {k: dict(v) for k, v in sorted(outcomes.items())}, "examples": examples}


# -- bridge ----------------------------------------------------------------------------------------------------

DISCRETE_ENV = {"id": "fuzz-v0", "observation": {"dtype": "float32", "shape": [4]}, "action": {"type": "discrete",
                                                                                                  "n": 5},
                "action_mask": True, "agents": ["hero", "foe"], "tick_rate": 10.0}
CONTINUOUS_ENV = {"id": "Pendulum-v1", "observation": {"dtype": "float32", "shape": [3]},
                  "action": {"type": "continuous", "shape": [1]}, "agents": ["agent"]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return math.nan


def _nested(depth: int) -> bytes:
    return b"\x91" * depth + b"\xc0"  # [[[...nil...]]] encoded by hand: no packer recursion limit


class Client:
    """A DEALER socket that sends one frame (or a list of frames) and waits for one reply."""

    def __init__(self, endpoint: str, timeout_ms: int = 3000):
        import zmq

        self.zmq, self.endpoint, self.timeout_ms = zmq, endpoint, timeout_ms
        self.context = zmq.Context.instance()
        self.socket = None
        self.reconnect()

    def reconnect(self) -> None:
        if self.socket is not None:
            self.socket.close(linger=0)
        self.socket = self.context.socket(self.zmq.DEALER)
        self.socket.setsockopt(self.zmq.LINGER, 0)
        self.socket.connect(self.endpoint)

    def ask(self, frames: list[bytes]) -> dict | None:
        self.socket.send_multipart(frames)
        if not self.socket.poll(self.timeout_ms):
            self.reconnect()
            return None
        reply = self.socket.recv_multipart()
        try:
            value = msgpack.unpackb(reply[-1], raw=False)
        except Exception:
            return {"type": "undecodable reply"}
        return value if isinstance(value, dict) else {"type": "reply that is not a map"}


class BridgeFuzzer:
    def __init__(self, client: Client, env: dict, rng: random.Random, max_bytes: int):
        self.client, self.env, self.rng, self.max_bytes = client, env, rng, max_bytes
        self.seq = 0
        self.session: str | None = None
        self.frame = 0
        self.episode = 0
        self.replies: Counter = Counter()
        self.steps_answered = 0
        self.sent = 0
        self.timeouts = 0

    # valid messages --------------------------------------------------------------------------------------
    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def hello(self) -> dict:
        return {"type": "hello", "seq": self._next_seq(), "protocol": "aql-bridge", "version": [1, 0],
                "engine": "fuzz", "env": json.loads(json.dumps(self.env))}

    def step(self, agent: str | None = None) -> dict:
        self.frame += 1
        shape = self.env["observation"]["shape"]
        message = {"type": "step", "seq": self._next_seq(), "session": self.session,
                   "agent": agent or self.rng.choice(self.env["agents"]), "episode": self.episode, "frame": self.frame,
                   "observation": np.asarray([self.rng.uniform(-1, 1) for _ in range(int(np.prod(shape)))],
                                             "<f4").tobytes(), "reward": 0.5}
        if self.env.get("action_mask"):
            mask = [self.rng.randint(0, 1) for _ in range(self.env["action"]["n"])]
            mask[self.rng.randrange(len(mask))] = 1
            message["action_mask"] = bytes(mask)
        return message

    def end(self) -> dict:
        self.frame += 1
        message = {"type": "end", "seq": self._next_seq(), "session": self.session, "agent": self.env["agents"][0],
                   "episode": self.episode, "frame": self.frame, "observation": None, "reward": 1.0,
                   "terminated": True, "truncated": False, "outcome": "win"}
        return message

    def heartbeat(self) -> dict:
        return {"type": "heartbeat", "seq": self._next_seq(), "session": self.session}

    def bye(self) -> dict:
        return {"type": "bye", "seq": self._next_seq(), "session": self.session}

    # sending ---------------------------------------------------------------------------------------------
    def send(self, frames: list[bytes], valid_step: bool = False) -> dict | None:
        self.sent += 1
        reply = self.client.ask(frames)
        if reply is None:
            self.timeouts += 1
            self.replies["(no reply: timeout)"] += 1
            return None
        label = reply.get("type") if reply.get("type") != "error" else f"error:{reply.get('code')}"
        self.replies[str(label)] += 1
        if reply.get("type") == "action":
            self.steps_answered += 1
        return reply

    def send_message(self, message: dict) -> dict | None:
        return self.send([msgpack.packb(message, use_bin_type=True)])

    def open_session(self) -> None:
        reply = self.send_message(self.hello())
        self.session = reply.get("session") if reply and reply.get("type") == "welcome" else None
        self.episode += 1
        self.frame = 0

    # hostile messages ------------------------------------------------------------------------------------
    def malformed_frames(self) -> list[bytes]:
        rng = self.rng
        choice = rng.randrange(9)
        if choice == 0:
            return [rng.randbytes(rng.randint(0, 64))]
        if choice == 1:
            return [msgpack.packb(rng.choice([[1, 2], 7, "step", None, b"bin", 1.5]))]
        if choice == 2:
            return [msgpack.packb({1: "step", b"type": "step"}, use_bin_type=True)]
        if choice == 3:
            good = msgpack.packb(self.step(), use_bin_type=True)
            return rng.choice([[good, good], [b"", b"", good], [b"x", good], [good, b""]])
        if choice == 4:
            return [b""]
        if choice == 5:
            return [b"\x81\xa4type" + _nested(rng.choice([33, 100, 5000]))]  # {"type": [[[...]]]}
        if choice == 6:  # over the limit, by a little (refused unread) or by more (libzmq drops the sender)
            return [msgpack.packb({"type": "step", "pad": b"\x00" * (self.max_bytes + rng.choice([1, 100]))},
                                  use_bin_type=True)]
        if choice == 7:
            message = self.step()
            message["observation"] = b"\x00" * rng.choice([0, 1, 15, 17, 4096])
            return [msgpack.packb(message, use_bin_type=True)]
        cut = msgpack.packb(self.step(), use_bin_type=True)
        return [cut[:rng.randrange(1, len(cut))]]

    def hostile_message(self) -> dict:
        rng = self.rng
        base = rng.choice([self.hello, self.step, self.step, self.step, self.end, self.heartbeat, self.bye])()
        message = _mutate_value(base, rng)
        if not isinstance(message, dict):
            message = {"type": "step", "value": message}
        if rng.random() < 0.1:
            message["type"] = rng.choice(["STEP", "action", "welcome", "", "x" * 50, 3])
        return message

    def run(self, frames: int, report_every: int = 2000) -> None:
        rng = self.rng
        self.open_session()
        while self.sent < frames:
            roll = rng.random()
            if self.session is None or roll < 0.02:
                if self.session is not None and rng.random() < 0.9:  # else abandoned: the agent times it out
                    self.send_message(self.bye())
                self.open_session()
                continue
            if roll < 0.30:
                for agent in self.env["agents"]:
                    self.send_message(self.step(agent))
            elif roll < 0.33:
                self.send_message(self.end())
                self.episode += 1
            elif roll < 0.70:
                message = self.hostile_message()
                reply = self.send_message(message)
                if reply and reply.get("type") == "welcome":  # a hostile hello that was still a valid one
                    self.send_message({"type": "bye", "seq": self._next_seq(), "session": reply.get("session")})
                if reply and reply.get("type") == "ack" and message.get("type") == "bye" \
                        and message.get("session") == self.session:
                    self.session = None
            else:
                self.send(self.malformed_frames())
            if self.sent // report_every > (self.sent - 3) // report_every:
                print(f"  {self.env['id']}: {self.sent}/{frames} frames", flush=True)
        if self.session is not None:
            self.send_message(self.bye())


def _start_agent(argv: list[str], endpoint: str, output: str) -> subprocess.Popen:
    """`aql deploy` with stdout and stderr in files (a pipe nobody reads would block it once full)."""
    process = subprocess.Popen([sys.executable, "-m", "aql_agent", "deploy", *argv, "--bind", endpoint],
                               stdout=open(output + ".stdout", "w"), stderr=open(output + ".stderr", "w"), cwd=ROOT)
    deadline = time.monotonic() + 120
    while not open(output + ".stdout").readline().startswith("{"):  # one JSON line once it serves
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"agent did not start: {open(output + '.stderr').read()[-2000:]}")
        time.sleep(0.1)
    return process


def fuzz_bridge(frames: int, seed: int, work: str) -> dict[str, Any]:
    from aql_agent.adapters.gym import make_env, random_policy, record_episodes
    from aql_agent.data import convert

    log = os.path.join(work, "pendulum.aqlog")
    env = make_env("Pendulum-v1", seed=0)
    record_episodes(env, random_policy(env), log, episodes=2, seed=0, progress=False)
    convert(log, os.path.join(work, "pendulum.npz"))
    assert _run(["train", "--algo", "sac", "--data", os.path.join(work, "pendulum.npz"), "--out",
                os.path.join(work, "checkpoint"), "--steps", "5", "--no-progress", "--no-tensorboard",
                "--set", "hidden=[32,32]"])[0] in ("clean", "warned")
    max_bytes = 65536
    agents = {
        "recording agent (--policy random --record)": (
            ["--policy", "random", "--record", os.path.join(work, "recorded"), "--max-message-bytes",
             str(max_bytes)], DISCRETE_ENV),
        "checkpoint agent (--checkpoint, torch)": (
            ["--checkpoint", os.path.join(work, "checkpoint"), "--backend", "torch", "--max-message-bytes",
             str(max_bytes)], CONTINUOUS_ENV),
    }
    results = {}
    for n, (name, (argv, env)) in enumerate(agents.items()):
        endpoint = f"tcp://127.0.0.1:{_free_port()}"
        output = os.path.join(work, f"agent-{n}")
        process = _start_agent(argv, endpoint, output)
        fuzzer = BridgeFuzzer(Client(endpoint), env, random.Random(seed + n), max_bytes)
        started = time.perf_counter()
        fuzzer.run(min(500, frames))
        rss_warm = _rss_mib(process.pid)
        fuzzer.run(frames)
        seconds = time.perf_counter() - started
        rss_end = _rss_mib(process.pid)
        alive = process.poll() is None
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        stdout = open(output + ".stdout").read()
        stats = next((json.loads(line)["stopped"] for line in stdout.splitlines() if line.startswith('{"stopped"')), {})
        stderr = open(output + ".stderr").read()
        result = {"frames": fuzzer.sent, "seconds": seconds, "replies": dict(fuzzer.replies.most_common()),
                  "timeouts": fuzzer.timeouts, "alive_at_end": alive, "exit_status": process.returncode,
                  "tracebacks": stderr.count("Traceback"), "rss_mib_after_warmup": rss_warm,
                  "rss_mib_at_end": rss_end, "steps_answered": fuzzer.steps_answered, "agent_stats": stats}
        if "--record" in argv:
            folder = argv[argv.index("--record") + 1]
            recorded, problems = 0, []
            for file in sorted(os.listdir(folder)):
                if ".aqlog" not in file:
                    continue
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        recorded += sum(1 for _ in ReplayReader(os.path.join(folder, file)).steps())
                except Exception as exc:  # a log the agent wrote that does not read back
                    problems.append(f"{file}: {exc}")
            unrecorded = stats.get("decisions_unrecorded", 0)
            result.update({"logs": sum(".aqlog" in f for f in os.listdir(folder)), "steps_recorded": recorded,
                           "unreadable_logs": problems,
                           "recorded_plus_unrecorded_equals_answered": recorded + unrecorded == fuzzer.steps_answered})
        results[name] = result
        print(f"{name}: {json.dumps(result)}", flush=True)
    return results


def plot(report: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 1 + len(report.get("bridge", {})), figsize=(6 + 5 * len(report.get("bridge", {})), 4.5))
    axes = np.atleast_1d(axes)
    if "logs" in report:
        totals = report["logs"]["totals"]
        axes[0].barh(list(totals), list(totals.values()), color="tab:blue")
        axes[0].set_title(f"{report['logs']['runs']} commands on {report['logs']['logs']} corrupted logs")
        axes[0].set_xscale("log")
    for ax, (name, result) in zip(axes[1:], report.get("bridge", {}).items()):
        replies = dict(list(result["replies"].items())[:14])
        ax.barh(list(replies), list(replies.values()), color="tab:orange")
        ax.set_title(f"{name}\n{result['frames']} frames, RSS {result['rss_mib_after_warmup']:.0f} -> "
                     f"{result['rss_mib_at_end']:.0f} MiB", fontsize=9)
        ax.set_xscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logs", type=int, default=2000, help="corrupted logs (each read by inspect and convert)")
    parser.add_argument("--frames", type=int, default=10000, help="frames sent to each of the two agents")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "robustness"), help="output stem")
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    report: dict[str, Any] = {"settings": vars(args)}
    with tempfile.TemporaryDirectory() as work:
        if args.logs:
            report["logs"] = fuzz_logs(args.logs, args.seed, os.path.join(work, "logs"))
        if args.frames:
            os.makedirs(os.path.join(work, "bridge"))
            report["bridge"] = fuzz_bridge(args.frames, args.seed, os.path.join(work, "bridge"))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(report, f, indent=1)
    plot(report, args.out + ".png")
    print(json.dumps({k: v for k, v in report.get("logs", {}).items() if k in ("runs", "totals")}))


if __name__ == "__main__":
    main()
