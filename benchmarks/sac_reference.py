"""Our online SAC (the behaviour policy of `aql make-dataset`) side by side with Stable-Baselines3's SAC.

    python benchmarks/sac_reference.py --envs HalfCheetah-v5 Hopper-v5 --steps 50000 --seeds 0 1 2 --jobs 2

Both train on the same env ids, seeds and environment steps, with the same number of uniform random steps
before learning (`--learning-starts`, ours: 5000; SB3's own default is 100 and is overridden so that only the
implementations differ) and one gradient step per environment step; SB3 otherwise runs its defaults
(256-256, lr 3e-4, batch 256, tau 0.005, automatic entropy with target -act_dim). Every `--eval-every` steps
each is scored by the same deterministic evaluation (`aql_agent.adapters.gym.evaluate_policy`,
`--eval-episodes` episodes on seeds 10000 + seed, ...). Ours runs through `aql make-dataset`'s own training
phase (`DatasetMaker.train_behaviour`), so the curve is that of the code that makes the datasets.

The grid is cumulative: every finished run is written to `--records/ENV/IMPL/seedN.json` (committed) and is
not run again, so a grid can be completed over several sittings. Writes OUT.json (every curve and the summary),
OUT.md (return at the last evaluation and over the last three, mean +/- std over seeds) and OUT.png (curves,
mean +/- std band). One torch thread per run, `--jobs` runs at a time.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
IMPLEMENTATIONS = ("aql-agent", "sb3")


def record_path(records: str, env: str, impl: str, seed: int) -> str:
    return os.path.join(records, env, impl, f"seed{seed}.json")


def run_ours(env: str, seed: int, steps: int, eval_every: int, episodes: int, learning_starts: int,
             keep: str | None = None) -> list:
    from aql_agent.make_dataset import DatasetMaker, MakeDatasetSettings

    with tempfile.TemporaryDirectory() as scratch:
        out = os.path.join(keep, env, f"seed{seed}") if keep else scratch
        settings = MakeDatasetSettings(env=env, out=out, train_steps=steps, snapshot_every=eval_every,
                                       learning_starts=learning_starts, eval_episodes=episodes, seed=seed,
                                       progress=False)
        maker = DatasetMaker(settings)
        maker.train_behaviour()
        return [(snap["step"], snap["return"]) for snap in maker.card["snapshots"]]


def run_sb3(env: str, seed: int, steps: int, eval_every: int, episodes: int, learning_starts: int,
            keep: str | None = None) -> list:
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback

    from aql_agent.adapters.gym import evaluate_policy

    curve: list = []

    class Evaluate(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps % eval_every == 0:
                def act(obs):
                    return self.model.predict(obs, deterministic=True)[0]
                curve.append((self.num_timesteps,
                              evaluate_policy(env, act, episodes, seed=10_000 + seed)["return_mean"]))
            return True

    model = SAC("MlpPolicy", env, learning_starts=learning_starts, seed=seed, device="cpu", verbose=0)
    model.learn(steps, callback=Evaluate())
    return curve


def worker(impl: str, env: str, seed: int, steps: int, eval_every: int, episodes: int, learning_starts: int,
           path: str, keep: str | None) -> None:
    """One run in this process; writes its record atomically."""
    import torch

    torch.set_num_threads(1)
    start = time.time()
    run = run_ours if impl == "aql-agent" else run_sb3
    curve = run(env, seed, steps, eval_every, episodes, learning_starts, keep)
    record = {"impl": impl, "env": env, "seed": seed, "steps": steps, "eval_every": eval_every,
              "eval_episodes": episodes, "learning_starts": learning_starts, "curve": curve,
              "seconds": time.time() - start, "versions": versions()}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(record, f, indent=1)
    os.replace(path + ".tmp", path)


def versions() -> dict[str, str]:
    import gymnasium
    import torch

    found = {"gymnasium": gymnasium.__version__, "torch": torch.__version__}
    try:
        import stable_baselines3
        found["stable_baselines3"] = stable_baselines3.__version__
    except ImportError:
        pass
    return found


def launch(args: argparse.Namespace, impl: str, env: str, seed: int) -> str:
    path = record_path(args.records, env, impl, seed)
    if os.path.exists(path):
        with open(path) as f:
            done = json.load(f)
        if done["steps"] >= args.steps:
            return f"{path}: recorded"
    command = [sys.executable, __file__, "--worker", impl, env, str(seed), str(args.steps), str(args.eval_every),
               str(args.eval_episodes), str(args.learning_starts), path, args.keep or ""]
    result = subprocess.run(command, capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"})
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}\n{result.stderr[-2000:]}")
    return f"{path}: trained"


def summarise(args: argparse.Namespace) -> dict:
    summary: dict = {}
    for env in args.envs:
        for impl in IMPLEMENTATIONS:
            curves = {}
            for seed in args.seeds:
                path = record_path(args.records, env, impl, seed)
                if os.path.exists(path):
                    with open(path) as f:
                        record = json.load(f)
                    curves[seed] = [(s, r) for s, r in record["curve"] if s <= args.steps]
            if not curves:
                continue
            finals = [c[-1][1] for c in curves.values()]
            last3 = [float(np.mean([r for _, r in c[-3:]])) for c in curves.values()]
            summary.setdefault(env, {})[impl] = {
                "seeds": sorted(curves), "curves": {str(k): v for k, v in curves.items()},
                "final_mean": float(np.mean(finals)), "final_std": float(np.std(finals)),
                "last3_mean": float(np.mean(last3)), "last3_std": float(np.std(last3))}
    return summary


def markdown(summary: dict, args: argparse.Namespace) -> str:
    lines = [f"Deterministic return at {args.steps} environment steps ({args.eval_episodes} episodes per evaluation;"
             " mean +/- std over seeds; `last 3` averages each seed's last three evaluations first).", "",
             "| env | implementation | seeds | final | last 3 |", "|---|---|---|---|---|"]
    for env, impls in summary.items():
        for impl, entry in impls.items():
            lines.append(f"| {env} | {impl} | {len(entry['seeds'])} | {entry['final_mean']:.0f} +/- "
                         f"{entry['final_std']:.0f} | {entry['last3_mean']:.0f} +/- {entry['last3_std']:.0f} |")
    return "\n".join(lines) + "\n"


def plot(summary: dict, out: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(summary), figsize=(5 * len(summary), 3.6), squeeze=False)
    for ax, (env, impls) in zip(axes[0], summary.items()):
        for impl, entry in impls.items():
            curves = list(entry["curves"].values())
            length = min(len(c) for c in curves)
            steps = [s for s, _ in curves[0][:length]]
            values = np.array([[r for _, r in c[:length]] for c in curves])
            mean, std = values.mean(0), values.std(0)
            ax.plot(steps, mean, label=f"{impl} ({len(curves)} seeds)")
            ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
        ax.set(title=env, xlabel="environment steps", ylabel="deterministic return")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out + ".png", dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["HalfCheetah-v5", "Hopper-v5"])
    parser.add_argument("--impls", nargs="+", default=list(IMPLEMENTATIONS), choices=IMPLEMENTATIONS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--eval-every", type=int, default=5000)
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--learning-starts", type=int, default=5000)
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (one torch thread each)")
    parser.add_argument("--records", default=os.path.join(HERE, "results", "sac_reference"),
                        help="folder of the per-run records (runs recorded there are not run again)")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "sac_reference"), help="output stem")
    parser.add_argument("--summary-only", action="store_true", help="only summarise the recorded runs")
    parser.add_argument("--keep", help="keep our runs' make-dataset folders in KEEP/ENV/seedN (continue one with "
                        "`aql make-dataset --out KEEP/ENV/seedN --resume --train-steps MORE` to make datasets)")
    parser.add_argument("--worker", nargs=9, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        impl, env, seed, steps, every, episodes, starts, path, keep = args.worker
        worker(impl, env, int(seed), int(steps), int(every), int(episodes), int(starts), path, keep or None)
        return
    if not args.summary_only:
        # Longest runs first so that the last ones do not leave a core idle.
        jobs = [(impl, env, seed) for seed in args.seeds for env in args.envs for impl in args.impls]
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            futures = [pool.submit(launch, args, *job) for job in jobs]
            for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
                print(f"[{done}/{len(futures)}] {future.result()}", flush=True)
    summary = summarise(args)
    with open(args.out + ".json", "w") as f:
        json.dump({"settings": {k: v for k, v in vars(args).items() if k != "worker"}, "summary": summary}, f,
                  indent=1)
    table = markdown(summary, args)
    with open(args.out + ".md", "w") as f:
        f.write(table)
    if summary:
        plot(summary, args.out)
    print(table)


if __name__ == "__main__":
    main()
