"""Why d3rlpy's BEAR collapses on hopper-medium where ours learns: its run with two defects of d3rlpy 2.8.1 fixed.

    python benchmarks/d3rlpy_bear_check.py --fix none both --steps 10000 --seed 0

Read in d3rlpy 2.8.1's source (algos/qlearning/bear.py and torch/bear_impl.py):

* `alpha-lr`: the Lagrange multiplier's optimiser is built with `actor_learning_rate` (1e-4), not
  `alpha_learning_rate` (1e-3), so the multiplier rises ten times slower than configured;
* `dual-gradient`: `compute_actor_loss` runs the dual step (`update_alpha`) by backpropagating `-mmd_loss`
  after the actor's gradients were zeroed and before the actor loss's own backward pass, so the policy receives
  -grad(MMD) + grad(MMD) = 0: the MMD constraint never reaches the policy after the warm start.

Each run is d3rlpy's BEAR with the table's settings (batch 256, `warmup_steps=2000`, everything else d3rlpy's
default), the named fixes patched in, evaluated every 1000 updates on 5 seeded episodes three ways: `predict`
(d3rlpy's own: the best of 100 sampled actions by Q), one sampled action, and the best of 10 by Q. Writes
benchmarks/results/d3rlpy_bear_check.json and .png (score, multiplier and MMD per fix).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

FIXES = ("alpha-lr", "dual-gradient")


def patch(fixes: set[str]) -> None:
    """Patch d3rlpy's BEAR implementation class in this process."""
    import torch
    from d3rlpy.algos.qlearning.torch import bear_impl
    from d3rlpy.models.torch.parameters import get_parameter

    if "alpha-lr" in fixes:
        original_init = bear_impl.BEARImpl.__init__

        def init(self, *args, **kwargs):
            original_init(self, *args, **kwargs)
            for group in self._modules.alpha_optim._optim.param_groups:
                group["lr"] = 1e-3  # BEARConfig.alpha_learning_rate's default, which 2.8.1 does not pass on

        bear_impl.BEARImpl.__init__ = init
    if "dual-gradient" in fixes:
        def update_alpha(self, mmd_loss):
            log_alpha = get_parameter(self._modules.log_alpha)
            self._modules.alpha_optim.zero_grad()
            (grad,) = torch.autograd.grad(-mmd_loss, log_alpha, retain_graph=True)  # log-alpha's gradient only
            log_alpha.grad = grad
            self._modules.alpha_optim.step()
            log_alpha.data.clamp_(-5.0, 10.0)

        bear_impl.BEARImpl.update_alpha = update_alpha


def run(fixes: set[str], data: str, seed: int, steps: int, episodes: int) -> list[dict]:
    import d3rlpy
    import torch

    from aql_agent.adapters.gym import evaluate_policy
    from aql_agent.data import load_dataset

    torch.set_num_threads(1)
    patch(fixes)
    d3rlpy.seed(seed)
    dataset = load_dataset(data)
    mdp = d3rlpy.dataset.MDPDataset(dataset.observations, dataset.actions, dataset.rewards, dataset.terminals,
                                    timeouts=dataset.timeouts)
    learner = d3rlpy.algos.BEARConfig(batch_size=256, warmup_steps=2000).create(device="cpu:0")

    def best_of_10(obs):
        repeated = np.repeat(np.asarray(obs, np.float32)[None], 10, 0)
        actions = learner.sample_action(repeated)
        return actions[int(np.argmax(learner.predict_value(repeated, actions)))]

    ways = {"predict": lambda obs: learner.predict(np.asarray(obs, np.float32)[None])[0],
            "sample": lambda obs: learner.sample_action(np.asarray(obs, np.float32)[None])[0],
            "best_of_10": best_of_10}
    rows = []
    for epoch, metrics in learner.fitter(mdp, n_steps=steps, n_steps_per_epoch=1000, show_progress=False,
                                         save_interval=10**9, logger_adapter=d3rlpy.logging.NoopAdapterFactory()):
        row = {"step": epoch * 1000, **{k: float(v) for k, v in metrics.items() if not k.startswith("time")}}
        for way, act in ways.items():
            row[way] = evaluate_policy("Hopper-v5", act, episodes, seed=10_000 * (seed + 1))["normalized_mean"]
        if "alpha" in row and "mmd_loss" in row:
            row["mmd"] = row["mmd_loss"] / row["alpha"] + 0.05  # mmd_loss = alpha * (MMD - threshold)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fix", nargs="+", default=["none", "both"], choices=["none", *FIXES, "both"],
                        help="one run per entry: no fix, one of the two, or both")
    parser.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "datasets", "hopper-medium.npz"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--run-one", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "d3rlpy_bear_check"), help="output stem")
    args = parser.parse_args()
    if args.run_one is not None:  # a child process: patches must not leak between runs
        fixes = set(FIXES) if args.run_one == "both" else set() if args.run_one == "none" else {args.run_one}
        print("RESULT " + json.dumps(run(fixes, args.data, args.seed, args.steps, args.episodes)))
        return
    import subprocess

    results = {}
    for fix in args.fix:
        child = subprocess.run([sys.executable, __file__, "--run-one", fix, "--data", args.data, "--seed",
                                str(args.seed), "--steps", str(args.steps), "--episodes", str(args.episodes)],
                               capture_output=True, text=True, check=True)
        results[fix] = json.loads(next(line for line in child.stdout.splitlines()
                                       if line.startswith("RESULT "))[len("RESULT "):])
        print(fix, [(r["step"], round(r["predict"], 1)) for r in results[fix]], flush=True)
    report = {"d3rlpy": __import__("d3rlpy").__version__, "seed": args.seed, "steps": args.steps,
              "episodes": args.episodes, "runs": results}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(report, f, indent=1)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
    for fix, rows in results.items():
        steps = [r["step"] for r in rows]
        axes[0].plot(steps, [r["predict"] for r in rows], marker="o", label=f"fix: {fix}")
        after = [r for r in rows if "alpha" in r]
        axes[1].semilogy([r["step"] for r in after], [r["alpha"] for r in after], marker="o", label=fix)
        axes[2].plot([r["step"] for r in after], [r["mmd"] for r in after], marker="o", label=fix)
    axes[0].set_ylabel("normalised score (predict)")
    axes[1].set_ylabel("Lagrange multiplier alpha")
    axes[2].set_ylabel("MMD (threshold 0.05)")
    axes[2].axhline(0.05, color="grey", lw=0.8)
    for ax in axes:
        ax.set_xlabel("updates")
        ax.legend(fontsize=7)
    fig.suptitle(f"d3rlpy {report['d3rlpy']} BEAR on hopper-medium, seed {args.seed}", fontsize=9)
    fig.tight_layout()
    fig.savefig(args.out + ".png", dpi=110)


if __name__ == "__main__":
    main()
