"""What a discrete moba-1v1 agent does with each button, against the bots it learned from, and what one button is
worth in its games.

    python benchmarks/moba_actions.py --data runs/moba-mh/data/moba-bt-games --states heldout-logs/ \\
        --checkpoints runs/ctl0/checkpoints/step-000008000 runs/ctl0/checkpoints/step-000018000 \\
        --button skill3 --games 20 --out benchmarks/results/moba-actions

Per checkpoint and button, over the states of `--states` (logs of bot games; default `--data`, the training
logs): how often the button is legal, how often the logged bot pressed it there, how often the agent's greedy
policy would, how often discrete BCQ's threshold lets it choose the button at all, and how far the critic puts
the button's best action above the logged one (mean, and the share of states where it is above). A critic
that over-values a rare button shows a large positive gap; a threshold that has shut a button out shows an
allowed share near zero.

With `--games`, each checkpoint also plays seeded games against `--opponent` three ways: as trained, with
`--button` always among its allowed actions where legal, and with it never allowed (unless nothing else is):
the button's worth in games, measured by intervening on the policy's choice set and nothing else. Writes
OUT.json and OUT.png.
"""

from __future__ import annotations

import argparse
import os
import types
from typing import Any

import numpy as np
import torch

BUTTONS = ("none", "move", "attack", "skill1", "skill2", "skill3", "heal", "recall")
MODES = ("as trained", "always allowed", "never allowed")


def button_statistics(policy: Any, data: Any, sample: int = 20000, seed: int = 0) -> dict[str, dict[str, float]]:
    """Per button, over up to `sample` states of the learner-view dataset `data` where it is legal: legal share,
    the data's and the greedy policy's use, the allowed share and the critic's gap to the logged action."""
    from aql_agent.adapters.moba.wrappers import FLAT_ACTIONS
    from aql_agent.nn import masked_argmax
    from aql_agent.training import TensorSampler

    learner = policy.learner
    rows = np.sort(np.random.default_rng(seed).choice(len(data), min(sample, len(data)), replace=False))
    sampler = TensorSampler(data.select(rows), policy.preprocessing, seed, "cpu", discrete=True)
    batch = sampler.batch(sampler.table)
    button_of = torch.from_numpy(FLAT_ACTIONS[:, 0].copy())
    with torch.no_grad():
        legal = learner.masks(batch)[0]
        q = learner.nets["q"](batch.observations).float()
        allowed = learner.allowed(batch.observations, legal) if hasattr(learner, "allowed") else legal
        greedy = masked_argmax(q, allowed)
        q_logged = q.gather(1, batch.actions[:, None]).squeeze(1)
    out = {}
    for index, name in enumerate(BUTTONS):
        columns = button_of == index
        legal_here = (legal & columns).any(-1)
        if not legal_here.any():
            continue
        gap = (q.masked_fill(~(legal & columns), -torch.inf).amax(-1) - q_logged)[legal_here]
        out[name] = {"legal_share": float(legal_here.float().mean()),
                     "data_use": float(columns[batch.actions][legal_here].float().mean()),
                     "greedy_use": float(columns[greedy][legal_here].float().mean()),
                     "allowed_share": float((allowed & columns).any(-1)[legal_here].float().mean()),
                     "q_gap_mean": float(gap.mean()), "q_gap_above_share": float((gap > 0).float().mean())}
    return out


def with_button(policy: Any, button: str, mode: str) -> Any:
    """`policy` whose allowed set always holds `button`'s legal actions, or never does (unless nothing else is
    allowed), or is left as trained: an intervention on the choice set only; Q and G are untouched."""
    if mode == MODES[0]:
        return policy
    from aql_agent.adapters.moba.wrappers import FLAT_ACTIONS

    learner = policy.learner
    if not hasattr(learner, "allowed"):
        raise SystemExit(f"moba_actions: error: {learner.name} has no allowed set to intervene on (discrete BCQ "
                         "and AQL do)")
    columns = torch.from_numpy(FLAT_ACTIONS[:, 0] == BUTTONS.index(button))
    trained = type(learner).allowed

    def allowed(self: Any, obs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        chosen = trained(self, obs, mask)
        if mode == MODES[1]:
            return chosen | (mask & columns)
        without = chosen & ~columns
        return torch.where(without.any(-1, keepdim=True), without, chosen)

    learner.allowed = types.MethodType(allowed, learner)
    return policy


def play(checkpoint: str, button: str, mode: str, opponent: str, games: int) -> list[str]:
    """`games` seeded games (`aql eval`'s seeds from 10000) of the checkpoint, intervened on, against a bot."""
    from aql_agent.adapters.games import agent_player
    from aql_agent.adapters.moba import flat_player
    from aql_agent.adapters.moba.bt import LEVELS, BehaviourTreeBot
    from aql_agent.adapters.moba.play import head_to_head_games

    player = flat_player(with_button(agent_player(f"agent:{checkpoint}")[0], button, mode))
    level = LEVELS[opponent.partition(":")[2]]
    results = head_to_head_games(lambda seed: player, lambda seed: BehaviourTreeBot(level, seed=seed),
                                 [10_000 + game for game in range(games)])
    return [result["outcome"] for result in results]


def plot(summary: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from bot_traits import outcome_bars

    checkpoints = list(summary["statistics"])
    with_games = bool(summary["games"])
    fig, axes = plt.subplots(1, 2 if with_games else 1, figsize=(13 if with_games else 7, 4.5), squeeze=False)
    ax = axes[0][0]
    buttons = [b for b in BUTTONS if all(b in summary["statistics"][c] for c in checkpoints)]
    width = 0.8 / (len(checkpoints) + 1)
    x = np.arange(len(buttons))
    first = summary["statistics"][checkpoints[0]]
    ax.bar(x, [first[b]["data_use"] for b in buttons], width, color="black", label="bots (data)")
    for i, checkpoint in enumerate(checkpoints, start=1):
        stats = summary["statistics"][checkpoint]
        ax.bar(x + i * width, [stats[b]["greedy_use"] for b in buttons], width,
               label=f"greedy, {os.path.basename(checkpoint.rstrip('/'))}")
    ax.set_yscale("log")
    ax.set_xticks(x + width * len(checkpoints) / 2, buttons, rotation=30)
    ax.set(ylabel="share of the states where it is legal", title="how often each button is pressed")
    ax.legend(fontsize=7)
    if with_games:
        ax = axes[0][1]
        outcome_bars(ax, [(f"{os.path.basename(c.rstrip('/'))}: {summary['button']} {m}", summary["outcomes"][c][m])
                          for c in checkpoints for m in MODES])
        ax.set(xlabel=f"games of {summary['games']} against {summary['opponent']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", nargs="+", required=True, help="discrete moba-1v1 checkpoints")
    parser.add_argument("--data", required=True, help="the replay logs the checkpoints were trained on")
    parser.add_argument("--states", help="logs whose states are read (default: --data); bot games of other seeds "
                                         "give held-out states")
    parser.add_argument("--sample", type=int, default=20000, help="states read per checkpoint")
    parser.add_argument("--button", default="skill3", choices=BUTTONS, help="the button the games intervene on")
    parser.add_argument("--games", type=int, default=0, help="games per checkpoint and way of playing (0: none)")
    parser.add_argument("--opponent", default="bt:medium-hard")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "moba-actions"))
    args = parser.parse_args()
    if args.games < 0 or args.sample <= 0:
        raise SystemExit("moba_actions: error: --games must be 0 or more and --sample above 0")
    from aql_agent.adapters.moba.bt import LEVELS
    from aql_agent.checkpoint import load_policy
    from bot_traits import outcome_line, write_results
    from aql_agent.data.dataset import TransitionDataset
    from aql_agent.training import learner_view

    if args.games and args.opponent.partition(":")[2] not in LEVELS:
        raise SystemExit(f"moba_actions: error: --opponent is bt:LEVEL with LEVEL one of {list(LEVELS)}")
    torch.set_num_threads(1)
    data = learner_view(TransitionDataset.from_log(args.states or args.data, agent="all"))
    summary: dict[str, Any] = {"data": args.data, "states": args.states or args.data, "button": args.button,
                               "games": args.games, "opponent": args.opponent, "statistics": {}, "outcomes": {}}
    for checkpoint in args.checkpoints:
        stats = button_statistics(load_policy(checkpoint), data, args.sample)
        summary["statistics"][checkpoint] = stats
        for button, row in stats.items():
            print(f"{checkpoint} {button:7s} " + " ".join(f"{k} {v:.4f}" for k, v in row.items()), flush=True)
        if args.games:
            summary["outcomes"][checkpoint] = {}
            for mode in MODES:
                outcomes = play(checkpoint, args.button, mode, args.opponent, args.games)
                summary["outcomes"][checkpoint][mode] = outcomes
                print(f"{checkpoint}, {args.button} {mode}: {outcome_line(outcomes)}", flush=True)
    write_results(summary, args.out, plot)


if __name__ == "__main__":
    main()
