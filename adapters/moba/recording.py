"""Recording moba-1v1 games into replay logs with any two players (human, bots, agents): `MobaKind.record`.

Both sides go into one log, each with who played it. Stopping early (Ctrl-C, Esc, a closed window) ends the
episode in progress without an outcome and closes the log properly, so every step played is kept.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from tqdm import tqdm

from aql_agent.adapters.games import KeepWhatWasPlayed, log_path, reseeded_each_episode
from aql_agent.errors import AqlError
from aql_agent.replay import ReplayWriter


def record_moba(out_dir: str, player: str | tuple[Callable[[Any], Any], dict[str, Any]],
                opponent: str = "bt:medium", *, episodes: int = 1, seed: int = 0, side: str = "blue",
                heroes: tuple[str, str] = ("ranger", "ranger"), fps: float = 15.0,
                settings: Mapping[str, Any] | None = None, compression: str = "none", overwrite: bool = False,
                progress: bool = True, events=None) -> str:
    """Record `episodes` moba-1v1 games of `player` (on `side`) against `opponent`; returns the log's path.

    Players: `human`, `random`, `bt:LEVEL`, `agent:CHECKPOINT`, or for `player` a (policy, description) pair
    (a policy in memory, e.g. one being fine-tuned; the description goes into the log). With a human, a pygame
    window shows the game at `fps` game frames per second (0: as fast as the keyboard loop runs); `events` replaces
    `pygame.event.get` (scripted input).
    """
    from aql_agent.adapters import moba
    from aql_agent.adapters.moba import render
    from aql_agent.adapters.moba.keyboard import LEGEND, KeyboardPlayer
    from aql_agent.adapters.moba.kind import MobaKind, moba_player

    if side not in moba.AGENTS:
        raise AqlError(f"side must be one of {list(moba.AGENTS)}, got {side!r}")
    if opponent == "human":
        raise AqlError("the human plays --player; --opponent must be a bot, random or an agent")
    if episodes < 1:
        raise AqlError(f"--episodes must be at least 1, got {episodes}")
    other = moba.AGENTS[1 - moba.AGENTS.index(side)]
    env = MobaKind(settings).env(seed=seed, heroes=tuple(heroes))
    human = player == "human"
    fresh = {side: (player, 0), other: (opponent, 7919)}  # players made again each episode, and their seed offset
    fresh = {agent: spec for agent, spec in fresh.items() if reseeded_each_episode(spec[0])}
    policies, players = {}, {}
    if human:
        policies[side] = KeyboardPlayer(moba.AGENTS.index(side), events=events)
        players[side] = {"kind": "human", "name": os.environ.get("USER", "human")}
    elif not isinstance(player, str):
        policies[side], players[side] = player[0], dict(player[1])
        player = f"{players[side].get('kind', 'agent')}-{players[side].get('name', 'policy')}"
    else:
        policies[side], players[side] = moba_player(player, seed=seed)
    policies[other], players[other] = moba_player(opponent, seed=seed + 7919)
    for agent, hero in zip(moba.AGENTS, heroes):
        players[agent]["hero"] = hero
    path = log_path(out_dir, moba.ENV_NAME, player, opponent, seed, overwrite)
    view = moba.ConcatenatedMasks(env)
    window = render.Window(f"{moba.ENV_NAME}: " + ("you are " + side), text_lines=5) if human else None
    frame_time = env.config.frame_skip / fps if human and fps > 0 else 0.0

    writer = ReplayWriter(path, moba.ENV_NAME, view.observation_space(side), env.action_space(side), agents=moba.AGENTS,
                          players=players, info_keys=("illegal_action", "frame"), compression=compression,
                          overwrite=overwrite, recorder={"tool": "tools/record"},
                          metadata={"heroes": list(heroes), "frame_skip": env.config.frame_skip,
                                    "max_frames": env.config.max_frames, "seed": seed,
                                    "settings": dict(settings or {})})
    observations: dict = {}

    def end_stopped_episode(how: str) -> None:
        if observations:
            writer.end_episode(final_observation={a: moba.concatenate_masks(observations[a]) for a in moba.AGENTS},
                               metadata={"stopped": how, "frames": env.game.frame})

    try:
        with KeepWhatWasPlayed(writer, end_stopped_episode):
            for episode in tqdm(range(episodes), desc=f"recording {moba.ENV_NAME} ({player} vs {opponent})",
                                unit="game", disable=not progress or human):
                mixed = {}  # a mix's player changes from game to game: each episode names its own
                for agent, (spec, offset) in fresh.items():
                    policies[agent], who = moba_player(spec, seed=seed + episode + offset)
                    if "mix" in who:
                        mixed[agent] = {**who, "hero": players[agent]["hero"]}
                for policy in policies.values():
                    if hasattr(policy, "reset"):
                        policy.reset()
                observations, _ = env.reset(seed=seed + episode)
                writer.begin_episode(seed=seed + episode, metadata={"players": mixed} if mixed else None)
                infos: dict = {}
                while env.agents:
                    started = time.perf_counter()
                    if window is not None:
                        window.show(render.rgb_array(env.game), [*render.status_lines(env.game), LEGEND,
                                                                 policies[side].message])
                    actions = {agent: policies[agent](observations[agent]) for agent in env.agents}
                    next_observations, rewards, terminations, truncations, infos = env.step(actions)
                    for agent in moba.AGENTS:
                        writer.add_step(moba.concatenate_masks(observations[agent]), actions[agent], rewards[agent],
                                        terminations[agent], truncations[agent], infos[agent], agent=agent)
                    observations = next_observations
                    if frame_time:
                        time.sleep(max(0.0, frame_time - (time.perf_counter() - started)))
                writer.end_episode(final_observation={a: moba.concatenate_masks(observations[a]) for a in moba.AGENTS},
                                   outcome={a: infos[a]["outcome"] for a in moba.AGENTS},
                                   metadata={"frames": env.game.frame})
    finally:
        if window is not None:
            window.close()
        env.close()
    return path
