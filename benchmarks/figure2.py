"""The paper's Figure 2 on moba-1v1: DQN, discrete BCQ and discrete AQL learn from logged games; win rate
against the behaviour-tree AI over training.

    python benchmarks/figure2.py --seeds 0 1 2 --steps 10000 --eval-every 2000 --eval-games 10 --jobs 2 \\
        --runs runs/figure2 --out benchmarks/results/figure2

1. **Data**: `--games` seeded games for each pairing of `--pairs` (behaviour-tree levels, mixed as a stand-in for
   logged human games of varying skill), recorded with `tools/record`'s recorder into `RUNS/data/moba-bt-games/`
   (runs go to `RUNS/moba-bt-games/ALGO/seedN`); both sides
   are learned from (`--agent all`). Existing logs are kept, so the data is made once.
2. **Training**: each (algorithm, seed) is one `aql train` run with the same networks and budget (one torch
   thread each, `--jobs` at a time as Ray Tune trials; finished runs are skipped, interrupted ones resume),
   evaluated every `--eval-every` updates by `--eval-games` seeded games against `--opponent`, sides swapped every game.
3. **Outputs**: OUT.json (every run's win-rate curve and final figures), OUT.md (final win rate, mean +/- std
   over seeds, and G's cross-entropy), OUT.png (win rate and gen_ce over training, mean and std over seeds).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import types

import numpy as np

from aql_agent.adapters.games import DEFAULT_GAME, game_kind
from plot_runs import read
from table1 import run_folder, run_grid

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PAIRS = ["bt:hard,bt:medium", "bt:hard,bt:easy", "bt:medium,bt:easy", "bt:medium,bt:medium"]


def record_data(folder: str, pairs: list[str], games: int, seed: int) -> str:
    """One log per pairing (`PLAYER,OPPONENT`, each bt:LEVEL or random), made once. A folder holding logs of
    other pairings is refused: training reads the whole folder, so they would join the data unseen."""
    os.makedirs(folder, exist_ok=True)
    logs = []  # (player, opponent, first seed, log name) per pairing
    for index, pair in enumerate(pairs):
        player, comma, opponent = pair.partition(",")
        if not comma:
            raise SystemExit(f"figure2: a pairing is PLAYER,OPPONENT (bt:LEVEL or random each), e.g. "
                             f"bt:hard,bt:medium; got {pair!r}")
        first_seed = seed + 1000 * index
        logs.append((player, opponent, first_seed, f"{DEFAULT_GAME}-{player.replace(':', '-')}-vs-"
                                                   f"{opponent.replace(':', '-')}-seed{first_seed}.aqlog"))
    names = {name for *_, name in logs}
    others = sorted(set(os.listdir(folder)) - names - {name + ".partial" for name in names})
    if others:
        raise SystemExit(f"figure2: error: {folder} holds logs of other pairings or seeds ({', '.join(others)}); "
                         "use another --runs folder for these pairings")
    for player, opponent, first_seed, name in logs:
        if os.path.exists(os.path.join(folder, name)):
            continue
        path = game_kind(DEFAULT_GAME).record(folder, player, opponent, episodes=games, seed=first_seed, progress=True)
        print(f"recorded {path}", flush=True)
    return folder


def collect(args: argparse.Namespace, data: str) -> dict:
    results = {}
    for algo in args.algos:
        seeds = {}
        for seed in args.seeds:
            folder = run_folder(args.runs, data, algo, seed)
            evaluation = read(os.path.join(folder, "eval.csv"))
            metrics = read(os.path.join(folder, "metrics.csv"))
            seeds[seed] = {"curve": [(int(e["step"]), e["win_rate"]) for e in evaluation],
                           "final": evaluation[-1]["win_rate"],
                           "gen_ce_curve": [(int(m["step"]), m["gen_ce"]) for m in metrics if "gen_ce" in m],
                           "gen_accuracy": metrics[-1].get("gen_accuracy")}
        finals = [s["final"] for s in seeds.values()]
        ce = [s["gen_ce_curve"][-1][1] for s in seeds.values()]
        results[algo] = {"final_mean": float(np.mean(finals)), "final_std": float(np.std(finals)),
                         "gen_ce_mean": float(np.mean(ce)), "gen_ce_std": float(np.std(ce)), "seeds": seeds}
    return results


def markdown(results: dict, args: argparse.Namespace) -> str:
    lines = [f"Win rate against {args.opponent} at the last evaluation ({args.steps} updates; {args.eval_games} games "
             f"per evaluation; mean +/- std over seeds {', '.join(map(str, args.seeds))}), and G's cross-entropy on "
             "the dataset's actions (last 500 batches; DQN: its softmax(Q) policy's).", "",
             "| algorithm | win rate | gen_ce |", "|---|---|---|"]
    for algo, r in results.items():
        lines.append(f"| {algo} | {r['final_mean']:.2f} +/- {r['final_std']:.2f} | "
                     f"{r['gen_ce_mean']:.3f} +/- {r['gen_ce_std']:.3f} |")
    return "\n".join(lines) + "\n"


def plot(results: dict, args: argparse.Namespace, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for algo, r in results.items():
        for ax, key in ((left, "curve"), (right, "gen_ce_curve")):
            curves = [s[key] for s in r["seeds"].values()]
            length = min(len(c) for c in curves)
            steps = [step for step, _ in curves[0][:length]]
            values = np.array([[v for _, v in c[:length]] for c in curves])
            mean, std = values.mean(0), values.std(0)
            ax.plot(steps, mean, label=algo, marker="o" if key == "curve" else None)
            ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
    left.set(xlabel="gradient updates", ylabel=f"win rate vs {args.opponent}", ylim=(-0.02, 1.02),
             title=f"moba-1v1, {len(args.seeds)} seeds, {args.eval_games} games per point")
    right.set(xlabel="gradient updates", ylabel="gen_ce (last 500 batches)", title="imitation cross-entropy")
    left.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algos", nargs="+", default=["dqn", "bcq-discrete", "aql-discrete"])
    parser.add_argument("--pairs", nargs="+", default=DEFAULT_PAIRS,
                        help="pairings recorded for the dataset, PLAYER,OPPONENT (default: %(default)s)")
    parser.add_argument("--games", type=int, default=10, help="games recorded per pairing")
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--eval-every", type=int, default=2000)
    parser.add_argument("--eval-games", type=int, default=10)
    parser.add_argument("--opponent", default="bt:medium")
    parser.add_argument("--log-every", type=int, default=500)
    parser.add_argument("--set", action="append", default=[], metavar="ALGO:KEY=VALUE",
                        help="learner setting for one algorithm (every algorithm gets the same networks by default)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (one torch thread each); more than 1 runs "
                        "them as Ray Tune trials (the ray extra)")
    parser.add_argument("--address", help="the Ray cluster to run the trials on (default: a local one)")
    parser.add_argument("--runs", default="runs/figure2", help="folder of the data and the run folders")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "figure2"), help="output stem")
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    data = record_data(os.path.join(args.runs, "data", "moba-bt-games"), args.pairs, args.games, args.data_seed)
    # table1's train_one also writes each finished run's record; figure2 keeps them beside its run folders.
    harness = types.SimpleNamespace(runs=args.runs, records=os.path.join(args.runs, "records"), device="cpu",
                                    steps=args.steps, eval_every=args.eval_every,
                                    eval_episodes=args.eval_games, log_every=args.log_every, set=args.set,
                                    train_args=["--agent", "all", "--opponent", args.opponent], jobs=args.jobs,
                                    address=args.address, deadline=None)
    run_grid(harness, [("aql", DEFAULT_GAME, data, algo, seed)
                       for seed, algo in itertools.product(args.seeds, args.algos)])

    results = collect(args, data)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump({"settings": vars(args), "results": results}, f, indent=1)
    table = markdown(results, args)
    with open(args.out + ".md", "w") as f:
        f.write(table)
    plot(results, args, args.out + ".png")
    print(table)


if __name__ == "__main__":
    main()
