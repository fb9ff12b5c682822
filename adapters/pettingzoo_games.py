"""Any PettingZoo game with legal-action masks as a game kind: record, train, evaluate, fine-tune, serve.

Takes an AEC env, or a Parallel env (seen through PettingZoo's `parallel_to_aec`), whose agents share one
observation space `Dict(observation: Box, action_mask: ...)` and one `Discrete(n)` or `MultiDiscrete` action
space. Replay logs keep the game's own observations and actions; the learner's view flattens them: the
observation as float32 features, a MultiDiscrete action as one index of `prod(nvec)` with its mask (given per
flat action, or per head concatenated, which then allows a flat action when every head's value is legal).

Turn-based games are played with `agent_iter` / `last`: an agent's transition runs from one of its turns to
its next, so its reward is what `last()` reports then (the opponent's reply included) and its next observation
is what it sees at its next turn. The outcome of a game, for one agent: a win when its return beats every
other agent's, a loss when some other's beats it, a draw otherwise.

    kind = PettingZooKind.from_module("pettingzoo:pettingzoo.classic.tictactoe_v3")
    kind.record("logs", "random", "random", episodes=100)
"""

from __future__ import annotations

import importlib
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from tqdm import tqdm

from aql_agent.adapters.games import (GameKind, KeepWhatWasPlayed, Player, StopRecording, agent_player, log_path,
                                      outcome_counts, reseeded_each_episode)
from aql_agent.errors import AqlError

#: a bot factory: (argument after `NAME:`, seed) -> a player of the game's own observations
BotFactory = Callable[[str, "int | None"], Player]


def import_game_module(name: str) -> Any:
    """Import a PettingZoo game module without the DeprecationWarning its own classic games give on import
    ("old environment creation API"): it is addressed to PettingZoo's maintainers, not to our users."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The old environment creation API", category=DeprecationWarning)
        return importlib.import_module(name)


class PettingZooKind(GameKind):
    multi_agent = True

    def __init__(self, name: str, make_env: Callable[..., Any], settings: Mapping[str, Any] | None = None,
                 bots: Mapping[str, BotFactory] | None = None, default_opponent: str = "random",
                 describe: Callable[[Any], str] | None = None):
        """`make_env(render_mode=None, **settings)` returns a fresh AEC or Parallel env; `bots` map a spec's
        name to a factory; `describe(observation)` is the text a human sees in the terminal."""
        self.name, self._make_env, self.settings = name, make_env, dict(settings or {})
        self.bots, self.default_opponent, self.describe = dict(bots or {}), default_opponent, describe
        env = self.make_env()
        try:
            self.agents = tuple(env.possible_agents)
            self.observation_space = env.observation_space(self.agents[0])
            self.action_space = env.action_space(self.agents[0])
            for agent in self.agents[1:]:
                if (env.observation_space(agent) != self.observation_space
                        or env.action_space(agent) != self.action_space):
                    raise AqlError(f"{name}: agents {self.agents[0]} and {agent} have different spaces; this kind "
                                   "needs one observation and one action space for all agents")
        finally:
            env.close()
        if not (isinstance(self.observation_space, spaces.Dict)
                and set(self.observation_space.spaces) == {"observation", "action_mask"}):
            raise AqlError(f"{name}: observations are {self.observation_space}; this kind needs "
                           "Dict(observation, action_mask) (PettingZoo's legal-action convention)")
        if isinstance(self.action_space, spaces.Discrete):
            self.heads = (int(self.action_space.n),)
        elif isinstance(self.action_space, spaces.MultiDiscrete) and self.action_space.nvec.ndim == 1:
            self.heads = tuple(int(n) for n in self.action_space.nvec)
        else:
            raise AqlError(f"{name}: actions are {self.action_space}; this kind takes Discrete or MultiDiscrete")
        self.actions = math.prod(self.heads)
        mask_width = int(np.prod(self.observation_space["action_mask"].shape))
        if mask_width not in (self.actions, sum(self.heads)):
            raise AqlError(f"{name}: the action mask has {mask_width} entries; it must have one per action "
                           f"({self.actions}) or per head value ({sum(self.heads)})")
        self.per_head_mask = mask_width != self.actions
        self.features = int(np.prod(self.observation_space["observation"].shape))

    @classmethod
    def from_module(cls, name: str, settings: Mapping[str, Any] | None = None) -> PettingZooKind:
        """`pettingzoo:MODULE`: a module with `env()` (AEC) or `parallel_env()`, as PettingZoo's own have."""
        module_name = name.partition(":")[2]
        try:
            module = import_game_module(module_name)
        except ImportError as error:
            raise AqlError(f"cannot import {module_name!r} for {name}: {error} (install the game's package, "
                           "e.g. pettingzoo[classic])") from None
        make = getattr(module, "env", None) or getattr(module, "parallel_env", None)
        if make is None:
            raise AqlError(f"{module_name} has no env() or parallel_env() to make the game")
        return cls(name, make, settings)

    def make_env(self, render_mode: str | None = None) -> Any:
        from pettingzoo import ParallelEnv
        from pettingzoo.utils.conversions import parallel_to_aec

        try:
            env = self._make_env(render_mode=render_mode, **self.settings)
        except TypeError as error:
            raise AqlError(f"{self.name} does not take the settings {self.settings}: {error}") from None
        return parallel_to_aec(env) if isinstance(env, ParallelEnv) else env

    # -- the learner's view ---------------------------------------------------------------------------------
    def learner_spaces(self) -> tuple[spaces.Space, spaces.Space]:
        return spaces.Box(-np.inf, np.inf, (self.features,), np.float32), spaces.Discrete(self.actions)

    def flat_mask(self, mask: np.ndarray) -> np.ndarray:
        """Legal flat actions from the game's mask (one [width] mask or stacked [N, width])."""
        mask = np.asarray(mask) != 0
        if not self.per_head_mask:
            return mask
        heads = np.split(mask, np.cumsum(self.heads)[:-1], axis=-1)
        legal = heads[0]
        for head in heads[1:]:
            legal = legal[..., :, None] & head[..., None, :]
            legal = legal.reshape(*legal.shape[:-2], -1)
        return legal

    def game_mask(self, flat: np.ndarray) -> np.ndarray:
        """The game's mask form from a flat one (per head: a value is legal when some flat action using it is)."""
        flat = np.asarray(flat) != 0
        if not self.per_head_mask:
            return flat.astype(np.int8)
        grid = flat.reshape(self.heads)
        return np.concatenate([grid.any(axis=tuple(j for j in range(len(self.heads)) if j != i))
                               for i in range(len(self.heads))]).astype(np.int8)

    def to_view(self, observation: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return {"observation": np.asarray(observation["observation"], np.float32).reshape(-1),
                "action_mask": self.flat_mask(observation["action_mask"]).reshape(-1)}

    def from_view(self, view: Mapping[str, Any]) -> dict[str, np.ndarray]:
        space = self.observation_space
        return {"observation": np.asarray(view["observation"]).reshape(space["observation"].shape).astype(
                    space["observation"].dtype),
                "action_mask": self.game_mask(view["action_mask"]).astype(space["action_mask"].dtype)}

    def to_game_action(self, index: int) -> Any:
        index = int(index)
        if len(self.heads) == 1:
            return index
        return np.array(np.unravel_index(index, self.heads), dtype=self.action_space.dtype)

    def to_flat_action(self, actions: np.ndarray) -> np.ndarray:
        actions = np.asarray(actions, dtype=np.int64)
        if len(self.heads) == 1:
            return actions.reshape(-1)
        return np.ravel_multi_index(tuple(actions.reshape(-1, len(self.heads)).T), self.heads)

    def learner_view(self, dataset):
        import dataclasses

        from aql_agent.spaces import space_to_spec

        if dataset.action_masks is None:
            raise AqlError(f"{self.name} data needs its action masks (record it with aql record)")
        metadata = {**dataset.metadata, "action_space": space_to_spec(spaces.Discrete(self.actions)),
                    "action_view": f"{self.name} flat"}
        return dataclasses.replace(
            dataset, observations=dataset.observations.reshape(len(dataset), -1).astype(np.float32),
            next_observations=dataset.next_observations.reshape(len(dataset), -1).astype(np.float32),
            actions=self.to_flat_action(dataset.actions), metadata=metadata,
            action_masks=self.flat_mask(dataset.action_masks),
            next_action_masks=self.flat_mask(dataset.next_action_masks))

    # -- players --------------------------------------------------------------------------------------------
    def player_from_view(self, policy: Player) -> Player:
        return lambda observation: self.to_game_action(policy(self.to_view(observation)))

    def random_player(self, seed: int | None) -> Player:
        rng = np.random.default_rng(seed)

        def act(observation: Mapping[str, Any]) -> Any:
            legal = np.flatnonzero(self.flat_mask(observation["action_mask"]).reshape(-1))
            return self.to_game_action(rng.choice(legal) if len(legal) else 0)

        return act

    def make_player(self, spec: str, seed: int | None = None) -> tuple[Player, dict[str, Any]]:
        name, _, argument = spec.partition(":")
        if spec == "random":
            return self.random_player(seed), {"kind": "random"}
        if name == "agent":
            policy, who = agent_player(spec)
            self.check_policy(policy, spec)
            return self.player_from_view(policy), who
        if name in self.bots:
            return self.bots[name](argument, seed), {"kind": "bot", "name": name, **({"level": argument}
                                                                                    if argument else {})}
        raise AqlError(f"unknown {self.name} player {spec!r}; use random, agent:CHECKPOINT"
                       + "".join(f", {bot}" for bot in self.bots) + " (and human to record)")

    def view_player(self, spec: str, seed: int | None = None) -> Player:
        if spec.partition(":")[0] not in self.bots:
            raise AqlError(f"{self.name} has no bot {spec!r}; its bots: {list(self.bots) or 'none'}")
        player = self.make_player(spec, seed)[0]
        return lambda view: int(self.to_flat_action(player(self.from_view(view)))[0])

    def human_player(self, read: Callable[[str], str] = input) -> Player:
        """A human at the terminal: the game as text (or its observation), the legal actions, one number."""
        def act(observation: Mapping[str, Any]) -> Any:
            legal = np.flatnonzero(self.flat_mask(observation["action_mask"]).reshape(-1)).tolist()
            text = self.describe(observation) if self.describe else str(np.asarray(observation["observation"]))
            while True:
                answer = read(f"{text}\nyour move {legal} (q quits): ").strip()
                if answer in ("q", "quit"):
                    raise StopRecording("quit")
                if answer.isdigit() and int(answer) in legal:
                    return self.to_game_action(int(answer))

        return act

    # -- playing --------------------------------------------------------------------------------------------
    def play(self, env: Any, players: Mapping[str, Player], seed: int, writer: Any = None,
             bridge: tuple[Any, str, int] | None = None) -> dict[str, Any]:
        """One game from `reset(seed)`. With `writer`, every agent's transitions go into the open log; with
        `bridge` (client, agent, episode), that agent's decisions are asked of the engine client."""
        for player in players.values():
            if hasattr(player, "reset"):
                player.reset()
        env.reset(seed=seed)
        returns = dict.fromkeys(self.agents, 0.0)
        pending: dict[str, tuple[Any, Any]] = {}
        finals: dict[str, Any] = {}
        ended: dict[str, tuple[bool, bool, float]] = {}
        illegal = dict.fromkeys(self.agents, 0)
        turns = 0
        for agent in env.agent_iter():
            observation, reward, terminated, truncated, info = env.last()
            returns[agent] += float(reward)
            if writer is not None and agent in pending:
                writer.add_step(*pending.pop(agent), float(reward), terminated, truncated, info, agent=agent)
            if terminated or truncated:
                finals[agent] = observation
                ended[agent] = (bool(terminated), bool(truncated), float(reward))
                env.step(None)
                continue
            if bridge is not None and agent == bridge[1]:
                view = self.to_view(observation)
                index = bridge[0].act(agent, bridge[2], turns, view["observation"], view["action_mask"], reward)
                index = int(index) if np.ndim(index) == 0 and 0 <= int(index) < self.actions else 0
                action = self.to_game_action(index)
            else:
                action = players[agent](observation)
            mask = self.flat_mask(observation["action_mask"]).reshape(-1)
            illegal[agent] += int(not mask[int(self.to_flat_action(action)[0])])
            pending[agent] = (observation, action)
            env.step(action)
            turns += 1
        outcomes = {}
        for agent in self.agents:
            best_other = max(returns[a] for a in self.agents if a != agent)
            outcomes[agent] = ("win" if returns[agent] > best_other else "loss" if returns[agent] < best_other
                               else "draw")
        return {"returns": returns, "outcomes": outcomes, "turns": turns, "illegal": illegal, "finals": finals,
                "ended": ended}

    def _opponents(self, opponent: str | None, side: str, seed: int) -> tuple[dict[str, Player], dict[str, Any]]:
        players, who = {}, {}
        for index, agent in enumerate(a for a in self.agents if a != side):
            players[agent], who[agent] = self.make_player(opponent or self.default_opponent, seed + 7919 * (index + 1))
        return players, who

    def play_games(self, policy: Player, games: Sequence[int], seed: int = 0, opponent: str | None = None,
                   progress: bool = False) -> list[dict[str, Any]]:
        player = self.player_from_view(policy)
        env = self.make_env()
        results = []
        try:
            for game in tqdm(list(games), desc=f"{self.name} vs {opponent or self.default_opponent}", unit="game",
                             disable=not progress):
                side = self.agents[game % len(self.agents)]
                players, _ = self._opponents(opponent, side, seed + game + 100_000)
                result = self.play(env, {side: player, **players}, seed + game)
                results.append({"outcome": result["outcomes"][side], "turns": result["turns"],
                                "illegal": result["illegal"][side]})
        finally:
            env.close()
        return results

    def summarise_games(self, results: list[dict[str, Any]], opponent: str | None = None) -> dict[str, Any]:
        games = len(results)
        return {"env": self.name, "opponent": opponent or self.default_opponent,
                **outcome_counts([r["outcome"] for r in results]),
                "mean_turns": sum(r["turns"] for r in results) / games,
                "illegal_actions_per_game": sum(r["illegal"] for r in results) / games}

    def record(self, out_dir: str, player: str | tuple[Player, dict[str, Any]], opponent: str | None = None, *,
               episodes: int = 1, seed: int = 0, side: str | None = None, options: Mapping[str, Any] | None = None,
               compression: str = "none", overwrite: bool = False, progress: bool = True) -> str:
        from aql_agent.replay import ReplayWriter

        given = self.check_options(options, ("read",))
        self.check_side(side)
        side = side if side not in (None, "alternate") else self.agents[0]
        if episodes < 1:
            raise AqlError(f"--episodes must be at least 1, got {episodes}")
        if opponent == "human":
            raise AqlError("the human plays --player; --opponent must be a bot, random or an agent")
        human = player == "human"
        if human:
            policy, who = self.human_player(given.get("read", input)), {"kind": "human",
                                                                        "name": os.environ.get("USER", "human")}
            label = "human"
        elif isinstance(player, str):
            (policy, who), label = self.make_player(player, seed), player
        else:
            policy, who = player[0], dict(player[1])
            label = f"{who.get('kind', 'agent')}-{who.get('name', 'policy')}"
        opponents, opponent_who = self._opponents(opponent, side, seed)
        path = log_path(out_dir, self.name, label, opponent or self.default_opponent, seed, overwrite)
        writer = ReplayWriter(path, self.name, self.observation_space, self.action_space, agents=self.agents,
                              players={side: who, **opponent_who}, compression=compression, overwrite=overwrite,
                              recorder={"tool": "aql record"}, metadata={"seed": seed, "settings": self.settings})
        env = self.make_env()
        # a stopped game's last transitions have no next observation: datasets leave them out
        try:
            with KeepWhatWasPlayed(writer, lambda how: writer.end_episode(metadata={"stopped": how})):
                for episode in tqdm(range(episodes), desc=f"recording {self.name} ({label} vs "
                                    f"{opponent or self.default_opponent})", unit="game",
                                    disable=not progress or human):
                    if episode and reseeded_each_episode(player):
                        policy = self.make_player(player, seed + episode)[0]
                    if episode and reseeded_each_episode(opponent or self.default_opponent):
                        opponents = self._opponents(opponent, side, seed + episode)[0]
                    writer.begin_episode(seed=seed + episode)
                    started = time.perf_counter()
                    result = self.play(env, {side: policy, **opponents}, seed + episode, writer=writer)
                    writer.end_episode(final_observation=result["finals"], outcome=result["outcomes"],
                                       metadata={"turns": result["turns"], "seconds": time.perf_counter() - started})
        finally:
            env.close()
        return path

    def bridge_games(self, client: Any, games: Sequence[int], opponent: str | None, side: str, seed: int,
                     progress: bool = False) -> list[dict[str, Any]]:
        env = self.make_env()
        results = []
        try:
            for game in tqdm(list(games), desc=f"{self.name} over the bridge vs {opponent or self.default_opponent}",
                             unit="game", disable=not progress):
                agent = side if side != "alternate" else self.agents[game % len(self.agents)]
                players, _ = self._opponents(opponent, agent, seed + game + 100_000)
                result = self.play(env, players, seed + game, bridge=(client, agent, seed + game))
                final = self.to_view(result["finals"][agent])
                terminated, truncated, reward = result["ended"][agent]
                client.end_episode(agent, seed + game, result["turns"], final["observation"], final["action_mask"],
                                   reward, terminated, truncated, result["outcomes"][agent])
                results.append({"outcome": result["outcomes"][agent], "turns": result["turns"],
                                "illegal": result["illegal"][agent]})
        finally:
            env.close()
        return results

