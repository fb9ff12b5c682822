"""`tools/engine`: moba-1v1 run as an external game engine that asks an agent process for one side's actions.

The engine owns the game and its built-in behaviour tree (the other side); every decision of the agent's
side goes over the bridge as the flat view (130 float32 features, a 53-byte legal-action mask) and comes
back as a flat action index. Sides alternate game by game unless `side` is fixed. The report is the win
rate against the bot with a 95% interval, plus the bridge's own figures (latency, timeouts, fallbacks).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aql_agent.adapters.bridge.engine import EngineClient
from aql_agent.adapters.bridge.protocol import EnvSpec


def moba_spec(tick_rate: float) -> EnvSpec:
    from aql_agent.adapters import moba

    return EnvSpec("moba-1v1", (moba.OBS_SIZE,), "float32", actions=len(moba.FLAT_ACTIONS), action_mask=True,
                   agents=moba.AGENTS, tick_rate=tick_rate)


def play_moba_games(endpoint: str, games: int, opponent: str = "bt:medium", side: str = "alternate", seed: int = 0,
                    timeout_s: float = 1.0, settings: dict[str, Any] | None = None, progress: bool = True,
                    curve_server_key: bytes | None = None, connect_timeout_s: float = 30.0) -> dict[str, Any]:
    from tqdm import tqdm

    from aql_agent.adapters import moba
    from aql_agent.adapters.moba.play import wilson_interval
    from aql_agent.adapters.players import make_player

    if side not in ("alternate", *moba.AGENTS):
        raise ValueError(f"side must be alternate, blue or red; got {side!r}")
    if games < 1:
        raise ValueError(f"games must be at least 1, got {games}")
    env = moba.parallel_env(**dict(settings or {}))
    client = EngineClient(endpoint, moba_spec(15.0 / env.config.frame_skip), engine="tools/engine (moba-1v1)",
                          timeout_s=timeout_s, fallback_action=0, curve_server_key=curve_server_key,
                          connect_timeout_s=connect_timeout_s)
    client.connect()
    counts = {"wins": 0, "losses": 0, "draws": 0}
    frames = kills = deaths = towers = 0
    try:
        for game in tqdm(range(games), desc=f"moba-1v1 over the bridge vs {opponent}", unit="game",
                         disable=not progress):
            game_seed = seed + game
            agent = side if side != "alternate" else moba.AGENTS[game % 2]
            other = moba.AGENTS[1 - moba.AGENTS.index(agent)]
            bot = make_player(opponent, "moba-1v1", seed=game_seed + 100_000)[0]
            observations, _ = env.reset(seed=game_seed)
            reward, infos = 0.0, {}
            terminated = truncated = False
            while env.agents:
                view = moba.FlatActions.flat_observation(observations[agent])
                flat = client.act(agent, game_seed, env.game.frame, view["observation"], view["action_mask"], reward)
                action = moba.FLAT_ACTIONS[int(flat)] if 0 <= int(flat) < len(moba.FLAT_ACTIONS) else moba.FLAT_ACTIONS[0]
                observations, rewards, terminations, truncations, infos = env.step({agent: action,
                                                                                    other: bot(observations[other])})
                reward, terminated, truncated = rewards[agent], terminations[agent], truncations[agent]
            outcome = infos[agent]["outcome"]
            final = moba.FlatActions.flat_observation(observations[agent])
            client.end_episode(agent, game_seed, env.game.frame, final["observation"], final["action_mask"], reward,
                               terminated, truncated, outcome)
            counts[{"win": "wins", "loss": "losses", "draw": "draws"}[outcome]] += 1
            frames += env.game.frame
            side_index = moba.AGENTS.index(agent)
            kills += env.game.heroes[side_index].kills
            deaths += env.game.heroes[side_index].deaths
            towers += int(not env.game.towers[1 - side_index].alive)
    finally:
        client.close()
        env.close()
    latencies = np.array(client.latencies) * 1000
    low, high = wilson_interval(counts["wins"], games)
    return {"env": "moba-1v1", "endpoint": endpoint, "opponent": opponent, "side": side, "games": games, **counts,
            "win_rate": counts["wins"] / games, "win_rate_ci95": [low, high], "mean_frames": frames / games,
            "mean_kills": kills / games, "mean_deaths": deaths / games, "towers_destroyed": towers,
            "agent": client.welcome.get("policy"),
            "bridge": {**client.stats, "latency_ms_p50": float(np.percentile(latencies, 50)) if len(latencies) else None,
                       "latency_ms_p99": float(np.percentile(latencies, 99)) if len(latencies) else None}}
