"""moba-1v1 as a game kind: what train / eval / record / finetune / deploy / engine ask of it.

Learners see the flat view (`FlatActions`: 130 features, one of 53 actions with its mask); logs keep the
game's own MultiDiscrete actions and concatenated per-head masks (`ConcatenatedMasks`). Players: `bt:LEVEL`
(the behaviour tree: easy, medium, medium-hard, hard), `random` (uniform legal values per head), `agent:CHECKPOINT`,
`mix:SPEC,SPEC,...` (a mix of levels to fine-tune against: in evaluations and recordings one of them per game,
in turn by pairs of game seeds so each meets both sides; in fine-tuning one per round, in turn by pairs of rounds,
since a round's games share a side) and `human` at the keyboard when recording.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from gymnasium import spaces

from aql_agent.adapters import moba
from aql_agent.adapters.games import GameKind, Player, agent_player
from aql_agent.errors import AqlError


def moba_player(spec: str, seed: int | None = None) -> tuple[Player, dict[str, Any]]:
    """A player of moba-1v1's own observations and actions, and the description a replay log stores for it."""
    from aql_agent.adapters.moba.bt import LEVELS, BehaviourTreeBot
    from aql_agent.adapters.moba.play import random_legal_policy

    name, _, argument = spec.partition(":")
    if name == "mix":
        options = mix_options(spec)
        for part in options:  # refuse a bad part whichever game it would first be drawn for
            moba_player(part, seed)
        # games come in seed pairs (s, s+1: both sides) per option, so each option meets both sides
        chosen = options[((seed or 0) // 2) % len(options)]
        player, who = moba_player(chosen, seed)
        return player, {**who, "mix": spec}
    if name == "bt":
        level = argument or "medium"
        return BehaviourTreeBot(level, seed=seed), {"kind": "bot", "name": "bt", "level": level}
    if spec == "random":
        return random_legal_policy(seed), {"kind": "random"}
    if name == "agent":
        policy, who = agent_player(spec)
        MobaKind().check_policy(policy, spec)
        return moba.flat_player(policy), who
    raise AqlError(f"unknown player {spec!r}; use human, random, bt:LEVEL (levels {list(LEVELS)}), agent:CHECKPOINT "
                   "or mix:SPEC,SPEC")


def mix_options(spec: str) -> list[str]:
    """The players of a `mix:SPEC,SPEC,...` opponent, in order (one error line for a malformed mix)."""
    options = [part.strip() for part in spec.partition(":")[2].split(",")]
    if len(options) < 2 or not all(options) or any(part.startswith("mix:") for part in options):
        raise AqlError(f"a mixed opponent is mix:SPEC,SPEC[,...] (e.g. mix:bt:medium,bt:hard), got {spec!r}")
    return options


class MobaKind(GameKind):
    multi_agent = True
    agents = moba.AGENTS
    default_opponent = "bt:medium"

    def __init__(self, settings: Mapping[str, Any] | None = None):
        self.name = moba.ENV_NAME
        self.settings = dict(settings or {})

    def env(self, **overrides: Any) -> moba.MobaParallelEnv:
        try:
            return moba.parallel_env(**{**self.settings, **overrides})
        except moba.MobaConfigError as error:
            raise AqlError(f"{self.name}: {error}") from None

    def learner_spaces(self) -> tuple[spaces.Space, spaces.Space]:
        return (spaces.Box(-np.inf, np.inf, (moba.OBS_SIZE,), np.float32), spaces.Discrete(len(moba.FLAT_ACTIONS)))

    def learner_view(self, dataset):
        if dataset.actions.ndim == 1:  # already flat (a log recorded by the bridge carries the flat view)
            return dataset
        try:
            return moba.flatten_dataset(dataset)
        except ValueError as error:
            raise AqlError(f"{dataset.metadata.get('source')}: {error}") from error

    def protected_actions(self) -> tuple[int, ...]:
        """Heal (a 60-s cooldown wasted at full health) and recall (4 s standing still, then a walk back to
        lane): pressed at random they lose fights and lane time the greedy policy would not give away."""
        buttons = moba.FLAT_ACTIONS[:, 0]
        return tuple(int(i) for i in np.flatnonzero(np.isin(buttons, [moba.BUTTONS.index("heal"),
                                                                       moba.BUTTONS.index("recall")])))

    def make_player(self, spec: str, seed: int | None = None) -> tuple[Player, dict[str, Any]]:
        return moba_player(spec, seed)

    def round_opponent(self, opponent: str | None, round_number: int) -> str | None:
        """A mix's players in turn, each for two rounds: a round's games share a side and sides alternate by
        round, so each player meets both sides (choosing by the games' seeds instead left the choice to the
        seed's parity: with `--seed 1` every round played the first player)."""
        if opponent is None or not opponent.startswith("mix:"):
            return opponent
        options = mix_options(opponent)
        return options[(round_number // len(self.agents)) % len(options)]

    def view_player(self, spec: str, seed: int | None = None) -> Player:
        from aql_agent.adapters.moba.bt import BehaviourTreeBot

        name, _, level = spec.partition(":")
        if name != "bt":
            raise AqlError(f"{self.name}'s bots are bt:LEVEL, not {spec!r}")
        bot = BehaviourTreeBot(level or "medium", seed=seed)

        def act(view: Mapping[str, Any]) -> int:
            mask = np.asarray(view["action_mask"])
            flat = moba.flatten_action(bot({"observation": view["observation"],
                                            "action_mask": moba.head_masks_from_flat(mask)}))
            return flat if mask[flat] else 0  # 0: the `none` button, always legal

        return act

    def player_from_view(self, policy: Player) -> Player:
        return moba.flat_player(policy)

    def play_games(self, policy: Player, games: Sequence[int], seed: int = 0, opponent: str | None = None,
                   progress: bool = False) -> list[dict[str, Any]]:
        from aql_agent.adapters.moba.play import head_to_head_games

        player, opponent = moba.flat_player(policy), opponent or self.default_opponent
        return head_to_head_games(lambda game_seed: player, lambda game_seed: moba_player(opponent, game_seed)[0],
                                  [seed + game for game in games], progress, **self.settings)

    def summarise_games(self, results: list[dict[str, Any]], opponent: str | None = None) -> dict[str, Any]:
        from aql_agent.adapters.moba.play import summarise_head_to_head

        return {"env": self.name, "opponent": opponent or self.default_opponent, **summarise_head_to_head(results)}

    def record(self, out_dir: str, player: Any, opponent: str | None = None, *, episodes: int = 1, seed: int = 0,
               side: str | None = None, options: Mapping[str, Any] | None = None, compression: str = "none",
               overwrite: bool = False, progress: bool = True) -> str:
        from aql_agent.adapters.moba.recording import record_moba

        given = self.check_options(options, ("hero", "opponent_hero", "fps", "events"))
        self.check_side(side)
        side = side if side not in (None, "alternate") else self.agents[0]
        hero, other_hero = given.get("hero", "ranger"), given.get("opponent_hero", "ranger")
        return record_moba(out_dir, player, opponent or self.default_opponent, episodes=episodes, seed=seed,
                           side=side, heroes=(hero, other_hero) if side == self.agents[0] else (other_hero, hero),
                           fps=given.get("fps", 15.0), settings=self.settings, compression=compression,
                           overwrite=overwrite, progress=progress, events=given.get("events"))

    def bridge_spec(self):
        return dataclasses.replace(super().bridge_spec(), tick_rate=15.0 / self.env().config.frame_skip)

    def bridge_games(self, client: Any, games: Sequence[int], opponent: str | None, side: str, seed: int,
                     progress: bool = False) -> list[dict[str, Any]]:
        from aql_agent.adapters.moba.bridge_engine import play_games

        opponent = opponent or self.default_opponent
        env = self.env()
        try:
            return play_games(env, client, lambda seed: moba_player(opponent, seed)[0], games, side, seed, progress)
        finally:
            env.close()

