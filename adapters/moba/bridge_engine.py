"""moba-1v1 run as an external game engine (`aql engine`, `tools/engine`) that asks an agent process for one
side's actions.

The engine owns the game and its built-in behaviour tree (the other side); every decision of the agent's
side goes over the bridge as the flat view (130 float32 features, a 53-byte legal-action mask) and comes
back as a flat action index. Sides alternate game by game unless `side` is fixed. Each game's result is the
agent's counts, which the game kind summarises (win rate against the bot with a 95% interval).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from tqdm import tqdm

from aql_agent.adapters.bridge.engine import EngineClient
from aql_agent.adapters.moba import AGENTS, FLAT_ACTIONS, FlatActions, MobaParallelEnv


def play_games(env: MobaParallelEnv, client: EngineClient, make_bot: Callable[[int], Any], games: Sequence[int],
               side: str, seed: int, progress: bool = True) -> list[dict[str, Any]]:
    """Games `games` of the connected agent (on `side`, or alternating: blue in even games) against
    `make_bot(seed)`, game i from `seed + i`; one result per game, the agent's counts (as `head_to_head_games`)."""
    results = []
    for game in tqdm(list(games), desc=f"{client.spec.env_id} over the bridge", unit="game", disable=not progress):
        game_seed = seed + game
        agent = side if side != "alternate" else AGENTS[game % 2]
        other = AGENTS[1 - AGENTS.index(agent)]
        bot = make_bot(game_seed + 100_000)
        observations, _ = env.reset(seed=game_seed)
        reward, infos = 0.0, {}
        terminated = truncated = False
        while env.agents:
            view = FlatActions.flat_observation(observations[agent])
            flat = client.act(agent, game_seed, env.game.frame, view["observation"], view["action_mask"], reward)
            action = FLAT_ACTIONS[int(flat)] if 0 <= int(flat) < len(FLAT_ACTIONS) else FLAT_ACTIONS[0]
            observations, rewards, terminations, truncations, infos = env.step({agent: action,
                                                                                other: bot(observations[other])})
            reward, terminated, truncated = rewards[agent], terminations[agent], truncations[agent]
        outcome = infos[agent]["outcome"]
        final = FlatActions.flat_observation(observations[agent])
        client.end_episode(agent, game_seed, env.game.frame, final["observation"], final["action_mask"], reward,
                           terminated, truncated, outcome)
        side_index = AGENTS.index(agent)
        results.append({"outcome": outcome, "frames": env.game.frame, "kills": env.game.heroes[side_index].kills,
                        "deaths": env.game.heroes[side_index].deaths,
                        "towers": int(not env.game.towers[1 - side_index].alive),
                        "lost_towers": int(not env.game.towers[side_index].alive),
                        "illegal": infos[agent]["illegal_actions"]})
    return results
