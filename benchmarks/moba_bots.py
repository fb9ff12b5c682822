"""The behaviour-tree levels against each other and against random play: a win-rate matrix.

    python benchmarks/moba_bots.py --games 100     # writes benchmarks/results/moba_bots.{json,png}

Each pair plays `--games` seeded games (seeds 0..N-1), swapping sides every game; a game that reaches the
20000-frame cap is a draw. The bar: each level beats the next one down (hard, medium-hard, medium, easy) in >= 70% of
games, every level beats random in >= 95%.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time

from bot_traits import write_results

LADDER = ("hard", "medium-hard", "medium", "easy")
PLAYERS = (*LADDER, "random")


def make(player: str):
    from aql_agent.adapters.moba.bt import BehaviourTreeBot
    from aql_agent.adapters.moba.play import random_legal_policy

    if player == "random":
        return lambda seed: random_legal_policy(seed)
    return lambda seed: BehaviourTreeBot(player, seed=seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--games", type=int, default=100)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "moba_bots"))
    parser.add_argument("--plot-only", action="store_true", help="redraw the PNG from the JSON of an earlier run")
    args = parser.parse_args()

    if args.plot_only:
        with open(args.out + ".json") as f:
            summary = json.load(f)
        plot(summary, args.out + ".png")
    else:
        summary = play_pairs(args.games)
        write_results(summary, args.out, plot)
    print(json.dumps({k: v for k, v in summary.items() if k != "pairs"}, indent=2))


def play_pairs(games: int) -> dict:
    from aql_agent.adapters.moba.play import head_to_head

    results = {}
    start = time.perf_counter()
    for first, second in itertools.combinations(PLAYERS, 2):
        results[f"{first} vs {second}"] = head_to_head(make(first), make(second), games, progress=True)
        print(first, "vs", second, results[f"{first} vs {second}"], flush=True)
    return {"games_per_pair": games, "pairs": results, "seconds": time.perf_counter() - start,
            "levels_ordered": all(results[f"{stronger} vs {weaker}"]["win_rate"] >= 0.7
                                  for stronger, weaker in zip(LADDER, LADDER[1:])),
            "every_level_beats_random": all(results[f"{level} vs random"]["win_rate"] >= 0.95 for level in LADDER)}


def plot(summary: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    results, games = summary["pairs"], summary["games_per_pair"]
    # a run from before a level was added has no games of it: plot the players it has
    players = [p for p in PLAYERS if any(p in pair.split(" vs ") for pair in results)]
    matrix = np.full((len(players), len(players)), np.nan)
    for (i, a), (j, b) in itertools.permutations(enumerate(players), 2):
        pair = results.get(f"{a} vs {b}")
        matrix[i, j] = pair["win_rate"] if pair else results[f"{b} vs {a}"]["losses"] / games
    fig, ax = plt.subplots(figsize=(5.4, 4.4))
    image = ax.imshow(matrix, vmin=0, vmax=1, cmap="RdYlGn")
    ax.set_xticks(range(len(players)), players)
    ax.set_yticks(range(len(players)), players)
    for i, j in itertools.product(range(len(players)), repeat=2):
        if i != j:
            ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center")
    ax.set(xlabel="opponent", ylabel="player")
    ax.set_title(f"moba-1v1: share of {games} games the row wins", fontsize=10)
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
