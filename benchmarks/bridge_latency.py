"""Decision round trips over the bridge against a bare pyzmq REQ/REP echo of the same bytes, in one run.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bridge_latency.py     # writes benchmarks/results/bridge_latency.*

Targets, each served by its own process, all up at once:

* **echo** (the floor): a REP socket that returns a moba-1v1 step message (130 float32 + 53-byte mask,
  msgpack) unchanged;
* **bridge, random policy**: `aql deploy --policy random`: the bridge's own cost (validation, batching,
  replies) with next to no inference;
* **bridge, MLP policy**: `aql deploy` serving a discrete BC checkpoint, one 256-256 MLP, 130 -> 53, run by
  torch (`--backend torch`) and as an ONNX graph by ONNX Runtime (`--backend onnx`, the default when the
  serve extra is installed);
* **bridge, AQL policy**: a discrete AQL checkpoint (Q network, base and residual imitation networks), both
  backends.

One engine (`EngineClient.act`: encode, send, validate, infer, reply, decode, check) visits the targets in
turn, `--rounds` rounds of `count / rounds` requests each, so a slow spell of the machine (a shared 2-core VM
swings 2x) lands on every target alike; ratios are taken within the run. Then `--engines` engine processes
in a loop against the MLP agents (and against the echo) for decisions per second, and a soak of `--soak`
decisions from one engine against the ONNX MLP agent with every reply checked for its seq, episode, frame
and agent.

Targets (issue 7): p99 <= 1 ms with an MLP policy on loopback, overhead over the bare echo <= 2x,
>= 5k decisions/s with several engines, zero lost or mismatched replies in a 100k soak.
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
OBSERVATIONS, ACTIONS = 130, 53


def step_payload() -> bytes:
    from aql_agent.adapters.bridge import protocol as p

    rng = np.random.default_rng(0)
    return p.encode({"type": "step", "seq": 1, "session": "0123456789abcdef", "agent": "blue", "episode": 0,
                     "frame": 1, "observation": rng.normal(size=OBSERVATIONS).astype(np.float32).tobytes(),
                     "action_mask": bytes(ACTIONS), "reward": 0.0})


def echo_server(endpoints) -> None:
    import zmq

    socket = zmq.Context.instance().socket(zmq.REP)
    socket.bind("tcp://127.0.0.1:*")
    endpoints.put(socket.getsockopt_string(zmq.LAST_ENDPOINT))
    while True:
        socket.send(socket.recv())


class Echo:
    """The floor: one REQ/REP round trip of the step message's bytes."""

    def __init__(self, endpoint: str):
        import zmq

        self.socket = zmq.Context.instance().socket(zmq.REQ)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(endpoint)
        self.payload = step_payload()
        self.latencies: list[float] = []

    def decide(self, frame: int) -> None:
        started = time.perf_counter()
        self.socket.send(self.payload)
        self.socket.recv()
        self.latencies.append(time.perf_counter() - started)


class Engine:
    """One engine session: decisions through `EngineClient.act`, every reply checked."""

    def __init__(self, endpoint: str, seed: int):
        from aql_agent.adapters.bridge.engine import EngineClient
        from aql_agent.adapters.games import DEFAULT_GAME, game_kind

        rng = np.random.default_rng(seed)
        self.client = EngineClient(endpoint, game_kind(DEFAULT_GAME).bridge_spec(), timeout_s=5.0, fallback_action=-1)
        self.client.connect()
        self.client.latencies.clear()  # the handshake's round trip is not a decision
        self.episode = seed
        self.observation = rng.normal(size=OBSERVATIONS).astype(np.float32)
        self.mask = rng.random(ACTIONS) < 0.6
        self.mask[0] = True
        self.illegal = 0
        self.latencies = self.client.latencies

    def decide(self, frame: int) -> None:
        action = self.client.act("blue", self.episode, frame, self.observation, self.mask)
        self.illegal += action == -1 or not self.mask[action]

    def faults(self) -> dict[str, int]:
        stats = self.client.stats
        return {"mismatched": stats["mismatched"] + stats["stale_replies"] + self.illegal,
                "fallbacks": stats["fallbacks"], "timeouts": stats["timeouts"]}


def connect(kind: str, endpoint: str, seed: int) -> Echo | Engine:
    return Echo(endpoint) if kind == "echo" else Engine(endpoint, seed)


def throughput_worker(kind: str, endpoint: str, seconds: float, seed: int, results) -> None:
    target = connect(kind, endpoint, seed)
    for frame in range(100):
        target.decide(frame)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        target.decide(100 + done)
        done += 1
    elapsed = time.perf_counter() - started
    results.put({"decisions": done, "seconds": elapsed,
                 **(target.faults() if isinstance(target, Engine) else {})})


def throughput(kind: str, endpoint: str, engines: int, seconds: float) -> dict:
    results = multiprocessing.Queue()
    workers = [multiprocessing.Process(target=throughput_worker, args=(kind, endpoint, seconds, i, results))
               for i in range(engines)]
    for worker in workers:
        worker.start()
    collected = [results.get(timeout=seconds + 120) for _ in workers]
    for worker in workers:
        worker.join(10)
    total = {"engines": engines, "decisions_per_s": sum(r["decisions"] for r in collected)
             / max(r["seconds"] for r in collected)}
    for key in ("mismatched", "fallbacks", "timeouts"):
        if key in collected[0]:
            total[key] = sum(r[key] for r in collected)
    return total


def make_checkpoint(folder: str, algo: str) -> str:
    from aql_agent.checkpoint import Preprocessing, save_checkpoint
    from aql_agent.learners import make_learner

    learner = make_learner(algo, OBSERVATIONS, ACTIONS)
    return save_checkpoint(os.path.join(folder, algo), learner, Preprocessing.identity(OBSERVATIONS, 0), step=0)


def start_agent(*source: str) -> tuple[subprocess.Popen, str]:
    agent = subprocess.Popen([sys.executable, "-m", "aql_agent", "deploy", *source, "--bind", "tcp://127.0.0.1:*",
                              "--threads", "1"], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    return agent, json.loads(agent.stdout.readline())["endpoint"]


def summary(latencies: list[float] | np.ndarray) -> dict:
    ms = np.asarray(latencies) * 1000
    return {"requests": len(ms), "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean()), "per_s": float(1000 / ms.mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=20_000, help="round trips per target for the latency figures")
    parser.add_argument("--rounds", type=int, default=40, help="the targets take turns this many times")
    parser.add_argument("--engines", type=int, nargs="+", default=[2, 4, 8],
                        help="engine processes for the throughput figures (one run per count)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each several-engines run")
    parser.add_argument("--soak", type=int, default=100_000, help="decisions in the soak run (0: skip)")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "bridge_latency"))
    args = parser.parse_args()
    multiprocessing.set_start_method("spawn", force=True)

    workdir = tempfile.mkdtemp()
    endpoints = multiprocessing.Queue()
    echo = multiprocessing.Process(target=echo_server, args=(endpoints,), daemon=True)
    echo.start()
    mlp, aql = make_checkpoint(workdir, "bc-discrete"), make_checkpoint(workdir, "aql-discrete")
    agents = {"random": start_agent("--policy", "random"),
              "mlp_torch": start_agent("--checkpoint", mlp, "--backend", "torch"),
              "mlp_onnx": start_agent("--checkpoint", mlp, "--backend", "onnx"),
              "aql_torch": start_agent("--checkpoint", aql, "--backend", "torch"),
              "aql_onnx": start_agent("--checkpoint", aql, "--backend", "onnx")}
    endpoint = {"echo": endpoints.get(timeout=30), **{name: agent[1] for name, agent in agents.items()}}
    try:
        targets = {name: connect(name if name == "echo" else "engine", address, i)
                   for i, (name, address) in enumerate(endpoint.items())}
        for target in targets.values():
            for frame in range(200):
                target.decide(frame)
            target.latencies.clear()
        per_round = max(1, args.count // args.rounds)
        for round_index in range(args.rounds):
            for target in targets.values():
                for i in range(per_round):
                    target.decide(1000 + round_index * per_round + i)
        latency = {name: summary(target.latencies) for name, target in targets.items()}
        for name, figures in latency.items():
            print(f"{name:>9}: p50 {figures['p50_ms']:.3f} ms  p99 {figures['p99_ms']:.3f} ms", flush=True)
        faults = {name: target.faults() for name, target in targets.items() if isinstance(target, Engine)}
        several = []
        for engines in args.engines:
            several.append({"engines": engines,
                            "echo": throughput("echo", endpoint["echo"], engines, args.seconds),
                            **{name: throughput("engine", endpoint[name], engines, args.seconds)
                               for name in ("mlp_torch", "mlp_onnx")}})
            print(f"{engines} engines: " + ", ".join(f"{name} {several[-1][name]['decisions_per_s']:.0f}/s"
                                                     for name in ("echo", "mlp_torch", "mlp_onnx")), flush=True)
        soak = None
        if args.soak:
            engine, started = Engine(endpoint["mlp_onnx"], 99), time.perf_counter()
            for frame in range(args.soak):
                engine.decide(frame)
            soak = {"decisions": args.soak, **engine.faults(), "seconds": time.perf_counter() - started,
                    "answered": len(engine.latencies)}
            print(f"soak: {soak}", flush=True)
    finally:
        for agent, _ in agents.values():
            agent.terminate()
            agent.wait(10)
        echo.terminate()
    floor = latency["echo"]
    record = {
        "latency": latency,
        "overhead_vs_echo": {name: {"p50": latency[name]["p50_ms"] / floor["p50_ms"],
                                    "p99": latency[name]["p99_ms"] / floor["p99_ms"]}
                             for name in latency if name != "echo"},
        "faults": faults, "several_engines": several, "soak": soak,
        "targets": {"p99_mlp_le_1ms": latency["mlp_onnx"]["p99_ms"] <= 1.0,
                    "overhead_mlp_p50_le_2x": latency["mlp_onnx"]["p50_ms"] / floor["p50_ms"] <= 2.0,
                    "several_engines_ge_5k_per_s": max(s["mlp_onnx"]["decisions_per_s"] for s in several) >= 5000,
                    "soak_clean": bool(soak and soak["decisions"] >= 100_000 and soak["answered"] == soak["decisions"]
                                       and not (soak["mismatched"] or soak["fallbacks"] or soak["timeouts"]))},
        "policies": {"mlp": "bc-discrete checkpoint, one 256-256 MLP, 130 -> 53",
                     "aql": "aql-discrete checkpoint: Q, base and residual imitation networks (256-256 each)",
                     "backends": "torch (one thread) or ONNX Runtime (one thread) in the agent process",
                     "targets_measured_on": "mlp_onnx, aql deploy's default backend with the serve extra"},
        "rounds": args.rounds, "payload_bytes": len(step_payload()),
        "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(record, f, indent=2)
    plot({name: np.asarray(target.latencies) for name, target in targets.items()}, record, args.out + ".png")
    print(json.dumps(record, indent=2))


def plot(latencies: dict[str, np.ndarray], record: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {"echo": "pyzmq REQ/REP echo (floor)", "random": "bridge, random policy",
              "mlp_torch": "bridge, MLP, torch", "mlp_onnx": "bridge, MLP, ONNX Runtime",
              "aql_torch": "bridge, discrete AQL, torch", "aql_onnx": "bridge, discrete AQL, ONNX Runtime"}
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, values in latencies.items():
        ms = np.sort(values) * 1000
        left.plot(ms, np.arange(1, len(ms) + 1) / len(ms),
                  label=f"{labels[name]}: p50 {np.percentile(ms, 50):.3f}, p99 {np.percentile(ms, 99):.3f} ms")
    left.axvline(1.0, color="grey", linestyle=":", linewidth=1)
    left.set(xscale="log", xlabel="round trip (ms, log)", ylabel="fraction of requests",
             title=f"one engine, targets interleaved ({record['rounds']} rounds)")
    left.legend(fontsize=7, loc="lower right")
    several = record["several_engines"]
    x = np.arange(len(several))
    for offset, (name, label) in zip((-0.27, 0.0, 0.27), (("echo", "echo (floor)"), ("mlp_torch", "bridge, MLP, torch"),
                                                           ("mlp_onnx", "bridge, MLP, ONNX Runtime"))):
        right.bar(x + offset, [s[name]["decisions_per_s"] for s in several], 0.27, label=label)
    right.axhline(5000, color="grey", linestyle=":", linewidth=1)
    right.set_xticks(x, [f"{s['engines']} engines" for s in several])
    right.set(ylabel="decisions / s (all engines)", title="engine processes in a loop, one agent")
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
