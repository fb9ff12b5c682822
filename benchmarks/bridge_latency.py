"""Decision round trips over the bridge against a bare pyzmq REQ/REP echo of the same bytes, in one run.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bridge_latency.py     # writes benchmarks/results/bridge_latency.*

1. **floor**: a REQ socket sends a moba-1v1 step message (130 float32 + 53-byte mask, msgpack) to a REP echo in
   another process, which returns the bytes unchanged.
2. **bridge, one engine**: `EngineClient.act` against `aql deploy` (another process) serving an MLP checkpoint
   (discrete AQL, 256-256 networks, moba-1v1's 130 -> 53 shapes): encode, send, validate, policy inference,
   reply, decode. Latency p50 / p99 and decisions per second.
3. **bridge, several engines**: `--engines` processes, each a client in a loop, against the same agent:
   total decisions per second (the agent batches requests that arrive together).
4. **soak**: `--soak` decisions from one engine, every reply checked for its seq, episode, frame and agent.

Targets (issue 7): p99 <= 1 ms with an MLP policy on loopback, overhead over the bare echo <= 2x,
>= 5k decisions/s with several engines, zero lost or mismatched replies in the soak.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def step_payload() -> bytes:
    from aql_agent.adapters.bridge import protocol as p

    rng = np.random.default_rng(0)
    return p.encode({"type": "step", "seq": 1, "session": "0123456789abcdef", "agent": "blue", "episode": 0,
                     "frame": 1, "observation": rng.normal(size=130).astype(np.float32).tobytes(),
                     "action_mask": bytes(53), "reward": 0.0})


def echo_server(endpoints) -> None:
    import zmq

    socket = zmq.Context.instance().socket(zmq.REP)
    socket.bind("tcp://127.0.0.1:*")
    endpoints.put(socket.getsockopt_string(zmq.LAST_ENDPOINT))
    while True:
        message = socket.recv()
        if message == b"stop":
            socket.send(b"")
            return
        socket.send(message)


def measure_floor(count: int) -> np.ndarray:
    import zmq

    endpoints = multiprocessing.Queue()
    server = multiprocessing.Process(target=echo_server, args=(endpoints,), daemon=True)
    server.start()
    socket = zmq.Context.instance().socket(zmq.REQ)
    socket.connect(endpoints.get(timeout=30))
    payload = step_payload()
    times = np.empty(count)
    for i in range(count + 200):
        started = time.perf_counter()
        socket.send(payload)
        socket.recv()
        if i >= 200:
            times[i - 200] = time.perf_counter() - started
    socket.send(b"stop")
    socket.recv()
    socket.close(0)
    server.join(5)
    return times


def make_checkpoint(folder: str) -> str:
    from aql_agent.checkpoint import Preprocessing, save_checkpoint
    from aql_agent.learners import make_learner

    learner = make_learner("aql-discrete", 130, 53)
    return save_checkpoint(os.path.join(folder, "aql-discrete"), learner, Preprocessing.identity(130, 0), step=0)


def client_loop(endpoint: str, count: int, seconds: float | None, results, index: int) -> None:
    """One engine: `count` decisions (or as many as fit in `seconds`); reports latencies and mismatches."""
    import torch

    torch.set_num_threads(1)
    from aql_agent.adapters.bridge.engine import EngineClient
    from aql_agent.adapters.bridge.moba_engine import moba_spec

    rng = np.random.default_rng(index)
    client = EngineClient(endpoint, moba_spec(5.0), timeout_s=5.0, fallback_action=-1)
    client.connect()
    observation = rng.normal(size=130).astype(np.float32)
    mask = rng.random(53) < 0.6
    mask[0] = True
    for warm in range(100):
        client.act("blue", -1, warm, observation, mask)
    client.latencies.clear()
    illegal = 0
    done, started = 0, time.perf_counter()
    deadline = started + seconds if seconds else None
    while (done < count) if deadline is None else (time.perf_counter() < deadline):
        action = client.act("blue", index, done, observation, mask)  # the client checks seq, episode, frame, agent
        illegal += action == -1 or not mask[action]
        done += 1
    elapsed = time.perf_counter() - started
    client.close()
    results.put({"index": index, "decisions": done, "seconds": elapsed,
                 "mismatched": client.stats["mismatched"] + client.stats["stale_replies"] + illegal,
                 "fallbacks": client.stats["fallbacks"], "timeouts": client.stats["timeouts"],
                 "latencies": client.latencies[-done:] if seconds is None else []})


def run_clients(endpoint: str, engines: int, count: int, seconds: float | None) -> list[dict]:
    results = multiprocessing.Queue()
    processes = [multiprocessing.Process(target=client_loop, args=(endpoint, count, seconds, results, i))
                 for i in range(engines)]
    for process in processes:
        process.start()
    collected = [results.get(timeout=600) for _ in processes]
    for process in processes:
        process.join(10)
    return collected


def summary(latencies: np.ndarray) -> dict:
    ms = latencies * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean()), "per_s": float(1 / latencies.mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=10_000, help="round trips for the latency figures")
    parser.add_argument("--engines", type=int, default=4, help="engine processes for the throughput figure")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the several-engines run")
    parser.add_argument("--soak", type=int, default=100_000, help="decisions in the soak run (0: skip)")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "bridge_latency"))
    args = parser.parse_args()
    multiprocessing.set_start_method("spawn", force=True)

    floor = measure_floor(args.count)
    print("floor (REQ/REP echo):", summary(floor), flush=True)
    workdir = tempfile.mkdtemp()
    checkpoint = make_checkpoint(workdir)
    agent = subprocess.Popen([sys.executable, "-m", "aql_agent", "deploy", "--checkpoint", checkpoint, "--bind",
                              "tcp://127.0.0.1:*", "--threads", "1"], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    endpoint = json.loads(agent.stdout.readline())["endpoint"]
    try:
        one = run_clients(endpoint, 1, args.count, None)[0]
        bridge = np.array(one["latencies"])
        print("bridge, one engine:", summary(bridge), flush=True)
        several = run_clients(endpoint, args.engines, 0, args.seconds)
        total = sum(r["decisions"] for r in several) / max(r["seconds"] for r in several)
        print(f"bridge, {args.engines} engines: {total:.0f} decisions/s", flush=True)
        soak = run_clients(endpoint, 1, args.soak, None)[0] if args.soak else None
        if soak:
            print(f"soak: {soak['decisions']} decisions, {soak['mismatched']} mismatched, {soak['fallbacks']} "
                  f"fallbacks", flush=True)
    finally:
        agent.terminate()
        agent.wait(10)
    record = {
        "floor_req_rep_echo": summary(floor), "bridge_one_engine": summary(bridge),
        "overhead_p50": summary(bridge)["p50_ms"] / summary(floor)["p50_ms"],
        "overhead_p99": summary(bridge)["p99_ms"] / summary(floor)["p99_ms"],
        "several_engines": {"engines": args.engines, "decisions_per_s": total,
                            "mismatched": sum(r["mismatched"] for r in several),
                            "fallbacks": sum(r["fallbacks"] for r in several)},
        "soak": None if not soak else {k: soak[k] for k in ("decisions", "mismatched", "fallbacks", "timeouts",
                                                            "seconds")},
        "policy": "aql-discrete checkpoint, 256-256 networks, 130 -> 53, one torch thread",
        "payload_bytes": len(step_payload()), "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(record, f, indent=2)
    plot(floor, bridge, record, args.out + ".png")
    print(json.dumps({k: v for k, v in record.items()}, indent=2))


def plot(floor: np.ndarray, bridge: np.ndarray, record: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    bins = np.logspace(np.log10(min(floor.min(), bridge.min()) * 1000), np.log10(max(floor.max(), bridge.max())
                                                                                  * 1000), 60)
    ax.hist(floor * 1000, bins=bins, alpha=0.6, label=f"pyzmq REQ/REP echo (p99 {record['floor_req_rep_echo']['p99_ms']:.3f} ms)")
    ax.hist(bridge * 1000, bins=bins, alpha=0.6,
            label=f"bridge + MLP policy (p99 {record['bridge_one_engine']['p99_ms']:.3f} ms)")
    ax.set_xscale("log")
    ax.set(xlabel="round trip (ms, log)", ylabel="requests",
           title=f"decision round trips on loopback; {record['several_engines']['engines']} engines: "
                 f"{record['several_engines']['decisions_per_s']:.0f}/s")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
