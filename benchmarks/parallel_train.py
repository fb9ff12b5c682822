"""Data-parallel training: one process against `aql train --workers 2` (Ray Train), side by side.

    python benchmarks/parallel_train.py --algos bc aql --batches 256 2048

On hopper-medium, for each learner and global batch size: updates/s of one process with 1 torch thread, one
process with 2 threads (the other way to use a second core), and 2 data-parallel workers of 1 thread each
(`training.train` through `distributed.train_parallel`, the training loop's own clock: Ray's start-up is
reported apart), `--repeats` times interleaved. The same seed everywhere; the final metrics of the 1-thread and
2-worker runs are compared, as a check that both did the same work. Writes
benchmarks/results/parallel_train.json and .png.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from aql_agent.distributed import start_ray, train_parallel  # noqa: E402
from aql_agent.training import TrainSettings, train  # noqa: E402

WAYS = ["1 process, 1 thread", "1 process, 2 threads", "2 workers (Ray Train)"]
DEFAULT_DATA = os.path.join(HERE, "..", "..", "shared", "datasets", "hopper-medium.npz")


def settings(algo: str, data: str, out: str, steps: int, batch: int) -> TrainSettings:
    return TrainSettings(algo=algo, data=data, out=out, steps=steps, seed=0, env="Hopper-v5", eval_every=10 ** 9,
                         log_every=steps, checkpoint_every=steps, progress=False, tensorboard=False,
                         learner={"batch_size": batch})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algos", nargs="+", default=["bc", "aql"])
    parser.add_argument("--batches", nargs="+", type=int, default=[256, 2048])
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--seconds", type=float, default=20.0, help="rough length of each timed run")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repetitions of the three ways")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "parallel_train"), help="output stem")
    args = parser.parse_args()
    started = time.perf_counter()
    start_ray(2)
    ray_start = time.perf_counter() - started
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for algo in args.algos:
            for batch in args.batches:
                torch.set_num_threads(1)  # a short probe sizes the timed runs to about --seconds each
                probe = train(settings(algo, args.data, os.path.join(work, f"probe-{algo}-{batch}"), 20, batch))
                steps = max(40, int(args.seconds * 20 / probe["seconds"]) // 10 * 10)
                row = {"algo": algo, "batch": batch, "steps": steps, "repeats": args.repeats}
                rates: dict[str, list[float]] = {way: [] for way in WAYS}
                for repeat in range(args.repeats):  # interleaved: this machine's speed drifts minute to minute
                    for way, threads in zip(WAYS[:2], (1, 2)):
                        torch.set_num_threads(threads)
                        out = os.path.join(work, f"{algo}-{batch}-{threads}-{repeat}")
                        summary = train(settings(algo, args.data, out, steps, batch))
                        rates[way].append(steps / summary["seconds"])
                        if threads == 1:
                            row["metrics_one_process"] = summary["metrics"]
                    wall = time.perf_counter()
                    folder = os.path.join(work, f"{algo}-{batch}-ddp-{repeat}")
                    summary = train_parallel(settings(algo, args.data, folder, steps, batch), workers=2)
                    rates[WAYS[2]].append(steps / summary["seconds"])
                    row.setdefault("ray_train_start_s", []).append(time.perf_counter() - wall - summary["seconds"])
                    row["metrics_2_workers"] = summary["metrics"]
                for way in WAYS:
                    row[way] = float(np.mean(rates[way]))
                    row[way + " (per repeat)"] = rates[way]
                    row["speedup " + way] = float(np.mean([r / base for r, base in zip(rates[way], rates[WAYS[0]])]))
                    row["speedup range " + way] = [min(r / base for r, base in zip(rates[way], rates[WAYS[0]])),
                                                   max(r / base for r, base in zip(rates[way], rates[WAYS[0]]))]
                rows.append(row)
                print(json.dumps({k: v for k, v in row.items() if not k.startswith("metrics")}), flush=True)
    result = {"benchmark": "parallel_train", "data": os.path.basename(args.data), "ray_init_s": ray_start,
              "cpus": os.cpu_count(), "torch": torch.__version__, "rows": rows}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(result, f, indent=1)
    plot(result, args.out + ".png")


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.8 / len(WAYS)
    for i, way in enumerate(WAYS):
        low = [row["speedup " + way] - row["speedup range " + way][0] for row in rows]
        high = [row["speedup range " + way][1] - row["speedup " + way] for row in rows]
        ax.bar([j + i * width for j in range(len(rows))], [row["speedup " + way] for row in rows], width,
               yerr=[low, high], label=way)
    ax.set_xticks([j + width for j in range(len(rows))], [f"{row['algo']}\nbatch {row['batch']}" for row in rows])
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_ylabel("updates/s relative to 1 thread\n(mean and range over repeats)")
    ax.set_title(f"Data-parallel training on {result['data']} ({result['cpus']} CPUs)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
