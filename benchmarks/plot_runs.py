"""Summarise `aql train` run folders: final evaluation and gen_mse to JSON, learning curves to PNG.

    python benchmarks/plot_runs.py runs/aql runs/bear --step 20000 --out benchmarks/results/hopper_medium

For each run it reads eval.csv (normalised score, or return where the env has no D4RL reference) and
metrics.csv (gen_mse: the mean over the last 500 batches at each logged step), and reports both at `--step`
(default: the last step every run reached), so runs of different lengths compare at the same budget, with
the mean of the last `--last` evaluations up to that step (one evaluation of a single seed is noisy).
"""

from __future__ import annotations

import argparse
import csv
import json
import os

from aql_agent.runs import read_settings


def read(path: str) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run folders written by aql train")
    parser.add_argument("--step", type=int, help="compare at this step (default: the last one all runs reached)")
    parser.add_argument("--out", required=True, help="output stem: writes STEM.json and STEM.png")
    parser.add_argument("--last", type=int, default=3, help="also average the last N evaluations (default: 3)")
    args = parser.parse_args()

    runs = {}
    for folder in args.runs:
        settings = read_settings(folder)["settings"]
        # Label by folder name: two runs of one algorithm (fp32 and bf16, two seeds) must not overwrite each other.
        runs[folder] = {"label": os.path.basename(os.path.normpath(folder)), "algo": settings["algo"],
                        "settings": settings,
                        "eval": read(os.path.join(folder, "eval.csv")),
                        "metrics": read(os.path.join(folder, "metrics.csv"))}
    step = args.step or min(int(r["eval"][-1]["step"]) for r in runs.values())
    score_key = "normalized_mean" if "normalized_mean" in next(iter(runs.values()))["eval"][0] else "return_mean"
    summary = {}
    for folder, run in runs.items():
        evaluation = next(e for e in run["eval"] if int(e["step"]) == step)
        upto = [e for e in run["eval"] if int(e["step"]) <= step]
        metrics = next(m for m in run["metrics"] if int(m["step"]) == step)
        summary[run["label"]] = {
            "run": folder, "algo": run["algo"], "step": step, score_key: evaluation[score_key],
            score_key.replace("mean", "std"): evaluation[score_key.replace("mean", "std")],
            "return_mean": evaluation["return_mean"], "gen_mse_last_500_batches": metrics["gen_mse"],
            f"{score_key}_last_{args.last}_evaluations": sum(e[score_key] for e in upto[-args.last:])
            / len(upto[-args.last:]),
            "eval_curve": [(int(e["step"]), e[score_key]) for e in run["eval"]],
            "data": run["settings"]["data"], "seed": run["settings"]["seed"],
            "learner_overrides": run["settings"]["learner"]}
    with open(args.out + ".json", "w") as f:
        json.dump({"step": step, "score": score_key, "runs": summary}, f, indent=2)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for run in runs.values():
        left.plot([e["step"] for e in run["eval"]], [e[score_key] for e in run["eval"]], marker="o", label=run["label"])
        right.plot([m["step"] for m in run["metrics"]], [m["gen_mse"] for m in run["metrics"]], label=run["label"])
    left.axvline(step, color="grey", lw=0.5)
    left.set(xlabel="gradient updates", ylabel=score_key.replace("_", " "), title="evaluation")
    right.set(xlabel="gradient updates", ylabel="gen_mse (last 500 batches)", yscale="log",
              title="generative-modelling error")
    for ax in (left, right):
        ax.legend()
    fig.tight_layout()
    fig.savefig(args.out + ".png", dpi=120)
    print(json.dumps({a: {k: v for k, v in s.items() if k not in ("eval_curve", "learner_overrides")}
                      for a, s in summary.items()}, indent=2))


if __name__ == "__main__":
    main()
