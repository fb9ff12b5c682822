"""Replay logs to a dataset: serial `aql convert` against `aql convert --workers N` (Ray), side by side.

    python benchmarks/parallel_convert.py --logs 20 --steps-per-log 50000     # 1M steps

Writes `--logs` synthetic single-agent logs (Hopper-sized: 11 float32 observations, 3 float32 actions, episodes
of 1000 steps), then times the serial conversion to one .npz and the Ray conversion to shards with 1 and 2
workers (wall-clock, after `ray.init`), checking every time that the shards hold exactly the serial rows.
Writes benchmarks/results/parallel_convert.json and .png.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from aql_agent.data import load_dataset  # noqa: E402
from aql_agent.data.formats import convert  # noqa: E402
from aql_agent.replay import ReplayWriter  # noqa: E402


def write_logs(folder: str, logs: int, steps: int, seed: int = 0) -> None:
    from gymnasium import spaces

    rng = np.random.default_rng(seed)
    observation, action = spaces.Box(-10, 10, (11,), np.float32), spaces.Box(-1, 1, (3,), np.float32)
    for n in range(logs):
        with ReplayWriter(os.path.join(folder, f"log-{n:03d}.aqlog"), "Hopper-v5", observation, action) as writer:
            observations = rng.normal(size=(steps + 1, 11)).astype(np.float32)
            actions = rng.uniform(-1, 1, (steps, 3)).astype(np.float32)
            rewards = rng.normal(size=steps)
            for start in range(0, steps, 1000):
                writer.begin_episode(seed=n * 1000 + start)
                end = min(start + 1000, steps)
                for t in range(start, end):
                    writer.add_step(observations[t], actions[t], float(rewards[t]), False, t == end - 1)
                writer.end_episode(final_observation=observations[end])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logs", type=int, default=20)
    parser.add_argument("--steps-per-log", type=int, default=50_000)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "parallel_convert"), help="output stem")
    args = parser.parse_args()
    steps = args.logs * args.steps_per_log
    with tempfile.TemporaryDirectory() as work:
        logs = os.path.join(work, "logs")
        os.makedirs(logs)
        started = time.perf_counter()
        write_logs(logs, args.logs, args.steps_per_log)
        print(f"wrote {steps} steps in {time.perf_counter() - started:.1f} s", flush=True)
        started = time.perf_counter()
        convert(logs, os.path.join(work, "serial.npz"))
        runs = {"serial": time.perf_counter() - started}
        serial = load_dataset(os.path.join(work, "serial.npz"))
        os.environ.setdefault("RAY_TMPDIR", os.path.join(work, "ray"))
        from aql_agent.distributed import convert_parallel, start_ray

        started = time.perf_counter()
        ray = start_ray(2)
        ray_init = time.perf_counter() - started
        for workers in (1, 2):
            destination = os.path.join(work, f"shards-{workers}")
            started = time.perf_counter()
            convert_parallel(logs, destination, workers=workers, progress=False)
            runs[f"ray, {workers} worker{'s' * (workers > 1)}"] = time.perf_counter() - started
            joined = load_dataset(destination)
            for name in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts"):
                assert np.array_equal(getattr(joined, name), getattr(serial, name)), name
        ray.shutdown()
    report = {"steps": steps, "logs": args.logs, "cpus": os.cpu_count(), "ray_init_seconds": ray_init,
              "runs": {name: {"seconds": seconds, "steps_per_second": steps / seconds,
                              "speed_vs_serial": runs["serial"] / seconds} for name, seconds in runs.items()}}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(report, f, indent=1)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2.6))
    names = list(report["runs"])
    ax.barh(names, [report["runs"][n]["steps_per_second"] / 1e6 for n in names], color="tab:blue")
    ax.set_xlabel(f"million steps converted per second ({steps:,} steps in {args.logs} logs; same rows)")
    fig.tight_layout()
    fig.savefig(args.out + ".png", dpi=110)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
