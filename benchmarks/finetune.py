"""Offline pretraining then online fine-tuning, against the offline-only control and online learning from
scratch, per seed.

    python benchmarks/finetune.py --suite hopper --seeds 0 1 2 --jobs 2 --runs runs/finetune \\
        --out benchmarks/results/finetune

For each suite and seed:

1. **offline**: `aql train` from logged data (`offline_steps` updates; `--train-args` adds flags to it and to
   the control, e.g. `--set critic_layer_norm=true`: use one `--runs` folder per set of them);
2. **fine-tuned**, one arm per `--recipes` entry: `aql finetune --recipe R` from that checkpoint,
   `online_steps` env steps at `updates_per_step` updates each (`--finetune-args` adds flags to every one),
   and one per `--arm NAME=RECIPE FLAGS` (an ablation: the recipe with some flags changed, e.g.
   `--arm "loosen-no-relax=loosen --relax 1"`), all from the same offline checkpoint;
3. **offline-only control**: the offline run resumed for `online_steps * updates_per_step` extra updates on the
   offline data alone, so the arms differ only in what they learn from; it is evaluated every
   `control_eval_every` updates, so each fine-tuned arm is also compared with the control after exactly as
   many updates as the arm made (a warm-started arm makes none during its warm-up: 15k, not 20k);
4. **scratch**: online learning from nothing for the same env steps: our SAC (the `aql make-dataset` loop that
   benchmarks/sac_reference.py checks against Stable-Baselines3) on MuJoCo, online DQN on a game (`aql finetune
   --offline-ratio 0` from an untrained DQN, so it plays and learns exactly as the fine-tuned arms do);
   `--no-scratch` leaves it out (e.g. when an earlier run at the same env steps measured it).

`--algo` picks the MuJoCo suites' learner (default aql; e.g. `--algo cql --train-args "--set calibrated=true"`
for Cal-QL). One seed's runs split into two lanes, one per core: `--arms-only` in one process (the offline run,
then the fine-tuned arms) and, once the offline run is finished, `--controls-only` in another (the offline-only
control and scratch); `--summary-only` then builds the outputs. Run again after an interruption, the harness
skips finished runs and continues each unfinished one from its latest checkpoint (`--resume`: bit for bit the
run it would have been), so one seed's runs can span sittings; only the scratch SAC starts again.

Every arm is evaluated with the same seeded episodes (games: greedy play, `eval_episodes` per point, Wilson
intervals in eval.csv). Suites: `hopper` (AQL on ../shared/datasets' hopper-medium, normalised score),
`halfcheetah` (AQL on the halfcheetah-medium set `aql make-dataset` makes, see docs/datasets.md) and `moba`
(discrete AQL on behaviour-tree games, win rate against an opponent it starts below 50% against); `--budget
KEY=VALUE` changes their budgets (e.g. `--budget online_steps=200000 --budget eval_every=40000`; one `--runs`
folder per budget). Outputs OUT.json (curves), OUT.md (table) and OUT.png (curves against env steps, or
updates for the control).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import shutil
import subprocess
import sys

import numpy as np

from aql_agent.adapters.games import DEFAULT_GAME
from aql_agent.learners import ALGORITHMS, is_discrete
from aql_agent.scores import normalized_score
from figure2 import DEFAULT_PAIRS, record_data
from plot_runs import read
from table1 import finished_step, refuse_if_in_use, remove_stale_run, resume_flags

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.join(HERE, "..", "..", "shared", "datasets")
MUJOCO = {"algo": "aql", "metric": "normalized_mean", "offline_steps": 20000, "online_steps": 20000,
          "updates_per_step": 1.0, "eval_every": 2000, "control_eval_every": 1000, "eval_episodes": 10,
          "scratch": "sac",
          "train_args": ["--set", "warmup_steps=2000"], "finetune_args": ["--round-steps", "1000"]}
MUJOCO_ALGOS = tuple(algo for algo in ALGORITHMS if not is_discrete(algo))
"""What `--algo` may train on the MuJoCo suites: the continuous learners."""
WARM_STARTED = tuple(algo for algo in MUJOCO_ALGOS if "warmup_steps" in
                     {field.name for field in dataclasses.fields(ALGORITHMS[algo][0].config_class)})
"""The learners with a warm start, which keep the suites' `warmup_steps` flag (Table 1's 2000 updates)."""
SUITES = {
    "hopper": {**MUJOCO, "env": "Hopper-v5"},
    "halfcheetah": {**MUJOCO, "env": "HalfCheetah-v5"},
    "moba": {"algo": "aql-discrete", "env": DEFAULT_GAME, "metric": "win_rate", "offline_steps": 8000,
             "online_steps": 40000, "updates_per_step": 0.1, "eval_every": 10000, "eval_episodes": 40,
             "scratch": "dqn", "train_args": ["--agent", "all"],
             "finetune_args": ["--round-games", "2"], "opponent": "mix:bt:medium,bt:hard"},
}


BUDGET_KEYS = {"offline_steps": int, "online_steps": int, "updates_per_step": float, "eval_every": int,
               "control_eval_every": int, "eval_episodes": int}
"""What `--budget KEY=VALUE` may change in every chosen suite (each a positive number)."""

OFFLINE_COPY = "agent:offline"
"""In an opponent spec: a fixed copy of the seed's own offline checkpoint (e.g. `mix:agent:offline,bt:hard`)."""


def run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}\n{result.stderr[-2000:]}")


def aql(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "aql_agent", *arguments, "--threads", "1", "--no-progress", "--no-tensorboard"]


def arm_folder(runs: str, suite: str, arm: str, seed: int) -> str:
    return os.path.join(runs, suite, arm, f"seed{seed}")


def fine_tuned_arms(recipes: list[str], specs: list[str]) -> dict[str, list[str]]:
    """The fine-tuned arms by name, each with its `aql finetune` flags: one per recipe (named after it), then one
    per `NAME=RECIPE FLAGS...` spec. A name is a folder name, so two arms never share a run folder."""
    arms = {recipe: ["--recipe", recipe] for recipe in recipes}
    for spec in specs:
        name, _, rest = spec.partition("=")
        words = rest.split()
        if not name or not words or not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
            raise SystemExit(f"finetune: error: --arm {spec!r}: expected NAME=RECIPE [FLAGS...] with NAME made of "
                             "letters, digits, '-', '_' or '.', e.g. --arm \"loosen-no-relax=loosen --relax 1\"")
        if name in arms:
            raise SystemExit(f"finetune: error: --arm {spec!r}: the arm {name!r} is already named (by --recipes or "
                             "an earlier --arm); give each arm its own name")
        arms[name] = ["--recipe", *words]
    if not arms:
        raise SystemExit("finetune: error: no fine-tuned arm: name at least one with --recipes or --arm")
    return arms


def budget_changes(specs: list[str]) -> dict[str, int | float]:
    """`--budget KEY=VALUE` flags as suite config changes; a bad key or value is one error line."""
    changes = {}
    for spec in specs:
        key, _, text = spec.partition("=")
        if key not in BUDGET_KEYS:
            raise SystemExit(f"finetune: error: --budget {spec!r}: expected KEY=VALUE with KEY one of "
                             f"{', '.join(BUDGET_KEYS)}, e.g. --budget online_steps=200000")
        try:
            value = BUDGET_KEYS[key](text)
        except ValueError:
            value = None
        if value is None or not value > 0:
            raise SystemExit(f"finetune: error: --budget {spec!r}: {key} must be a positive "
                             f"{'whole ' if BUDGET_KEYS[key] is int else ''}number")
        changes[key] = value
    return changes


def one_seed(suite: str, config: dict, data: str, runs: str, seed: int, arms: dict[str, list[str]],
             arms_only: bool = False, scratch_arm: bool = True, controls_only: bool = False) -> str:
    """Offline run, then every arm (each skipped when already done); with `arms_only`, not the controls; with
    `controls_only`, not the fine-tuned arms (and not the offline run: it must be finished); without
    `scratch_arm`, no learning from scratch."""
    offline, control = arm_folder(runs, suite, "offline", seed), arm_folder(runs, suite, "offline-only", seed)
    base = ["--env", config["env"], "--eval-episodes", str(config["eval_episodes"]), "--seed", str(seed)]
    opponent = config.get("opponent")
    common = [*base, *(["--opponent", opponent.replace(OFFLINE_COPY, f"agent:{offline}")] if opponent else [])]
    offline_done = finished_step(offline)
    if offline_done < config["offline_steps"]:
        if controls_only:
            raise SystemExit(f"finetune: error: --controls-only needs the finished offline run {offline}: make it "
                             "first (a run without --controls-only, e.g. one with --arms-only)")
        # against a copy of itself the offline run is evaluated against the game's default opponent: the
        # copy exists only once it is trained (the fine-tuned run's first evaluation is the start against it)
        evaluated_as = base if opponent and OFFLINE_COPY in opponent else common
        run(aql("train", "--algo", config["algo"], "--data", data, "--out", offline, "--steps",
                str(config["offline_steps"]), "--eval-every", str(config["offline_steps"]), "--checkpoint-every",
                str(max(1, config["offline_steps"] // 10)), *evaluated_as, *config["train_args"],
                *resume_flags(offline, offline_done)))
    online = ["--steps", str(config["online_steps"]), "--eval-every", str(config["eval_every"]), *common]
    for name, flags in ({} if controls_only else arms).items():
        tuned = arm_folder(runs, suite, f"finetuned-{name}", seed)
        tuned_done = finished_step(tuned)
        if tuned_done < config["online_steps"]:
            run(aql("finetune", "--checkpoint", offline, "--out", tuned, "--updates-per-step",
                    str(config["updates_per_step"]), *online, *config["finetune_args"], *flags,
                    *resume_flags(tuned, tuned_done)))
    if arms_only:
        return f"{suite} seed {seed}: fine-tuned arms done"
    extra = int(config["online_steps"] * config["updates_per_step"])
    control_done = finished_step(control)
    if control_done < config["offline_steps"] + extra:
        if control_done < config["offline_steps"]:  # not copied yet (a cut copy has no latest.json)
            remove_stale_run(control)
            shutil.rmtree(control + ".copying", ignore_errors=True)
            shutil.copytree(offline, control + ".copying")
            os.replace(control + ".copying", control)
        else:  # an interrupted control goes on from its latest checkpoint
            refuse_if_in_use(control)
        every = control_grid(config)
        run(aql("train", "--algo", config["algo"], "--data", data, "--out", control, "--resume", "--steps",
                str(config["offline_steps"] + extra), "--eval-every", str(config.get("control_eval_every", every)),
                "--checkpoint-every", str(every), *common, *config["train_args"]))
    if not scratch_arm:
        return f"{suite} seed {seed}: done (no scratch arm)"
    scratch = arm_folder(runs, suite, "scratch", seed)
    if config["scratch"] == "sac" and not os.path.exists(os.path.join(scratch, "curve.json")):
        import torch
        from sac_reference import run_ours

        torch.set_num_threads(1)  # as the aql commands here (--threads 1): float sums, so curves, depend on it
        curve = run_ours(config["env"], seed, config["online_steps"], config["eval_every"], config["eval_episodes"],
                         learning_starts=5000)
        os.makedirs(scratch, exist_ok=True)
        with open(os.path.join(scratch, "curve.json"), "w") as f:
            json.dump([(step, normalized_score(config["env"], value)) for step, value in curve], f)
    elif config["scratch"] == "dqn" and finished_step(os.path.join(scratch, "online")) < config["online_steps"]:
        untrained, online_run = os.path.join(scratch, "untrained"), os.path.join(scratch, "online")
        if not finished_step(untrained):
            remove_stale_run(scratch)
            run(aql("train", "--algo", "dqn", "--data", data, "--out", untrained, "--steps", "1", "--agent", "all"))
        run(aql("finetune", "--checkpoint", untrained, "--out", online_run, "--offline-ratio", "0",
                "--updates-per-step", str(config["updates_per_step"]), *online, *config["finetune_args"],
                *resume_flags(online_run, finished_step(online_run))))
    return f"{suite} seed {seed}: done"


def choose_learner(algo: str) -> None:
    """The MuJoCo suites train `algo` (the warm-start flag only where the learner has a warm start)."""
    for suite in ("hopper", "halfcheetah"):
        SUITES[suite]["algo"] = algo
        SUITES[suite]["train_args"] = list(MUJOCO["train_args"]) if algo in WARM_STARTED else []


def control_grid(config: dict) -> int:
    """Updates between the control's points on the arms' grid: the updates of eval_every env steps."""
    return max(1, int(config["eval_every"] * config["updates_per_step"]))


def curves(suite: str, config: dict, runs: str, seed: int, fine_tuned: list[str], scratch_arm: bool = True) -> dict:
    """Every arm's evaluations against env steps after the offline checkpoint (the control's extra updates are
    counted as the env steps that would have brought them: updates / updates_per_step; its evaluations between
    those points are left to `matched_control`); scratch only with `scratch_arm`."""
    metric, offline_steps, ratio = config["metric"], config["offline_steps"], config["updates_per_step"]

    def points(path: str, shift: int = 0, scale: float = 1.0, grid: int = 1) -> list:
        return [(int(round((r["step"] - shift) / scale)), r[metric], r.get(f"{metric}_low"), r.get(f"{metric}_high"))
                for r in read(path) if r["step"] >= shift and (r["step"] - shift) % grid == 0]

    arms = {f"finetuned-{name}": points(os.path.join(arm_folder(runs, suite, f"finetuned-{name}", seed), "eval.csv"))
            for name in fine_tuned}
    arms["offline-only"] = points(os.path.join(arm_folder(runs, suite, "offline-only", seed), "eval.csv"),
                                  offline_steps, ratio, control_grid(config))
    if not scratch_arm:
        return arms
    scratch = arm_folder(runs, suite, "scratch", seed)
    if config["scratch"] == "sac":
        with open(os.path.join(scratch, "curve.json")) as f:
            arms["scratch"] = [(step, value, None, None) for step, value in json.load(f)]
    else:
        arms["scratch"] = points(os.path.join(scratch, "online", "eval.csv"))
    return arms


def matched_control(suite: str, config: dict, runs: str, seed: int, fine_tuned: list[str]) -> dict:
    """For each fine-tuned arm, at each of its evaluations: (env step, the control's figure after as many updates
    as the arm had made by then, the control's updates). The issue's "offline-only with the same number of
    updates": a warm-started arm makes no updates during its warm-up, so at its last evaluation it has made
    fewer than the control's final point. Where the control was not evaluated at exactly that count, its latest
    evaluation before it stands in (the updates column says which)."""
    metric, offline_steps = config["metric"], config["offline_steps"]
    control = read(os.path.join(arm_folder(runs, suite, "offline-only", seed), "eval.csv"))
    matched = {}
    for name in fine_tuned:
        folder = arm_folder(runs, suite, f"finetuned-{name}", seed)
        made = {int(r["step"]): int(r["updates"]) - offline_steps for r in read(os.path.join(folder, "rounds.csv"))}
        points = []
        for row in read(os.path.join(folder, "eval.csv")):
            updates = made.get(int(row["step"]), 0)
            stand_in = max((r for r in control if offline_steps <= r["step"] <= offline_steps + updates),
                           key=lambda r: r["step"])
            points.append((int(row["step"]), stand_in[metric], int(stand_in["step"]) - offline_steps))
        matched[f"finetuned-{name}"] = points
    return matched


def wilson(wins: float, games: int) -> tuple[float, float]:
    from aql_agent.adapters.games import wilson_interval

    return wilson_interval(int(round(wins)), games)


def summarise(results: dict) -> str:
    """Per suite and arm: the final evaluation and the mean of the last five, mean +/- std over seeds (with
    the per-seed figures), games pooled over seeds with their Wilson interval for win rates; then whether
    each fine-tuned arm beats its offline start, the offline-only control (at its end, and after as many
    updates as the arm made where `matched_control` is recorded) and scratch by more than the pooled seed std."""
    lines = []
    for suite, result in results.items():
        seeds = list(result["seeds"].values())
        arms = list(seeds[0])
        against = f" vs {result['opponent']}" if result.get("opponent") else ""
        lines += [f"### {suite}: {result['algo']} on {result['env']}, {result['metric']}{against}, {len(seeds)} seeds",
                  "",
                  "| arm | env steps | final, mean +/- std | per seed | last 5 evaluations, mean +/- std | per seed |"
                  + (" pooled final games, Wilson 95% |" if result["metric"] == "win_rate" else ""),
                  "|---|---|---|---|---|---|" + ("---|" if result["metric"] == "win_rate" else "")]
        finals: dict = {"offline checkpoint": [s[arms[0]][0][1] for s in seeds]}
        lasts: dict = {"offline checkpoint": finals["offline checkpoint"]}
        rows = [("offline checkpoint", 0, finals["offline checkpoint"], finals["offline checkpoint"])]
        for arm in arms:
            finals[arm] = [s[arm][-1][1] for s in seeds]
            last5 = [float(np.mean([p[1] for p in s[arm][-5:]])) for s in seeds]
            lasts[arm] = last5
            rows.append((arm, seeds[0][arm][-1][0], finals[arm], last5))
        # the control after as many updates as each fine-tuned arm made (older outputs have no such record)
        matched = list(result.get("matched_control", {}).values())
        same = {}
        for arm in (a for a in arms if a.startswith("finetuned") and matched):
            name = f"offline-only at {arm}'s updates"
            same[arm] = name
            finals[name] = [m[arm][-1][1] for m in matched]
            lasts[name] = [float(np.mean([p[1] for p in m[arm][-5:]])) for m in matched]
            rows.append((name, f"{matched[0][arm][-1][2]} updates", finals[name], lasts[name]))
        for name, steps, final, last5 in rows:
            line = (f"| {name} | {steps} | {np.mean(final):.3f} +/- {np.std(final):.3f} | "
                    f"{', '.join(f'{v:.3f}' for v in final)} | {np.mean(last5):.3f} +/- {np.std(last5):.3f} | "
                    f"{', '.join(f'{v:.3f}' for v in last5)} |")
            if result["metric"] == "win_rate":
                games = result["budget"]["eval_episodes"] * len(final)
                low, high = wilson(sum(final) * result["budget"]["eval_episodes"], games)
                line += f" {games}: [{low:.2f}, {high:.2f}] |"
            lines.append(line)
        verdicts = {}
        for arm in arms:
            if not arm.startswith("finetuned"):
                continue
            verdicts[arm] = {}
            for measure, figures in (("final", finals), ("last 5", lasts)):
                checks = {}
                others = {"offline checkpoint": "offline checkpoint", "offline-only": "offline-only",
                          **({"offline-only, same updates": same[arm]} if arm in same else {}),
                          **({"scratch": "scratch"} if "scratch" in arms else {})}
                for other, row in others.items():
                    gap = float(np.mean(figures[arm]) - np.mean(figures[row]))
                    if len(seeds) == 1:  # no seed-std to weigh the gap against
                        checks[other] = {"gap": gap, "pooled_std": None, "beats": None}
                        continue
                    pooled = float(np.sqrt((np.var(figures[arm], ddof=1) + np.var(figures[row], ddof=1)) / 2))
                    checks[other] = {"gap": gap, "pooled_std": pooled, "beats": bool(gap > pooled)}
                verdicts[arm][measure] = checks
                lines.append("")
                lines.append(f"{arm}, {measure}: " + "; ".join(
                    f"vs {other} {c['gap']:+.3f} (" + ("one seed: no verdict)" if c["beats"] is None else
                                                       f"pooled std {c['pooled_std']:.3f}: "
                                                       f"{'beats' if c['beats'] else 'does not beat'})")
                    for other, c in checks.items()))
        result["summary"] = {"finals": finals, "last5": lasts, "verdicts": verdicts}
        lines.append("")
    return "\n".join(lines)


def plot(results: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4), squeeze=False)
    colors = itertools.cycle(["tab:green", "tab:olive", "tab:purple", "tab:brown", "tab:red", "tab:pink",
                              "tab:cyan", "tab:orange"])
    palette = {"offline-only": "tab:blue", "scratch": "tab:gray"}
    for ax, (suite, result) in zip(axes[0], results.items()):
        seeds = list(result["seeds"].values())
        for arm in seeds[0]:
            color = palette.get(arm) or palette.setdefault(arm, next(colors))
            steps = [p[0] for p in seeds[0][arm]]
            values = np.array([[p[1] for p in s[arm]] for s in seeds if len(s[arm]) == len(steps)])
            mean, std = values.mean(0), values.std(0)
            ax.plot(steps, mean, "o-", ms=3, color=color, label=arm)
            ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.15)
        ax.set(title=f"{suite}: {result['algo']} ({len(seeds)} seeds, mean +/- std)",
               xlabel="env steps after the offline checkpoint (control: its updates / updates_per_step)",
               ylabel=result["metric"])
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", nargs="+", default=["hopper"], choices=list(SUITES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--recipes", nargs="*", default=["conservative"], help="one fine-tuned arm per recipe")
    parser.add_argument("--arm", action="append", default=[], metavar="NAME=RECIPE FLAGS",
                        help="one more fine-tuned arm, finetuned-NAME: the recipe with these aql finetune flags "
                        "(repeatable; e.g. \"loosen-no-relax=loosen --relax 1\")")
    parser.add_argument("--jobs", type=int, default=1, help="(suite, seed) runs at a time, as Ray Tune trials "
                        "(the ray extra); 1: one after another without Ray")
    parser.add_argument("--address", help="the Ray cluster to run the trials on (default: a local one)")
    parser.add_argument("--runs", default="runs/finetune")
    parser.add_argument("--hopper-data", default=os.path.join(SHARED, "hopper-medium.npz"))
    parser.add_argument("--halfcheetah-data", default="datasets/halfcheetah/halfcheetah-medium.npz")
    parser.add_argument("--moba-games", type=int, default=8, help="games per behaviour-tree pairing (data)")
    parser.add_argument("--moba-pairs", nargs="+", default=DEFAULT_PAIRS, metavar="PLAYER,OPPONENT",
                        help="the behaviour-tree pairings the moba data is recorded from (bt:LEVEL or random each; "
                        "one --runs folder per set of pairings; default: %(default)s)")
    parser.add_argument("--moba-opponent", default=SUITES["moba"]["opponent"],
                        help="who the moba agent plays online and in evaluations (one --runs folder per opponent); "
                        f"{OFFLINE_COPY}: a fixed copy of the seed's offline checkpoint")
    parser.add_argument("--finetune-args", default="", help="extra aql finetune flags for every fine-tuned run")
    parser.add_argument("--train-args", default="", help="extra aql train flags for the offline run and the "
                        "offline-only control (one --runs folder per set: finished runs are not retrained)")
    parser.add_argument("--budget", action="append", default=[], metavar="KEY=VALUE",
                        help=f"change a budget of every chosen suite ({', '.join(BUDGET_KEYS)}; repeatable; one "
                        "--runs folder per budget: finished runs are not retrained)")
    parser.add_argument("--summary-only", action="store_true", help="only build the outputs from the runs")
    parser.add_argument("--arms-only", action="store_true", help="train only the offline run and the fine-tuned "
                        "arms, not the controls (another invocation on the same --runs makes them: two at once "
                        "must never both make one; no outputs are built)")
    parser.add_argument("--controls-only", action="store_true", help="train only the controls (offline-only, "
                        "scratch) from finished offline runs, while another invocation with --arms-only on the same "
                        "--runs makes the fine-tuned arms: one lane per core; no outputs are built")
    parser.add_argument("--algo", choices=MUJOCO_ALGOS, default="aql", help="the learner of the MuJoCo suites "
                        "(one --runs folder per learner; moba always trains aql-discrete)")
    parser.add_argument("--no-scratch", action="store_true", help="no learning from scratch (when another run "
                        "with the same env steps already measured it); the outputs leave its row out")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "finetune"))
    args = parser.parse_args()
    arms = fine_tuned_arms(args.recipes, args.arm)
    if args.arms_only and args.controls_only:
        raise SystemExit("finetune: error: --arms-only and --controls-only split one run into two lanes: give one")
    budget = budget_changes(args.budget)
    choose_learner(args.algo)
    for config in SUITES.values():
        config.update(budget)
        config["finetune_args"] = config["finetune_args"] + args.finetune_args.split()
        config["train_args"] = config["train_args"] + args.train_args.split()
    SUITES["moba"]["opponent"] = args.moba_opponent

    data = {"hopper": args.hopper_data, "halfcheetah": args.halfcheetah_data}
    if "moba" in args.suite:
        data["moba"] = record_data(os.path.join(args.runs, "data", "moba-bt-games"), args.moba_pairs, args.moba_games,
                                   0)
    jobs = [{"suite": suite, "seed": seed} for seed in args.seeds for suite in args.suite]

    def job(config: dict) -> str:
        return one_seed(config["suite"], SUITES[config["suite"]], data[config["suite"]], args.runs, config["seed"],
                        arms, args.arms_only, not args.no_scratch, args.controls_only)

    if not args.summary_only:
        if args.jobs == 1 and args.address is None:
            messages = [job(config) for config in jobs]
        else:  # each (suite, seed) a Ray Tune trial
            from aql_agent.distributed import run_trials

            messages = run_trials(jobs, job, concurrent=args.jobs, storage=os.path.join(args.runs, "tune"),
                                  name="finetune", address=args.address)
        print("\n".join(messages), flush=True)
        if args.arms_only or args.controls_only:
            return
    results = {}
    for suite in args.suite:
        config = SUITES[suite]
        results[suite] = {"algo": config["algo"], "env": config["env"], "metric": config["metric"],
                          "opponent": config.get("opponent"),
                          **({"data_pairs": args.moba_pairs} if suite == "moba" else {}),
                          "data": data[suite], "recipes": args.recipes, "arms": arms,
                          "train_args": config["train_args"], "finetune_args": config["finetune_args"],
                          "budget": {k: config[k] for k in ("offline_steps", "online_steps", "updates_per_step",
                                                            "eval_every", "eval_episodes")},
                          "seeds": {seed: curves(suite, config, args.runs, seed, list(arms), not args.no_scratch)
                                    for seed in args.seeds},
                          "matched_control": {seed: matched_control(suite, config, args.runs, seed, list(arms))
                                              for seed in args.seeds}}
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
