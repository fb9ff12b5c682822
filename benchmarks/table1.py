"""The paper's Table 1 and Figure 1, reproduced: algorithms x datasets x seeds under one budget.

    python benchmarks/table1.py --algos bc bcq bear aql \\
        --datasets ../shared/datasets/hopper-{random,medium,expert}.npz --env Hopper-v5 \\
        --seeds 0 1 2 --steps 5000 --eval-every 2500 --eval-episodes 5 --jobs 2 \\
        --set bear:warmup_steps=1000 --set aql:warmup_steps=1000 \\
        --d3rlpy bc bcq --runs runs/table1 --out benchmarks/results/table1

Each (algorithm, dataset, seed) is one `aql train` run in `--runs` (one torch thread each, `--jobs` at a time);
a finished run is not trained again, an interrupted one resumes, so the harness can be re-run to extend a grid.
A dataset is `PATH` (evaluated in `--env`) or `ENV_ID=PATH`. With `--d3rlpy ALGO...` the same data trains
d3rlpy's implementation (its default hyperparameters except batch 256, BCQ's 10 action samples and what
`--set d3rlpy-ALGO:FIELD=VALUE` changes, e.g. BEAR's warm-up to match ours; same steps and evaluation episodes)
for a side-by-side column.

The grid is cumulative across sittings: every finished run is summarised into a small record,
`--records/STEPSu/DATASET/ALGO/seedN.json` (its evaluation curve, final score, gen_mse and the diagnostics
q_mean / alpha / critic_loss over training, the settings that produced it and the data's content digest), meant
to be committed. A run with a record is never trained again, and the tables are built from the records alone,
so the same command re-run in a later sitting (or on another machine) picks up where the last one stopped; a
record whose digest differs from the dataset now at its path (a remade set that came out different) is refused.
`--deadline MINUTES` starts no new run after that many minutes, for a sitting of known length; runs still
missing are listed.

Writes OUT.json (every run's curve and final figures), OUT.md (the tables: normalised score at the last
evaluation and averaged over each seed's last five, mean +/- std over the seeds recorded, top 3 per dataset in
bold; and gen_mse), OUT-curves.png
(learning curves) and OUT-figure1.png (gen_mse of AQL, BEAR and BCQ over training, mean and std over seeds).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

from plot_runs import read

HERE = os.path.dirname(os.path.abspath(__file__))
FIGURE1_ALGOS = ("aql", "bear", "bcq")
LAST_EVALUATIONS = 5  # the second table averages each seed's last evaluations
#: metrics.csv columns kept in a run's record to diagnose it after the fact
DIAGNOSTICS = ("gen_mse", "q_mean", "alpha", "critic_loss", "cql_gap", "mmd", "saturation",
               "generative_fit", "gen_threshold", "constrained_error")


def dataset_name(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def parse_dataset(spec: str, default_env: str | None) -> tuple[str, str]:
    env, sep, path = spec.partition("=")
    if not sep:
        env, path = default_env, spec
    if not env:
        raise SystemExit(f"table1: no environment for {spec!r}: give --env or write ENV_ID=PATH")
    if not os.path.exists(path):
        raise SystemExit(f"table1: dataset {path!r} not found")
    return env, path


def run_folder(runs: str, data: str, algo: str, seed: int) -> str:
    return os.path.join(runs, dataset_name(data), algo, f"seed{seed}")


def record_path(args: argparse.Namespace, data: str, algo: str, seed: int) -> str:
    return os.path.join(args.records, f"{args.steps}u", dataset_name(data), algo, f"seed{seed}.json")


def overrides(args: argparse.Namespace, algo: str) -> list[str]:
    """The `--set` settings that apply to `algo` (part of what a record says it was trained with)."""
    return [setting for target, _, setting in (o.partition(":") for o in args.set) if target == algo]


def learner_config(folder: str) -> dict | None:
    """The learner's full configuration as `aql train` resolved it (defaults included), so a record still says
    what it was trained with after a default changes; None for d3rlpy's runs."""
    from aql_agent.errors import AqlError
    from aql_agent.runs import read_settings

    try:
        return read_settings(folder)["learner_config"]
    except (AqlError, KeyError):
        return None


# A plain dict, not functools.lru_cache: Ray Tune's workers unpickle this module's functions by value, and an
# lru_cache wrapper in __main__ would be looked up there by name (and not found).
_DIGESTS: dict[str, str | None] = {}


def data_digest(data: str) -> str | None:
    """The dataset's content digest (`TransitionDataset.digest`, as `aql inspect` and a make-dataset card show it),
    None where the file is not here (a summary from records alone needs no data). A record keeps it, so a grid
    resumed on a remade dataset (datasets are made per checkout) cannot mix runs on two different sets."""
    if data not in _DIGESTS:
        from aql_agent.data import load_dataset

        _DIGESTS[data] = load_dataset(data).digest() if os.path.exists(data) else None
    return _DIGESTS[data]


def write_record(args: argparse.Namespace, env: str, data: str, algo: str, seed: int, folder: str) -> None:
    """Summarise a finished run folder into its committed record (atomic)."""
    evaluation = read(os.path.join(folder, "eval.csv"))
    # The headline score eval.csv has: D4RL-normalised, else the return, else a game's win rate (figure2).
    key = next(k for k in ("normalized_mean", "return_mean", "win_rate") if k in evaluation[0])
    metrics_path = os.path.join(folder, "metrics.csv")
    metrics = read(metrics_path) if os.path.exists(metrics_path) else []
    record = {"env": env, "dataset": dataset_name(data), "data_sha256": data_digest(data), "algo": algo,
              "seed": seed, "steps": args.steps, "eval_every": args.eval_every, "eval_episodes": args.eval_episodes,
              "set": overrides(args, algo),
              "learner_config": learner_config(folder),
              "score": key, "curve": [(int(e["step"]), e[key]) for e in evaluation], "final": evaluation[-1][key],
              "diagnostics": {name: [(int(m["step"]), m[name]) for m in metrics if name in m]
                              for name in DIAGNOSTICS if any(name in m for m in metrics)}}
    path = record_path(args, data, algo, seed)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(record, f)
    os.replace(path + ".tmp", path)


def recorded(args: argparse.Namespace, data: str, algo: str, seed: int) -> dict | None:
    """The record of this cell, if there is one; a record trained with other `--set` settings or on another file
    than this command names is an error, never silently reused (or silently retrained). Records written before
    digests were kept (no `data_sha256`) are taken as they are."""
    path = record_path(args, data, algo, seed)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        record = json.load(f)
    trained_with, asked = record.get("set", []), overrides(args, algo)
    if sorted(trained_with) != sorted(asked):
        raise SystemExit(f"table1: error: {path} was trained with --set {' '.join(trained_with) or '(none)'} for "
                         f"{algo}, this command asks for {' '.join(asked) or '(none)'}; pass the same settings, or "
                         "another --records folder for another configuration")
    trained_on = record.get("data_sha256")
    here = data_digest(data) if trained_on else None  # a record without a digest needs no dataset loaded
    if trained_on and here and trained_on != here:
        raise SystemExit(f"table1: error: {path} was trained on other data than {data} (sha256 {trained_on[:12]}... "
                         f"vs {here[:12]}...); remake the dataset with the command in its card.json, or pass another "
                         "--records folder for runs on this file")
    return record


def finished_step(folder: str) -> int:
    try:
        with open(os.path.join(folder, "latest.json")) as f:
            return int(json.load(f)["step"])
    except (OSError, ValueError, KeyError):
        return 0


def refuse_if_in_use(folder: str) -> None:
    """Stop with one error line while a process still works in `folder` (its run lock, or the lock of a run
    inside it, is held): a second harness invocation on the same runs must fail, not delete or resume the first
    one's run under it."""
    from aql_agent.errors import AqlError
    from aql_agent.runs import FolderLock

    for root, _, files in os.walk(folder):
        if FolderLock.FILE in files:
            try:
                FolderLock(root).release()
            except AqlError as error:
                raise SystemExit(f"{os.path.basename(sys.argv[0])}: error: {error}") from None


def remove_stale_run(folder: str) -> None:
    """Delete an unfinished run's folder so it starts again, unless a process still works in it."""
    refuse_if_in_use(folder)
    shutil.rmtree(folder, ignore_errors=True)


def resume_flags(folder: str, done: int) -> list[str]:
    """`--resume` where `folder` holds an unfinished run whose latest checkpoint is at step `done` (> 0), which
    then goes on from it bit for bit (so a grid's or a seed's runs can be spread over several sittings); a folder
    with none yet is removed and its run started again. A folder another process is working in stops the harness
    with one error line either way."""
    if done:
        refuse_if_in_use(folder)
        return ["--resume"]
    remove_stale_run(folder)
    return []


def train_one(args: argparse.Namespace, env: str, data: str, algo: str, seed: int) -> str:
    """One `aql train` run in a subprocess (resumed if it was interrupted, skipped if done)."""
    folder = run_folder(args.runs, data, algo, seed)
    if recorded(args, data, algo, seed) is not None:
        return f"{record_path(args, data, algo, seed)}: recorded"
    done = finished_step(folder)
    if done >= args.steps:
        write_record(args, env, data, algo, seed, folder)
        return f"{folder}: done"
    command = [sys.executable, "-m", "aql_agent", "train", "--algo", algo, "--data", data, "--out", folder,
               "--steps", str(args.steps), "--seed", str(seed), "--env", env, "--eval-every", str(args.eval_every),
               "--eval-episodes", str(args.eval_episodes), "--log-every", str(args.log_every), "--threads", "1",
               "--checkpoint-every", str(args.eval_every), "--no-progress", "--no-tensorboard",
               "--device", args.device]
    for setting in overrides(args, algo):
        command += ["--set", setting]
    command += getattr(args, "train_args", [])  # what a harness built on this one adds (figure2: --agent ...)
    command += resume_flags(folder, done)
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}\n{result.stderr[-2000:]}")
    write_record(args, env, data, algo, seed, folder)
    return f"{folder}: trained"


def train_d3rlpy(args: argparse.Namespace, env: str, data: str, algo: str, seed: int) -> str:
    """d3rlpy's `algo` on the same data, evaluated like ours; writes eval.csv into its run folder."""
    name = f"d3rlpy-{algo}"
    folder = run_folder(args.runs, data, name, seed)
    if recorded(args, data, name, seed) is not None:
        return f"{record_path(args, data, name, seed)}: recorded"
    changes = {key: json.loads(value) for key, _, value in
               (setting.partition("=") for setting in overrides(args, name))}
    command = [sys.executable, __file__, "--d3rlpy-run", algo, env, data, folder, str(seed), str(args.steps),
               str(args.eval_every), str(args.eval_episodes), json.dumps(changes), args.device]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}\n{result.stderr[-2000:]}")
    write_record(args, env, data, name, seed, folder)
    return f"{folder}: trained"


def d3rlpy_run(algo: str, env: str, data: str, folder: str, seed: int, steps: int, eval_every: int,
               episodes: int, changes: dict, device: str) -> None:
    import d3rlpy
    import torch

    from aql_agent.adapters.gym import evaluate_policy
    from aql_agent.data import load_dataset

    torch.set_num_threads(1)
    d3rlpy.seed(seed)
    dataset = load_dataset(data)
    mdp = d3rlpy.dataset.MDPDataset(dataset.observations, dataset.actions, dataset.rewards, dataset.terminals,
                                    timeouts=dataset.timeouts)
    # d3rlpy's defaults, except our batch size and BCQ's action samples (d3rlpy's 100 make it ~10x slower)
    configs = {"bc": (d3rlpy.algos.BCConfig, {}), "bcq": (d3rlpy.algos.BCQConfig, {"n_action_samples": 10}),
               "bear": (d3rlpy.algos.BEARConfig, {}), "cql": (d3rlpy.algos.CQLConfig, {})}
    config_class, defaults = configs[algo]
    learner = config_class(batch_size=256, **{**defaults, **changes}).create(
        device="cpu:0" if device == "cpu" else device)
    os.makedirs(folder, exist_ok=True)
    rows = []
    for epoch, _ in learner.fitter(mdp, n_steps=steps, n_steps_per_epoch=eval_every, show_progress=False,
                                   save_interval=10**9, logger_adapter=d3rlpy.logging.NoopAdapterFactory()):
        # The episode seeds `aql train` evaluates on (training.evaluate_learner), so both columns see the same.
        result = evaluate_policy(env, lambda obs: learner.predict(np.asarray(obs, np.float32)[None])[0], episodes,
                                 seed=10_000 * (seed + 1))
        rows.append({"step": epoch * eval_every, "return_mean": result["return_mean"],
                     "normalized_mean": result.get("normalized_mean", float("nan"))})
    with open(os.path.join(folder, "eval.csv"), "w") as f:
        f.write("step,return_mean,normalized_mean\n")
        f.writelines(f"{r['step']},{r['return_mean']},{r['normalized_mean']}\n" for r in rows)
    with open(os.path.join(folder, "latest.json"), "w") as f:
        json.dump({"step": steps}, f)


def collect(args: argparse.Namespace, datasets: list[tuple[str, str]], algos: list[str]) -> dict:
    """The results table from the records: every (dataset, algorithm) with at least one recorded seed."""
    results: dict = {}
    for env, data in datasets:
        name = dataset_name(data)
        results[name] = {"env": env, "data": data, "algos": {}}
        for algo in algos:
            seeds = {}
            for seed in args.seeds:
                record = recorded(args, data, algo, seed)
                if record is None:
                    continue
                seeds[seed] = {"curve": record["curve"], "final": record["final"],
                               "gen_mse_curve": record["diagnostics"].get("gen_mse", []),
                               "diagnostics": record["diagnostics"]}
            if not seeds:
                continue
            finals = [s["final"] for s in seeds.values()]
            lasts = [float(np.mean([score for _, score in s["curve"][-LAST_EVALUATIONS:]])) for s in seeds.values()]
            gen = [s["gen_mse_curve"][-1][1] for s in seeds.values() if s["gen_mse_curve"]]
            results[name]["algos"][algo] = {
                "final_mean": float(np.mean(finals)), "final_std": float(np.std(finals)), "seeds": seeds,
                "last_mean": float(np.mean(lasts)), "last_std": float(np.std(lasts)),
                "gen_mse_mean": float(np.mean(gen)) if gen else None,
                "gen_mse_std": float(np.std(gen)) if gen else None,
            }
    return results


def verdicts(results: dict, algos: list[str], wanted: int, ours: str = "aql") -> dict:
    """Dataset by dataset, is `ours` at or above the best other column within one pooled seed-std (the
    question the paper's Table 1 answers), on the final evaluation and on the last-5 mean. `complete` is False
    while a column is missing or has fewer seeds than asked: the answer may still change."""
    answers = {}
    for name, entry in results.items():
        present = entry["algos"]
        if ours not in present or len(present) < 2:
            continue
        complete = all(a in present and len(present[a]["seeds"]) == wanted for a in algos)
        answer = {"complete": complete}
        others = {a: v for a, v in present.items() if a != ours}
        for key in ("final", "last"):
            best = max(others, key=lambda a: others[a][f"{key}_mean"])
            mine, theirs = present[ours], others[best]
            pooled = float(np.sqrt((mine[f"{key}_std"] ** 2 + theirs[f"{key}_std"] ** 2) / 2))
            gap = mine[f"{key}_mean"] - theirs[f"{key}_mean"]
            answer[key] = {"best_other": best, "gap": gap, "pooled_std": pooled, "at_or_above": gap >= -pooled}
        answers[name] = answer
    return answers


def markdown(results: dict, algos: list[str], args: argparse.Namespace, answers: dict) -> str:
    """The table; a cell is mean +/- std over the seeds recorded, with `(n=...)` where fewer than asked. `answers`
    are the `verdicts` on the same results."""
    wanted = len(args.seeds)

    def cell(entry: dict, value: float, spread: float, fmt: str) -> str:
        text = f"{value:{fmt}} +/- {spread:{fmt}}"
        return text if len(entry["seeds"]) == wanted else f"{text} (n={len(entry['seeds'])})"

    def score_table(key: str, heading: str) -> list[str]:
        lines = [heading, "", "| dataset | " + " | ".join(algos) + " |", "|---|" + "---|" * len(algos)]
        for name, entry in results.items():
            present = entry["algos"]
            means = {a: present[a][f"{key}_mean"] for a in algos if a in present}
            top = sorted(means, key=means.get, reverse=True)[:3]
            cells = []
            for a in algos:
                if a not in present:
                    cells.append("-")
                    continue
                text = cell(present[a], present[a][f"{key}_mean"], present[a][f"{key}_std"], ".1f")
                cells.append(f"**{text}**" if a in top else text)
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        return lines

    seeds = ", ".join(map(str, args.seeds))
    lines = score_table("final", f"Normalised score at the last evaluation ({args.steps} updates; mean +/- std over "
                        f"seeds {seeds}; {args.eval_episodes} episodes per evaluation). Top 3 per dataset in bold; "
                        "`-`: not run yet.")
    lines += [""] + score_table("last", f"Mean of each seed's last {LAST_EVALUATIONS} evaluations (steadier than "
                                "one evaluation, which swings by 20-50 points between neighbours on Hopper), "
                                "mean +/- std over the same seeds:")
    generative = [a for a in algos if any(entry["algos"].get(a, {}).get("gen_mse_mean") is not None
                                          for entry in results.values())]
    if generative:
        lines += ["", "gen_mse (mean squared error of the generator's or actor's actions against the dataset's, "
                  "last 500 batches; mean +/- std over seeds):", "",
                  "| dataset | " + " | ".join(generative) + " |", "|---|" + "---|" * len(generative)]
        for name, entry in results.items():
            cells = []
            for a in generative:
                present = entry["algos"].get(a)
                cells.append("-" if present is None or present["gen_mse_mean"] is None else
                             cell(present, present["gen_mse_mean"], present["gen_mse_std"], ".4f"))
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if answers:
        lines += ["", "Is aql at or above the best other column within one pooled seed-std (sqrt of the mean of the "
                  "two variances)? Gap = aql's mean minus the best other's; `(so far)` while a column is missing or "
                  "short of seeds:", "", "| dataset | final: best other, gap, answer | last 5: best other, gap, "
                  "answer |", "|---|---|---|"]
        for name, answer in answers.items():
            cells = [f"{answer[k]['best_other']}, {answer[k]['gap']:+.1f} (pooled std {answer[k]['pooled_std']:.1f}), "
                     f"{'yes' if answer[k]['at_or_above'] else 'no'}" for k in ("final", "last")]
            suffix = "" if answer["complete"] else " (so far)"
            lines.append(f"| {name}{suffix} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plots(results: dict, algos: list[str], out: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {algo: f"C{i % 10}" for i, algo in enumerate(algos)}  # one colour per algorithm in every panel

    def band(ax, curves, label):
        if not curves:
            return
        steps = [s for s, _ in curves[0]]
        values = np.array([[v for _, v in c][:len(steps)] for c in curves])
        mean, std = values.mean(0), values.std(0)
        ax.plot(steps, mean, label=label, color=colours[label])
        ax.fill_between(steps, mean - std, mean + std, alpha=0.2, color=colours[label])

    def legend(axes) -> None:
        """One legend of every algorithm drawn anywhere (a dataset may lack some columns so far)."""
        labelled = {}
        for ax in axes:
            for handle, label in zip(*ax.get_legend_handles_labels()):
                labelled.setdefault(label, handle)
        if labelled:
            axes[-1].legend(list(labelled.values()), list(labelled), fontsize=8)

    names = list(results)
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        for algo in algos:
            if algo in results[name]["algos"]:
                band(ax, [s["curve"] for s in results[name]["algos"][algo]["seeds"].values()], algo)
        ax.set(title=name, xlabel="gradient updates", ylabel="normalised score")
    legend(axes[0])
    fig.tight_layout()
    fig.savefig(out + "-curves.png", dpi=110)

    present = [a for a in FIGURE1_ALGOS if a in algos]
    if present:
        fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.6), squeeze=False)
        for ax, name in zip(axes[0], names):
            for algo in present:
                if algo in results[name]["algos"]:
                    band(ax, [s["gen_mse_curve"] for s in results[name]["algos"][algo]["seeds"].values()
                              if s["gen_mse_curve"]], algo)
            ax.set(title=f"{name}: generative error", xlabel="gradient updates",
                   ylabel="gen_mse (last 500 batches)", yscale="log")
        legend(axes[0])
        fig.tight_layout()
        fig.savefig(out + "-figure1.png", dpi=110)


RUNNERS = {"aql": train_one, "d3rlpy": train_d3rlpy}


def run_job(args: argparse.Namespace, job: tuple, started: float) -> str:
    """One grid cell (`job`: runner name, env, dataset, algorithm, seed), unless the deadline has passed."""
    runner, env, data, algo, seed = job
    if args.deadline is not None and time.time() - started > 60 * args.deadline:
        return f"{dataset_name(data)} {algo} seed {seed}: not started (--deadline {args.deadline} min)"
    return RUNNERS[runner](args, env, data, algo, seed)


def run_grid(args: argparse.Namespace, jobs: list[tuple]) -> None:
    """`--jobs 1`: the runs one after another here. More: each run a Ray Tune trial with one CPU (and one GPU
    with --device cuda), `--jobs` at a time, on a local Ray or the cluster at `--address`. Either way every run
    is one `aql train` subprocess writing its record, so an interrupted grid resumes from the records."""
    started = time.time()
    if args.jobs == 1 and args.address is None:
        messages = [run_job(args, job, started) for job in jobs]
    else:
        sys.path.insert(0, os.path.dirname(HERE))
        from aql_agent.distributed import run_trials

        messages = run_trials([{"job": list(job)} for job in jobs],
                              lambda config: run_job(args, tuple(config["job"]), started), concurrent=args.jobs,
                              storage=os.path.join(args.runs, "tune"), name="grid", address=args.address,
                              gpus_per_trial=1 if args.device.startswith("cuda") else 0)
    for done, message in enumerate(messages, 1):
        print(f"[{done}/{len(jobs)}] {message}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algos", nargs="+", default=["bc", "bcq", "bear", "cql", "aql"])
    parser.add_argument("--datasets", nargs="+", help="PATH or ENV_ID=PATH")
    parser.add_argument("--env", help="gymnasium id for datasets given as a bare PATH")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--eval-every", type=int, default=5000)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--log-every", type=int, default=500, help="also the gen_mse window's reporting step")
    parser.add_argument("--set", action="append", default=[], metavar="ALGO:KEY=VALUE",
                        help="learner setting for one algorithm, e.g. aql:warmup_steps=1000; d3rlpy's take "
                        "d3rlpy config fields as JSON values, e.g. d3rlpy-bear:warmup_steps=1000")
    parser.add_argument("--d3rlpy", nargs="*", default=[], choices=["bc", "bcq", "bear", "cql"],
                        help="also train d3rlpy's implementation of these on the same grid")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (one torch thread each); more than 1 runs "
                        "them as Ray Tune trials (the ray extra)")
    parser.add_argument("--address", help="the Ray cluster to run the trials on (auto: the one `ray start` runs here; "
                        "the datasets, runs and records folders must be on storage every node shares)")
    parser.add_argument("--device", default="cpu", help="torch device of every run (cuda, cuda:1, ...)")
    parser.add_argument("--runs", default="runs/table1", help="folder of the run folders (scratch, not committed)")
    parser.add_argument("--records", default=os.path.join(HERE, "results", "table1-runs"),
                        help="folder of the per-run records (committed; recorded runs are not run again)")
    parser.add_argument("--deadline", type=float, help="start no new run after this many minutes")
    parser.add_argument("--summary-only", action="store_true", help="only build the outputs from the records")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "table1"), help="output stem")
    parser.add_argument("--d3rlpy-run", nargs=10, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.d3rlpy_run:
        algo, env, data, folder, seed, steps, eval_every, episodes, changes, device = args.d3rlpy_run
        d3rlpy_run(algo, env, data, folder, int(seed), int(steps), int(eval_every), int(episodes),
                   json.loads(changes), device)
        return
    if not args.datasets:
        parser.error("--datasets is required")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    datasets = [parse_dataset(spec, args.env) for spec in args.datasets]
    jobs = [("aql", env, data, algo, seed) for env, data in datasets for seed in args.seeds for algo in args.algos]
    jobs += [("d3rlpy", env, data, algo, seed) for env, data in datasets for seed in args.seeds for algo in args.d3rlpy]
    if not args.summary_only:
        run_grid(args, jobs)

    algos = args.algos + [f"d3rlpy-{a}" for a in args.d3rlpy]
    results = collect(args, datasets, algos)
    answers = verdicts(results, algos, len(args.seeds))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump({"settings": {k: v for k, v in vars(args).items() if k != "d3rlpy_run"}, "results": results,
                   "aql_at_or_above_best": answers}, f, indent=1)
    table = markdown(results, algos, args, answers)
    with open(args.out + ".md", "w") as f:
        f.write(table)
    plots(results, algos, args.out)
    print(table)


if __name__ == "__main__":
    main()
