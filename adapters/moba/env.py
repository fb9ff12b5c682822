"""moba-1v1: a 1v1 lane MOBA in the shape of Honor of Kings 1v1, as a PettingZoo ParallelEnv.

Agents `blue` and `red` each control one hero on a single lane. Each side has a tower and a crystal (the
crystal can be hit only after its tower falls; destroying it wins). Minion waves spawn every 25 s and fight
along the lane. Heroes have HP, mana, attack, three skills (a targeted nuke, a dash, an area ultimate from
level 4), heal and recall, experience and levels, gold from last hits and kills (gold buys stats), and
respawn timers. Towers prefer minions but switch to a hero who hits their hero under them.

Actions: `MultiDiscrete([8, 16, 16, 6])`, HoK-style heads: button (none, move, attack, skill1-3, heal,
recall), move direction, skill direction (for the dash), target (enemy hero, the 4 nearest enemy minions,
the enemy building). Observations: `{"observation": float32 (130,), "action_mask": (int8 per head,)}`,
features listed in docs/moba.md, always from the agent's own side (red's view is mirrored so both see
their base at x = 0). An illegal action is a no-op, counted in `info["illegal_actions"]`.

Reward: shaped terms (hp, buildings' hp, gold, experience, last hits, kills, deaths, the win) weighted by
`reward_weights`, zero-sum by default (each agent's terms minus the enemy's, as HoK); the terms are in
`info["reward_terms"]`, the result in `info["outcome"]` at the end. An agent acts every `frame_skip` frames
(15 frames a second); a game is truncated at `max_frames` frames or `max_cycles` steps.

    from aql_agent.adapters.moba import parallel_env
    env = parallel_env(render_mode="rgb_array", seed=0)
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from aql_agent.errors import AqlError
from aql_agent.adapters.moba import game as g
from aql_agent.adapters.moba.game import Game, Hero, Unit

AGENTS = ("blue", "red")
TARGET_MINIONS = 4
TARGETS = 2 + TARGET_MINIONS  # enemy hero, 4 minions, enemy building
TARGET_HERO, TARGET_BUILDING = 0, TARGETS - 1
ACTION_HEADS = (len(g.BUTTONS), g.DIRECTIONS, g.DIRECTIONS, TARGETS)
OBSERVED_MINIONS = 4  # per side

DEFAULT_REWARD_WEIGHTS = {"hp": 2.0, "buildings": 5.0, "gold": 0.5, "exp": 0.5, "last_hit": 0.2, "kill": 1.0,
                          "death": -1.0, "win": 10.0}
REWARD_TERMS = tuple(DEFAULT_REWARD_WEIGHTS)


class MobaConfigError(AqlError):
    """A moba-1v1 setting that cannot work."""


@dataclass
class MobaConfig:
    """Settings of one moba-1v1 env; every field is a keyword of `parallel_env`."""

    heroes: tuple[str, str] = ("ranger", "ranger")  # blue's and red's hero, from game.HEROES
    frame_skip: int = 3  # frames per agent step (HoK acts every 3rd frame)
    max_frames: int = 20000  # the game is truncated here (HoK's cap)
    max_cycles: int | None = None  # or here, in agent steps (PettingZoo's knob)
    # weights of the shaped terms; a dict given here replaces the defaults (terms left out weigh 0)
    reward_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_REWARD_WEIGHTS))
    zero_sum: bool = True  # reward = own terms - enemy's terms

    def __post_init__(self) -> None:
        self.heroes = tuple(self.heroes)
        if len(self.heroes) != 2:
            raise MobaConfigError(f"heroes must name two heroes (blue, red), got {self.heroes!r}")
        for name in self.heroes:
            if name not in g.HEROES:
                raise MobaConfigError(f"unknown hero {name!r}; choose from {sorted(g.HEROES)}")
        for name in ("frame_skip", "max_frames"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise MobaConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.max_cycles is not None and (not isinstance(self.max_cycles, int) or self.max_cycles < 1):
            raise MobaConfigError(f"max_cycles must be a positive integer or None, got {self.max_cycles!r}")
        if not isinstance(self.reward_weights, Mapping):
            raise MobaConfigError(f"reward_weights must be a mapping of term -> weight, got {self.reward_weights!r}")
        unknown = set(self.reward_weights) - set(DEFAULT_REWARD_WEIGHTS)
        if unknown:
            raise MobaConfigError(f"unknown reward terms {sorted(unknown)}; the terms are {list(REWARD_TERMS)}")
        self.reward_weights = {**{k: 0.0 for k in DEFAULT_REWARD_WEIGHTS}, **self.reward_weights}
        for key, value in self.reward_weights.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise MobaConfigError(f"reward weight {key!r} must be a finite number, got {value!r}")

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> MobaConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(kwargs) - known
        if unknown:
            raise MobaConfigError(f"unknown moba-1v1 settings {sorted(unknown)}; the settings are {sorted(known)}")
        return cls(**kwargs)


def _feature_names() -> list[str]:
    own = ["alive", "hp_frac", "hp", "mana_frac", "x", "y", "level", "gold", "attack", "attack_range",
           "attack_ready", "skill1_ready", "skill1_cooldown", "skill2_ready", "skill2_cooldown", "skill3_ready",
           "skill3_cooldown", "heal_ready", "recall_progress", "respawn", "in_enemy_tower_range",
           "targeted_by_building"]
    enemy = ["alive", "visible", "hp_frac", "hp", "mana_frac", "dx", "dy", "distance", "level", "attack",
             "attack_range", "skill1_ready", "skill2_ready", "skill3_ready", "in_own_tower_range"]
    minion = ["present", "dx", "dy", "distance", "hp", "hp_frac", "ranged"]
    building = ["alive", "vulnerable", "hp_frac", "dx", "distance", "targets_hero"]
    names = [f"own.{n}" for n in own] + [f"enemy.{n}" for n in enemy]
    for side, flag in (("enemy_minion", "targets_me"), ("own_minion", "tower_target")):
        names += [f"{side}{i}.{n}" for i in range(OBSERVED_MINIONS) for n in (*minion, flag)]
    for b in ("own_tower", "own_crystal", "enemy_tower", "enemy_crystal"):
        names += [f"{b}.{n}" for n in building]
    names += ["time", "next_wave", "own_minions", "enemy_minions", "own_minions_at_enemy_tower"]
    return names


FEATURES: tuple[str, ...] = tuple(_feature_names())
FEATURE_INDEX: dict[str, int] = {name: i for i, name in enumerate(FEATURES)}
OBS_SIZE = len(FEATURES)

# scales that bring features to about [-1, 1]
HP_SCALE, GOLD_SCALE, ATTACK_SCALE, DX_SCALE, MINION_HP_SCALE = 5000.0, 5000.0, 500.0, 20.0, 1000.0


class MobaParallelEnv(ParallelEnv):
    """The raw parallel env (see the module docstring). `env()` and `parallel_env()` are the usual doors."""

    metadata = {"name": "moba_1v1_v0", "render_modes": ["human", "rgb_array", "ansi"], "render_fps": g.FPS,
                "is_parallelizable": True}

    def __init__(self, render_mode: str | None = None, seed: int | None = None, **settings: Any):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise MobaConfigError(f"unknown render_mode {render_mode!r}; choose from {self.metadata['render_modes']}")
        self.config = MobaConfig.from_kwargs(settings)
        self.render_mode = render_mode
        self.possible_agents = list(AGENTS)
        self.agents: list[str] = []
        self.max_cycles = self.config.max_cycles or -(-self.config.max_frames // self.config.frame_skip)
        self._next_seed = seed
        self._observation_space = spaces.Dict({
            "observation": spaces.Box(-np.inf, np.inf, (OBS_SIZE,), np.float32),
            "action_mask": spaces.Tuple(tuple(spaces.MultiBinary(n) for n in ACTION_HEADS)),
        })
        self._action_space = spaces.MultiDiscrete(ACTION_HEADS)
        self._window = None
        self.game: Game | None = None
        self._masks: list[tuple[np.ndarray, ...] | None] = [None, None]  # of the last observation, per side
        self._weights = tuple(self.config.reward_weights[term] for term in REWARD_TERMS)

    @functools.lru_cache(maxsize=None)
    def observation_space(self, agent: str) -> spaces.Space:
        return self._observation_space

    @functools.lru_cache(maxsize=None)
    def action_space(self, agent: str) -> spaces.Space:
        return self._action_space

    # -- episode ---------------------------------------------------------------------------------------------
    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        # reset(seed) plays that seed; reset() plays the constructor's seed, then the next one each time after
        if seed is None:
            seed = self._next_seed
        self._next_seed = None if seed is None else seed + 1
        self.game = Game(self.config.heroes, seed=seed)
        self.agents = list(AGENTS)
        self.cycles = 0
        self._targets: list[list[Unit | None]] = [[None] * TARGETS, [None] * TARGETS]
        self._terms = [self._term_values(0), self._term_values(1)]
        observations = {agent: self._observe(side) for side, agent in enumerate(AGENTS)}
        infos = {agent: {"illegal_actions": 0, "frame": 0} for agent in AGENTS}
        return observations, infos

    def step(self, actions: Mapping[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        if self.game is None or not self.agents:
            raise AqlError("step() on a finished or unreset game: call reset() first")
        game = self.game
        illegal = [False, False]
        for side, agent in enumerate(AGENTS):
            if agent in actions and actions[agent] is not None:
                illegal[side] = not self._apply(side, actions[agent])
        game.advance(self.config.frame_skip)
        self.cycles += 1
        done = game.winner is not None
        truncated = not done and (self.cycles >= self.max_cycles or game.frame >= self.config.max_frames)
        observations, rewards, infos = {}, {}, {}
        values = (self._term_values(0), self._term_values(1))
        deltas = [tuple(map(operator.sub, values[s], self._terms[s])) for s in (0, 1)]
        self._terms = values
        for side, agent in enumerate(AGENTS):
            own = deltas[side]
            if self.config.zero_sum:
                own = map(operator.sub, own, deltas[1 - side])
            reward_terms = dict(zip(REWARD_TERMS, map(operator.mul, self._weights, own)))
            rewards[agent] = float(sum(reward_terms.values()))
            observations[agent] = self._observe(side)
            hero = game.heroes[side]
            info = {"illegal_actions": hero.illegal_actions, "illegal_action": illegal[side], "frame": game.frame,
                    "reward_terms": reward_terms}
            if done or truncated:
                info["outcome"] = ("draw" if game.winner is None else "win" if game.winner == side else "loss")
            infos[agent] = info
        terminations = {agent: done for agent in AGENTS}
        truncations = {agent: truncated for agent in AGENTS}
        if done or truncated:
            self.agents = []
        if self.render_mode == "human":
            self.render()
        return observations, rewards, terminations, truncations, infos

    def _apply(self, side: int, action: Any) -> bool:
        """Validate and issue one action; an illegal or malformed one is a no-op. Returns whether it was legal."""
        game = self.game
        hero = game.heroes[side]
        try:
            try:
                button, move, skill_direction, target_slot = action  # a list or a (4,) array: the common case
            except ValueError:
                button, move, skill_direction, target_slot = np.asarray(action).reshape(-1)
            button, move, skill_direction, target_slot = int(button), int(move), int(skill_direction), int(target_slot)
        except (TypeError, ValueError):
            raise AqlError(f"moba-1v1 actions are 4 integers (button, move, skill direction, target), "
                           f"got {action!r}") from None
        if not (0 <= button < ACTION_HEADS[0] and 0 <= move < ACTION_HEADS[1] and 0 <= skill_direction < ACTION_HEADS[2]
                and 0 <= target_slot < ACTION_HEADS[3]):
            hero.illegal_actions += 1
            return False
        button_mask, target_mask = self._masks[side][0], self._masks[side][3]
        uses_target = button in (g.ATTACK, g.SKILL1, g.SKILL3)
        if not button_mask[button] or (uses_target and not target_mask[target_slot]):
            hero.illegal_actions += 1
            return False
        if side == 1:  # red sees a mirrored lane: turn its directions back by half a circle
            move = (move + g.DIRECTIONS // 2) % g.DIRECTIONS
            skill_direction = (skill_direction + g.DIRECTIONS // 2) % g.DIRECTIONS
        direction = move if button == g.MOVE else skill_direction
        game.set_command(side, button, direction, self._targets[side][target_slot] if uses_target else None)
        return True

    def _term_values(self, side: int) -> tuple[float, ...]:
        """The quantities whose change over a step is rewarded, in REWARD_TERMS order (`win` is 1 once won)."""
        game = self.game
        hero = game.heroes[side]
        tower, crystal = game.towers[side], game.crystals[side]
        return (hero.hp / hero.max_hp, tower.hp / tower.max_hp + crystal.hp / crystal.max_hp, hero.gold / 100.0,
                hero.exp / 100.0, float(hero.last_hits), float(hero.kills), float(hero.deaths),
                1.0 if game.winner == side else 0.0)

    # -- observation -----------------------------------------------------------------------------------------
    def _observe(self, side: int) -> dict[str, Any]:
        """The feature vector of docs/moba.md and the per-head masks; also fixes the target slots."""
        game = self.game
        hero, enemy = game.heroes[side], game.heroes[1 - side]
        mirror = side == 1
        sign = -1.0 if mirror else 1.0
        x0, y0 = hero.x, hero.y
        own_tower, enemy_tower = game.towers[side], game.towers[1 - side]
        own_crystal, enemy_crystal = game.crystals[side], game.crystals[1 - side]
        features = [
            float(hero.alive), hero.hp / hero.max_hp, hero.hp / HP_SCALE, hero.mana / hero.max_mana,
            (g.LANE_LENGTH - x0 if mirror else x0) / g.LANE_LENGTH, sign * y0 / g.LANE_HALF_WIDTH,
            hero.level / g.MAX_LEVEL, hero.gold / GOLD_SCALE, hero.damage / ATTACK_SCALE, hero.range / 10.0,
            1.0 - hero.cooldown / hero.attack_interval,
        ]
        ready = [hero.skill_ready(0), hero.skill_ready(1), hero.skill_ready(2)]
        for index, skill in enumerate(hero.spec.skills):
            features += [float(ready[index]), hero.skill_cooldowns[index] / (skill.cooldown_s * g.FPS)]
        in_enemy_tower = enemy_tower.alive and abs(x0 - enemy_tower.x) <= enemy_tower.range
        targeted = (enemy_tower.alive and enemy_tower.target is hero) or (enemy_crystal.alive
                                                                          and enemy_crystal.target is hero)
        features += [float(hero.heal_cooldown == 0), hero.recall_frames / g.RECALL_FRAMES,
                     hero.respawn_frames / (18.0 * g.FPS) if not hero.alive else 0.0, float(in_enemy_tower),
                     float(targeted)]

        dx, dy = enemy.x - x0, enemy.y - y0
        distance = math.sqrt(dx * dx + dy * dy)
        visible = enemy.alive and distance <= g.VISION
        features += [float(enemy.alive), float(visible), enemy.hp / enemy.max_hp, enemy.hp / HP_SCALE,
                     enemy.mana / enemy.max_mana, sign * dx / DX_SCALE, sign * dy / g.LANE_HALF_WIDTH,
                     distance / DX_SCALE, enemy.level / g.MAX_LEVEL, enemy.damage / ATTACK_SCALE, enemy.range / 10.0,
                     float(enemy.skill_ready(0)), float(enemy.skill_ready(1)), float(enemy.skill_ready(2)),
                     float(own_tower.alive and abs(enemy.x - own_tower.x) <= own_tower.range)]

        targets = self._targets[side]
        targets[TARGET_HERO] = enemy if visible else None
        for minions, is_enemy in ((game.minions[1 - side], True), (game.minions[side], False)):
            near = sorted([((m.x - x0) ** 2 + (m.y - y0) ** 2, m.uid, m) for m in minions])[:OBSERVED_MINIONS]
            for slot in range(OBSERVED_MINIONS):
                if slot < len(near):
                    d2, _, m = near[slot]
                    d = math.sqrt(d2)
                    features += [1.0, sign * (m.x - x0) / DX_SCALE, sign * (m.y - y0) / g.LANE_HALF_WIDTH,
                                 d / DX_SCALE, m.hp / MINION_HP_SCALE, m.hp / m.max_hp, float(m.kind == "ranged"),
                                 float(m.target is hero if is_enemy else enemy_tower.target is m)]
                    if is_enemy:
                        targets[1 + slot] = m if d <= g.VISION else None
                else:
                    features += [0.0] * 8
                    if is_enemy:
                        targets[1 + slot] = None

        for building in (own_tower, own_crystal, enemy_tower, enemy_crystal):
            bdx = building.x - x0
            features += [float(building.alive), float(building.vulnerable), building.hp / building.max_hp,
                         sign * bdx / g.LANE_LENGTH, abs(bdx) / DX_SCALE,
                         float(building.alive and building.target is not None and building.target.kind == "hero")]
        attackable = enemy_tower if enemy_tower.alive else enemy_crystal
        targets[TARGET_BUILDING] = (attackable if attackable.alive and attackable.vulnerable
                                    and abs(attackable.x - x0) <= g.VISION else None)

        own_minions, enemy_minions = game.minions[side], game.minions[1 - side]
        to_wave = (g.FIRST_WAVE - game.frame if game.frame < g.FIRST_WAVE
                   else g.WAVE_INTERVAL - (game.frame - g.FIRST_WAVE) % g.WAVE_INTERVAL)
        tanking = sum(1 for m in own_minions if m.alive and abs(m.x - enemy_tower.x) <= enemy_tower.range)
        features += [game.frame / self.config.max_frames, to_wave / g.WAVE_INTERVAL, len(own_minions) / 12.0,
                     len(enemy_minions) / 12.0, min(tanking, 4) / 4.0]

        masks = self._head_masks(hero, targets, ready)
        self._masks[side] = masks
        return {"observation": np.array(features, dtype=np.float32), "action_mask": masks}

    @staticmethod
    def _head_masks(hero: Hero, targets: list[Unit | None], ready: list[bool]) -> tuple[np.ndarray, ...]:
        """Button and target masks (one array, two views); directions are always legal."""
        alive = hero.alive
        present = [t is not None for t in targets]
        any_target = alive and any(present)
        at_fountain = abs(hero.x - g.FOUNTAIN_X[hero.side]) < g.FOUNTAIN_RADIUS
        both = np.array([True, alive, any_target, any_target and ready[0], ready[1], any_target and ready[2],
                         alive and hero.heal_cooldown == 0 and hero.hp < hero.max_hp,
                         alive and not hero.recall_frames and not at_fountain, *present], dtype=np.int8)
        return both[:len(g.BUTTONS)], _ALL_DIRECTIONS, _ALL_DIRECTIONS, both[len(g.BUTTONS):]

    # -- rendering -------------------------------------------------------------------------------------------
    def render(self) -> np.ndarray | str | None:
        if self.render_mode is None:
            return None
        if self.game is None:
            raise AqlError("render() before reset()")
        from aql_agent.adapters.moba import render

        if self.render_mode == "ansi":
            return render.ansi(self.game)
        frame = render.rgb_array(self.game)
        if self.render_mode == "rgb_array":
            return frame
        if self._window is None:
            self._window = render.Window("moba-1v1")
        self._window.show(frame, render.status_lines(self.game))
        return None

    def close(self) -> None:
        if self._window is not None:
            self._window.close()
            self._window = None


_ALL_DIRECTIONS = np.ones(g.DIRECTIONS, dtype=np.int8)
_ALL_DIRECTIONS.setflags(write=False)
