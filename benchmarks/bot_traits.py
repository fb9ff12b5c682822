"""Which of a behaviour-tree level's traits a trained agent cannot beat: a difficulty ladder's missing rung.

    python benchmarks/bot_traits.py --checkpoints runs/moba/moba/offline/seed0 runs/moba/moba/offline/seed1 \\
        --games 20 --out benchmarks/results/bot_traits

Each checkpoint plays `--games` seeded games (`aql eval`'s seeds from 10000, both sides) against `--weaker`,
`--stronger`, and `--stronger` with one trait group at a time set to `--weaker`'s value: reflexes (decision
interval), aim noise, the heal / retreat thresholds, the ultimate, trading only when ahead. A trait whose change
turns lost games into won ones is what the agent has not learned to answer; a level made of the stronger bot
with that trait relaxed sits between the two (moba-1v1's `medium-hard` came from this: see docs/results.md).
Writes OUT.json (every game's outcome) and OUT.png (win / draw / loss counts per opponent and checkpoint).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Callable
from typing import Any

TRAITS = {"reflexes": ("reaction_steps",), "aim": ("aim_noise",), "hp thresholds": ("heal_below", "retreat_below"),
          "ultimate": ("uses_ultimate",), "trading": ("trades_when_ahead",)}
"""Trait groups of `BotLevel`, each set as a whole to the weaker level's values."""


def opponents(stronger: str, weaker: str) -> dict[str, object]:
    """The two levels, then the stronger one with each trait group at the weaker one's value, by label."""
    from aql_agent.adapters.moba.bt import LEVELS

    strong, weak = LEVELS[stronger], LEVELS[weaker]
    out: dict[str, object] = {weaker: weak, stronger: strong}
    for trait, fields in TRAITS.items():
        label = f"{stronger}, {trait} of {weaker}"
        out[label] = dataclasses.replace(strong, name=label, **{f: getattr(weak, f) for f in fields})
    return out


def agent(checkpoint: str):
    """The checkpoint as a moba-1v1 player (loaded once, for every opponent)."""
    from aql_agent.adapters.games import agent_player
    from aql_agent.adapters.moba import flat_player

    return flat_player(agent_player(f"agent:{checkpoint}")[0])


def play(player, level: object, games: int) -> list[str]:
    """`games` seeded games of `player` against a bot of `level` (the seeds `aql eval --seed 10000` plays)."""
    from aql_agent.adapters.moba.bt import BehaviourTreeBot
    from aql_agent.adapters.moba.play import head_to_head_games

    results = head_to_head_games(lambda seed: player, lambda seed: BehaviourTreeBot(level, seed=seed),
                                 [10_000 + game for game in range(games)])
    return [result["outcome"] for result in results]


def outcome_line(outcomes: list[str]) -> str:
    """`W win / D draw / L loss`: a row of games as the moba benchmarks print it."""
    return " / ".join(f"{outcomes.count(outcome)} {outcome}" for outcome in ("win", "draw", "loss"))


def write_results(summary: dict, out: str, plot: Callable[[dict, str], None]) -> None:
    """OUT.json (the summary) and OUT.png (`plot(summary, path)`), the folder made first."""
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out + ".json", "w") as f:
        json.dump(summary, f, indent=2)
    plot(summary, out + ".png")


def outcome_bars(ax: Any, rows: list[tuple[str, list[str]]]) -> None:
    """One horizontal bar per (label, game outcomes) row, stacked wins / draws / losses, top to bottom."""
    import numpy as np

    left = np.zeros(len(rows))
    for outcome, color in (("win", "tab:green"), ("draw", "tab:gray"), ("loss", "tab:red")):
        counts = np.array([outcomes.count(outcome) for _, outcomes in rows])
        ax.barh(range(len(rows)), counts, left=left, color=color, label=outcome)
        left += counts
    ax.set_yticks(range(len(rows)), [name for name, _ in rows], fontsize=7)
    ax.invert_yaxis()
    ax.legend(fontsize=7, loc="lower right")


def plot(summary: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(next(iter(summary["outcomes"].values())))
    checkpoints = list(summary["outcomes"])
    fig, ax = plt.subplots(figsize=(8, 0.5 + 0.45 * len(labels) * len(checkpoints)))
    rows = [(f"{label}  [{os.path.basename(c)}]", summary["outcomes"][c][label]) for label in labels
            for c in checkpoints]
    outcome_bars(ax, rows)
    ax.set(xlabel=f"games of {summary['games']}", title="moba-1v1: which trait of the stronger bot beats the agent")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", nargs="+", required=True, help="moba-1v1 agent checkpoints (run folders)")
    parser.add_argument("--games", type=int, default=20, help="games per checkpoint and opponent")
    parser.add_argument("--stronger", default="hard")
    parser.add_argument("--weaker", default="medium")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "bot_traits"))
    args = parser.parse_args()
    if args.games <= 0:
        raise SystemExit(f"bot_traits: error: --games must be a positive whole number, got {args.games}")
    from aql_agent.adapters.moba.bt import LEVELS

    for level in (args.stronger, args.weaker):
        if level not in LEVELS:
            raise SystemExit(f"bot_traits: error: unknown level {level!r}; choose from {list(LEVELS)}")
    summary = {"stronger": args.stronger, "weaker": args.weaker, "games": args.games, "outcomes": {}}
    levels = opponents(args.stronger, args.weaker)
    for checkpoint in args.checkpoints:
        player = agent(checkpoint)
        summary["outcomes"][checkpoint] = {}
        for label, level in levels.items():
            outcomes = play(player, level, args.games)
            summary["outcomes"][checkpoint][label] = outcomes
            print(f"{checkpoint} vs {label}: {outcome_line(outcomes)}", flush=True)
    write_results(summary, args.out, plot)


if __name__ == "__main__":
    main()
