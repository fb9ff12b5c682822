"""The README demo on several seeds and budgets: does fine-tuning raise its win rate, and by how much?

    python benchmarks/demo_seeds.py --seeds 0 1 2 --finetune-steps 100000 200000 --runs runs/demo-seeds \\
        --out benchmarks/results/demo-seeds

Each (budget, seed) runs `aql demo --seed S --finetune-steps N` into RUNS/demoN-S/ (skipped when its
before-after.json is there, so an interrupted grid resumes), timed, then plays the demo's offline and
fine-tuned checkpoints on `--games` more games in process (`aql eval --seed 10000`, the seeds `aql train` and
`aql finetune` evaluate seed 0 on), so each row has the demo's 20 games over the bridge and 40 more.
Writes OUT.json (per run, and per budget: mean gain, seed std, pooled win rates with Wilson intervals) and
OUT.png.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from aql_agent.adapters.games import wilson_interval  # noqa: E402
from aql_agent.demo import OPPONENT  # noqa: E402
from bot_traits import write_results  # noqa: E402

ARMS = ("offline", "finetuned")
OUTCOME = ("wins", "losses", "draws", "games", "win_rate")


def run_demo(folder: str, seed: int, steps: int) -> None:
    """`aql demo` into `folder` unless it finished there before, its wall seconds into FOLDER-timing.json."""
    if os.path.exists(os.path.join(folder, "before-after.json")):
        return
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "aql_agent", "demo", "--out", folder, "--seed", str(seed),
                    "--finetune-steps", str(steps)], check=True,
                   env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "SDL_VIDEODRIVER": "dummy"})
    seconds = time.perf_counter() - started
    with open(f"{folder}-timing.json", "w") as f:
        json.dump({"wall_seconds": seconds}, f)


def evaluate(folder: str, arm: str, games: int) -> dict[str, Any]:
    """The arm's checkpoint on `games` in-process games against the demo's opponent (made once, then read)."""
    path = f"{folder}-eval{games}-{arm}.json"
    if not os.path.exists(path):
        output = subprocess.run([sys.executable, "-m", "aql_agent", "eval", "--checkpoint", os.path.join(folder, arm),
                                 "--env", "moba-1v1", "--games", str(games), "--opponent", OPPONENT, "--seed",
                                 "10000", "--no-progress"], check=True, capture_output=True, text=True,
                                env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}).stdout
        with open(path, "w") as f:
            f.write(output)
    with open(path) as f:
        return json.load(f)


def pooled(reports: list[dict[str, Any]]) -> dict[str, Any]:
    wins, games = sum(r["wins"] for r in reports), sum(r["games"] for r in reports)
    return {"wins": wins, "games": games, "win_rate": wins / games, "ci95": list(wilson_interval(wins, games))}


def summarise(runs: dict[int, dict[int, dict[str, Any]]]) -> dict[str, Any]:
    """Per budget and way of playing (the demo's bridge games, the extra in-process games): the seeds' gains
    (mean and std) and the pooled win rates before and after."""
    budgets = {}
    for steps, seeds in sorted(runs.items()):
        ways = {}
        for way in ("bridge", "in_process"):
            gains = [run[way]["finetuned"]["win_rate"] - run[way]["offline"]["win_rate"] for run in seeds.values()]
            ways[way] = {"gain_mean": float(np.mean(gains)), "gain_std": float(np.std(gains, ddof=1))
                         if len(gains) > 1 else None, "gains": gains,
                         **{arm: pooled([run[way][arm] for run in seeds.values()]) for arm in ARMS}}
        budgets[steps] = ways
    return budgets


def plot(summary: dict[str, Any], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs: dict[int, dict[int, dict[str, Any]]] = summary["runs"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, way, title in zip(axes, ("bridge", "in_process"), ("the demo's games over the bridge",
                                                               "40 more games in process")):
        for column, (steps, seeds) in enumerate(sorted(runs.items())):
            for seed, run in sorted(seeds.items()):
                rates = [run[way][arm]["win_rate"] for arm in ARMS]
                ax.plot([2 * column, 2 * column + 1], rates, "o-", color=f"C{seed}",
                        label=f"seed {seed}" if column == 0 else None)
        ticks = [(2 * c + a, f"{arm}\n{steps // 1000}k") for c, steps in enumerate(sorted(runs))
                 for a, arm in enumerate(("offline", "tuned"))]
        ax.set_xticks([t for t, _ in ticks], [label for _, label in ticks])
        games = next(iter(next(iter(runs.values())).values()))[way]["offline"]["games"]
        ax.set(ylim=(-0.05, 1.05), title=f"{title} ({games} per point)")
    axes[0].set_ylabel(f"win rate vs {OPPONENT}")
    axes[0].legend()
    fig.suptitle("README demo: offline, then fine-tuned for N online decisions (keep-behaviour)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--finetune-steps", nargs="+", type=int, default=[200_000])
    parser.add_argument("--runs", default="runs/demo-seeds", help="folder for the demos' folders")
    parser.add_argument("--games", type=int, default=40, help="in-process games per checkpoint")
    parser.add_argument("--out", default="benchmarks/results/demo-seeds", help="writes OUT.json and OUT.png")
    args = parser.parse_args()
    os.makedirs(args.runs, exist_ok=True)
    runs: dict[int, dict[int, dict[str, Any]]] = {}
    for steps in args.finetune_steps:
        for seed in args.seeds:
            folder = os.path.join(args.runs, f"demo{steps}-{seed}")
            run_demo(folder, seed, steps)
            with open(os.path.join(folder, "before-after.json")) as f:
                demo = json.load(f)
            timing = f"{folder}-timing.json"
            seconds = json.load(open(timing))["wall_seconds"] if os.path.exists(timing) else None
            extra = {arm: evaluate(folder, arm, args.games) for arm in ARMS}
            runs.setdefault(steps, {})[seed] = {
                way: {arm: {key: reports[arm][key] for key in OUTCOME} for arm in ARMS}
                for way, reports in (("bridge", demo), ("in_process", extra))} | {"wall_seconds": seconds}
    summary = {"opponent": OPPONENT, "runs": runs, "budgets": summarise(runs)}
    write_results(summary, args.out, plot)
    for steps, ways in summary["budgets"].items():
        for way, figures in ways.items():
            spread = "one seed" if figures["gain_std"] is None else f"seed std {figures['gain_std']:.3f}"
            print(f"{steps} decisions, {way}: gain {figures['gain_mean']:+.3f} ({spread}); "
                  + ", ".join(f"{arm} {figures[arm]['wins']}/{figures[arm]['games']} "
                              f"[{figures[arm]['ci95'][0]:.2f}, {figures[arm]['ci95'][1]:.2f}]" for arm in ARMS))
    print(f"wrote {args.out}.json and {args.out}.png")


if __name__ == "__main__":
    main()
