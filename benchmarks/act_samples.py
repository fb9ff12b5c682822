"""Re-evaluate a run's checkpoints acting another way: another number of acting samples (BCQ, AQL: the best of
N proposals), and/or (AQL) with the target networks, the Polyak averages of the trained ones.

How many proposals the critic chooses among, and which of its weights act, are choices of acting only, so they
are measured without retraining: each checkpoint is evaluated on the same seeded episodes `aql train` used, once
with `--samples N` and/or `--targets` (`aql eval --act-samples N --act-with-targets` does the same for one
checkpoint). Re-evaluating with the number the run trained with
reproduces its eval.csv for runs trained since evaluations seed the policy's draws per episode (2026-12-01);
older runs get other draws of the same episodes. Prints one line per checkpoint and writes
JSON with the recorded and the re-evaluated scores.

    python benchmarks/act_samples.py --env HalfCheetah-v5 --samples 100 --steps 12000 14000 16000 18000 20000 \\
        --runs runs/table1/halfcheetah-medium-replay/aql/seed0 runs/table1/halfcheetah-medium-replay/aql/seed1 \\
        --out /tmp/act-samples.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

from aql_agent.checkpoint import acting_as, load_policy
from aql_agent.errors import AqlError
from aql_agent.runs import checkpoint_path, read_settings
from aql_agent.training import evaluate_learner
from plot_runs import read


def recorded_scores(run: str) -> tuple[int, dict[int, float]]:
    """The run's seed (from train.json) and its own evaluation scores by step (from eval.csv)."""
    seed = read_settings(run)["settings"]["seed"]
    rows = read(os.path.join(run, "eval.csv"))
    if not rows or "normalized_mean" not in rows[0]:
        raise AqlError(f"{run}/eval.csv has no normalized_mean column: only D4RL-scored envs are compared here")
    return seed, {int(row["step"]): row["normalized_mean"] for row in rows}


def reevaluate(run: str, seed: int, env: str, step: int, samples: int | None, targets: bool, episodes: int) -> float:
    """The normalised score of `run`'s checkpoint at `step` acting on the best of `samples` proposals (None: as
    trained), with its target networks if `targets`."""
    policy = acting_as(load_policy(checkpoint_path(run, step)), samples, targets)
    result = evaluate_learner(policy.learner, policy.preprocessing, env, episodes, None, seed, step)
    return float(result["normalized_mean"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", required=True, help="gymnasium id the runs were evaluated in")
    parser.add_argument("--runs", nargs="+", required=True, help="run folders of `aql train` (or table1's)")
    parser.add_argument("--steps", nargs="+", type=int, required=True, help="checkpoint steps to re-evaluate")
    parser.add_argument("--samples", type=int, help="acting samples to evaluate with (default: as trained)")
    parser.add_argument("--targets", action="store_true", help="aql: act with the target (Polyak-averaged) networks")
    parser.add_argument("--episodes", type=int, default=10, help="episodes per evaluation (as the runs used)")
    parser.add_argument("--out", required=True, help="JSON output path")
    args = parser.parse_args()
    torch.set_num_threads(1)
    try:
        if (args.samples is not None and args.samples < 1) or args.episodes < 1:
            raise AqlError("--samples and --episodes must be at least 1")
        how = " and ".join([*([f"{args.samples} samples"] if args.samples else []),
                            *(["the target networks"] if args.targets else [])]) or "as trained"
        results = []
        for run in args.runs:
            seed, recorded = recorded_scores(run)
            for step in args.steps:
                score = reevaluate(run, seed, args.env, step, args.samples, args.targets, args.episodes)
                results.append({"run": run, "step": step, "recorded": recorded.get(step), "reevaluated": score})
                print(f"{run} step {step}: recorded {recorded.get(step)}, with {how} {score:.3f}", flush=True)
    except (AqlError, OSError, KeyError) as error:
        sys.exit(f"act_samples: error: {error}")
    with open(args.out, "w") as f:
        json.dump({"env": args.env, "samples": args.samples, "targets": args.targets, "episodes": args.episodes,
                   "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
