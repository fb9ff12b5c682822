"""Offline pretraining then online fine-tuning, against the offline-only control, per seed.

    python benchmarks/finetune.py --suite hopper moba --seeds 0 1 2 --jobs 2 --runs runs/finetune \\
        --out benchmarks/results/finetune

For each suite and seed:

1. **offline**: `aql train` from logged data (`--offline-steps` updates);
2. **fine-tuned**: `aql finetune` from that checkpoint, `--online-steps` env steps at `--updates-per-step`
   updates each, half of every batch offline, the constraint kept as trained and measured on the offline
   rows (the defaults; `--finetune-args` adds flags, e.g. `--relax 4` or `--constrain-on all` for ablations);
3. **offline-only control**: the offline run resumed for the same number of extra updates on the offline
   data alone, so the two arms differ only in what they learn from.

Both arms are evaluated every `--eval-every` env steps' worth of updates with the same seeded episodes
(`aql train` and `aql finetune` evaluate alike). Suites: `hopper` (AQL on hopper-medium from
../shared/datasets, normalised score) and `moba` (discrete AQL on behaviour-tree games, win rate vs bt:medium).
Outputs OUT.json (curves), OUT.md (table: offline, offline-only and fine-tuned, mean +/- std over seeds) and
OUT.png (curves against extra updates).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys

import numpy as np

from aql_agent.adapters.games import DEFAULT_GAME
from figure2 import DEFAULT_PAIRS, record_data
from plot_runs import read
from table1 import finished_step

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.join(HERE, "..", "..", "shared", "datasets")
SUITES = {
    "hopper": {"algo": "aql", "env": "Hopper-v5", "metric": "normalized_mean", "offline_steps": 3000,
               "online_steps": 5000, "updates_per_step": 1.0, "eval_every": 1000, "eval_episodes": 5,
               "train_args": ["--set", "warmup_steps=1000"], "finetune_args": ["--round-steps", "500"]},
    "moba": {"algo": "aql-discrete", "env": DEFAULT_GAME, "metric": "win_rate", "offline_steps": 5000,
             "online_steps": 40000, "updates_per_step": 0.1, "eval_every": 20000, "eval_episodes": 10,
             "train_args": ["--agent", "all"], "finetune_args": ["--round-games", "2"]},
}


def run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}\n{result.stderr[-2000:]}")


def aql(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "aql_agent", *arguments, "--threads", "1", "--no-progress", "--no-tensorboard"]


def one_seed(suite: str, config: dict, data: str, runs: str, seed: int) -> str:
    """Offline run, then both arms (each skipped when already done)."""
    offline = os.path.join(runs, suite, "offline", f"seed{seed}")
    tuned = os.path.join(runs, suite, "finetuned", f"seed{seed}")
    control = os.path.join(runs, suite, "offline-only", f"seed{seed}")
    common = ["--env", config["env"], "--eval-episodes", str(config["eval_episodes"]), "--seed", str(seed)]
    if finished_step(offline) < config["offline_steps"]:
        shutil.rmtree(offline, ignore_errors=True)
        run(aql("train", "--algo", config["algo"], "--data", data, "--out", offline, "--steps",
                str(config["offline_steps"]), "--eval-every", str(config["offline_steps"]), *common,
                *config["train_args"]))
    extra = int(config["online_steps"] * config["updates_per_step"])
    if finished_step(tuned) < config["online_steps"]:
        shutil.rmtree(tuned, ignore_errors=True)
        run(aql("finetune", "--checkpoint", offline, "--out", tuned, "--steps", str(config["online_steps"]),
                "--updates-per-step", str(config["updates_per_step"]), "--eval-every", str(config["eval_every"]),
                *common, *config["finetune_args"]))
    if finished_step(control) < config["offline_steps"] + extra:
        shutil.rmtree(control, ignore_errors=True)
        shutil.copytree(offline, control)
        every = max(1, int(config["eval_every"] * config["updates_per_step"]))
        run(aql("train", "--algo", config["algo"], "--data", data, "--out", control, "--resume", "--steps",
                str(config["offline_steps"] + extra), "--eval-every", str(every), "--checkpoint-every", str(every),
                *common, *config["train_args"]))
    return f"{suite} seed {seed}: done"


def curves(suite: str, config: dict, runs: str, seed: int) -> dict:
    """Both arms' evaluations against extra updates beyond the offline checkpoint."""
    metric, offline_steps = config["metric"], config["offline_steps"]
    tuned = read(os.path.join(runs, suite, "finetuned", f"seed{seed}", "eval.csv"))
    control = read(os.path.join(runs, suite, "offline-only", f"seed{seed}", "eval.csv"))
    return {"finetuned": [(int(r["step"] * config["updates_per_step"]), r[metric]) for r in tuned],
            "offline_only": [(int(r["step"]) - offline_steps, r[metric]) for r in control
                             if int(r["step"]) >= offline_steps],
            "online_episodes": [(int(r["step"]), r.get("win_rate", r.get("return_mean")))
                                for r in read(os.path.join(runs, suite, "finetuned", f"seed{seed}", "rounds.csv"))]}


def summarise(results: dict) -> str:
    """Final evaluations, and the mean of every evaluation after the offline checkpoint (steadier on few
    episodes), each as mean +/- std over seeds."""
    lines = ["| suite | metric | offline checkpoint | offline-only, final | fine-tuned, final | offline-only, mean of "
             "evaluations | fine-tuned, mean of evaluations | seeds |", "|---|---|---|---|---|---|---|---|"]
    for suite, result in results.items():
        def cell(values: list[float]) -> str:
            return f"{np.mean(values):.3f} +/- {np.std(values):.3f}"

        seeds = result["seeds"].values()
        start = [s["finetuned"][0][1] for s in seeds]
        figures = {"offline": start}
        for arm in ("offline_only", "finetuned"):
            figures[arm] = [s[arm][-1][1] for s in seeds]
            figures[arm + "_mean"] = [float(np.mean([v for step, v in s[arm] if step > 0])) for s in seeds]
        lines.append(f"| {suite} | {result['metric']} | {cell(start)} | {cell(figures['offline_only'])} | "
                     f"{cell(figures['finetuned'])} | {cell(figures['offline_only_mean'])} | "
                     f"{cell(figures['finetuned_mean'])} | {len(start)} |")
        result["summary"] = {key: float(np.mean(values)) for key, values in figures.items()}
    return "\n".join(lines)


def plot(results: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 3.8), squeeze=False)
    for ax, (suite, result) in zip(axes[0], results.items()):
        for arm, color in (("offline_only", "tab:blue"), ("finetuned", "tab:green")):
            per_seed = [s[arm] for s in result["seeds"].values()]
            steps = [x for x, _ in per_seed[0]]
            values = np.array([[v for _, v in curve] for curve in per_seed if len(curve) == len(steps)])
            mean, std = values.mean(0), values.std(0)
            ax.plot(steps, mean, "o-", color=color, label=arm.replace("_", "-"))
            ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.2)
        ax.set(title=f"{suite}: {result['algo']} ({len(result['seeds'])} seeds)",
               xlabel="updates after the offline checkpoint", ylabel=result["metric"])
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", nargs="+", default=list(SUITES), choices=list(SUITES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2, help="(suite, seed) runs at a time, as Ray Tune trials "
                        "(the ray extra); 1: one after another without Ray")
    parser.add_argument("--address", help="the Ray cluster to run the trials on (default: a local one)")
    parser.add_argument("--runs", default="runs/finetune")
    parser.add_argument("--hopper-data", default=os.path.join(SHARED, "hopper-medium.npz"))
    parser.add_argument("--moba-games", type=int, default=10, help="games per behaviour-tree pairing (data)")
    parser.add_argument("--finetune-args", default="", help="extra aql finetune flags for every fine-tuned run")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "finetune"))
    args = parser.parse_args()
    for config in SUITES.values():
        config["finetune_args"] = config["finetune_args"] + args.finetune_args.split()

    data = {"hopper": args.hopper_data}
    if "moba" in args.suite:
        data["moba"] = record_data(os.path.join(args.runs, "data", "moba-bt-games"), DEFAULT_PAIRS, args.moba_games, 0)
    jobs = [{"suite": suite, "seed": seed} for seed in args.seeds for suite in args.suite]

    def job(config: dict) -> str:
        return one_seed(config["suite"], SUITES[config["suite"]], data[config["suite"]], args.runs, config["seed"])

    if args.jobs == 1 and args.address is None:
        messages = [job(config) for config in jobs]
    else:  # each (suite, seed) a Ray Tune trial
        from aql_agent.distributed import run_trials

        messages = run_trials(jobs, job, concurrent=args.jobs, storage=os.path.join(args.runs, "tune"),
                              name="finetune", address=args.address)
    print("\n".join(messages), flush=True)
    results = {}
    for suite in args.suite:
        config = SUITES[suite]
        results[suite] = {"algo": config["algo"], "env": config["env"], "metric": config["metric"],
                          "data": data[suite], "budget": {k: config[k] for k in ("offline_steps", "online_steps",
                                                                                  "updates_per_step",
                                                                                  "eval_episodes")},
                          "seeds": {seed: curves(suite, config, args.runs, seed) for seed in args.seeds}}
    table = summarise(results)
    print(table)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(results, f, indent=2)
    with open(args.out + ".md", "w") as f:
        f.write(table + "\n")
    plot(results, args.out + ".png")


if __name__ == "__main__":
    main()
