"""Playing whole moba-1v1 games between policies (bots, agents, random), for win rates and benchmarks."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from aql_agent.adapters.games import Player, outcome_counts
from aql_agent.adapters.moba.env import AGENTS, MobaParallelEnv



@dataclass
class GameResult:
    winner: str | None  # "blue", "red" or None (frame cap)
    frames: int
    steps: int
    returns: dict[str, float]
    illegal_actions: dict[str, int]
    kills: dict[str, int]
    towers_destroyed: dict[str, int]  # enemy towers each side brought down (0 or 1)


def random_legal_policy(seed: int | None = None) -> Player:
    """Uniform random legal value per head (the baseline the bots must beat)."""
    rng = random.Random(seed)

    def act(observation: dict[str, Any]) -> np.ndarray:
        return np.array([rng.choice(np.flatnonzero(mask).tolist() or [0]) for mask in observation["action_mask"]])

    return act


def play_game(env: MobaParallelEnv, policies: Mapping[str, Player], seed: int | None = None) -> GameResult:
    """One game from `reset(seed)` to its end; each policy sees its own agent's observation."""
    for policy in policies.values():
        if hasattr(policy, "reset"):
            policy.reset()
    observations, _ = env.reset(seed=seed)
    returns = dict.fromkeys(AGENTS, 0.0)
    steps, infos = 0, {}
    while env.agents:
        actions = {agent: policies[agent](observations[agent]) for agent in env.agents}
        observations, rewards, _, _, infos = env.step(actions)
        for agent, reward in rewards.items():
            returns[agent] += reward
        steps += 1
    winner = next((agent for agent, info in infos.items() if info.get("outcome") == "win"), None)
    game = env.game
    return GameResult(winner, game.frame, steps, returns,
                      {agent: info["illegal_actions"] for agent, info in infos.items()},
                      {agent: game.heroes[side].kills for side, agent in enumerate(AGENTS)},
                      {agent: int(not game.towers[1 - side].alive) for side, agent in enumerate(AGENTS)})


def head_to_head_games(make_first: Callable[[int], Player], make_second: Callable[[int], Player],
                       seeds: Iterable[int], progress: bool = False, **settings: Any) -> list[dict[str, Any]]:
    """One result per seed: the game played with that seed, sides by its parity (even: the first is blue).
    Each game depends on its seed alone, so any split of the seeds (over workers) gives the same games."""
    from tqdm import tqdm

    env = MobaParallelEnv(**settings)
    results = []
    for seed in tqdm(list(seeds), desc="games", disable=not progress):
        first_side, second_side = ("blue", "red") if seed % 2 == 0 else ("red", "blue")
        game = play_game(env, {first_side: make_first(seed), second_side: make_second(seed + 100_000)}, seed=seed)
        results.append({"outcome": "draw" if game.winner is None else "win" if game.winner == first_side else "loss",
                        "frames": game.frames, "kills": game.kills[first_side], "deaths": game.kills[second_side],
                        "towers": game.towers_destroyed[first_side], "lost_towers": game.towers_destroyed[second_side],
                        "illegal": game.illegal_actions[first_side]})
    return results


def summarise_head_to_head(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The first player's counts over games from `head_to_head_games`, with a 95% Wilson interval."""
    games = len(results)

    def total(key: str) -> int:
        return sum(r[key] for r in results)

    return {**outcome_counts([r["outcome"] for r in results]), "mean_frames": total("frames") / games,
            "mean_kills": total("kills") / games, "mean_deaths": total("deaths") / games,
            "towers_destroyed": total("towers"), "towers_lost": total("lost_towers"),
            "illegal_actions_per_game": total("illegal") / games}


def head_to_head(make_first: Callable[[int], Player], make_second: Callable[[int], Player], games: int,
                 first_seed: int = 0, progress: bool = False, **settings: Any) -> dict[str, Any]:
    """Play `games` seeded games between two policies, swapping sides every game; counts are the first's.

    `make_first(seed)` / `make_second(seed)` build a fresh policy per game (bots take the seed for their noise).
    """
    return summarise_head_to_head(head_to_head_games(make_first, make_second, range(first_seed, first_seed + games),
                                                     progress, **settings))


def evaluate_against(player: Player, opponent: str, games: int, first_seed: int = 0, progress: bool = False,
                     **settings: Any) -> dict[str, Any]:
    """`player` (a moba-1v1 policy) against `opponent` (`bt:LEVEL` or `random`) over `games` seeded games,
    sides swapped every game; counts are the player's, with a 95% Wilson interval on the win rate."""
    from aql_agent.adapters.moba.kind import moba_player

    if games < 1:
        raise ValueError(f"games must be at least 1, got {games}")
    moba_player(opponent)  # refuse an unknown opponent before the first game
    return {"opponent": opponent, **head_to_head(lambda seed: player, lambda seed: moba_player(opponent, seed)[0],
                                                 games, first_seed=first_seed, progress=progress, **settings)}
