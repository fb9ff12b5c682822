"""Behaviour-tree bots for moba-1v1, on py_trees, in the spirit of Honor of Kings' built-in AI.

A bot is a policy: it reads only the observation an agent gets (feature vector + per-head masks, see
docs/moba.md), so it plays either side and can face learned agents, recorded or over the engine bridge.
The tree is a priority selector, first success wins:

    survive   dead -> wait; at the fountain and hurt -> rest; recalling -> keep channelling; hurt -> heal;
              low hp -> recall when safe, else retreat; under the enemy tower without minion cover -> back off
    fight     ultimate on a weak enemy hero; nuke the enemy hero in range; trade blows when ahead on hp
    farm      last-hit a minion our attack kills; attack the nearest enemy minion; hit the enemy building
              while our minions tank it
    push      walk up behind our minion wave (or hold outside the enemy tower's range)

Levels change how well it plays, not what it wants: reaction delay (decisions every k steps, the last
move or attack kept in between), aim noise (a random legal target or a skewed direction), and thresholds.

    bot = BehaviourTreeBot("hard", seed=0)
    action = bot(observation)   # observation["observation"], observation["action_mask"] of one agent
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import py_trees
from py_trees.common import Status

from aql_agent.errors import AqlError
from aql_agent.adapters.moba import game as g
from aql_agent.adapters.moba.env import FEATURE_INDEX as F, OBSERVED_MINIONS, TARGET_BUILDING, TARGET_HERO
from aql_agent.adapters.moba.wrappers import split_masks

FORWARD, BACK = 0, g.DIRECTIONS // 2  # directions in the agent's own (mirrored) view
DX, ATTACK, RANGE, MINION_HP = 20.0, 500.0, 10.0, 1000.0  # undo env.py's feature scales


@dataclass(frozen=True)
class BotLevel:
    """How well a bot plays."""

    name: str
    reaction_steps: int  # decides every k agent steps (k * frame_skip frames), keeps moving/attacking between
    aim_noise: float  # chance a decision takes a random legal target or a direction off by up to 90 degrees
    heal_below: float  # hp fraction under which it heals
    retreat_below: float  # hp fraction under which it goes home to recall
    last_hits: bool  # times attacks to kill minions (gold) rather than hitting whatever is nearest
    uses_ultimate: bool
    respects_towers: bool  # backs off from the enemy tower when no minion of ours tanks it
    trades_when_ahead: bool  # fights the enemy hero only with the hp lead (else whenever it is near)


LEVELS: dict[str, BotLevel] = {
    "easy": BotLevel("easy", reaction_steps=4, aim_noise=0.3, heal_below=0.15, retreat_below=0.1,
                     last_hits=False, uses_ultimate=False, respects_towers=False, trades_when_ahead=False),
    "medium": BotLevel("medium", reaction_steps=2, aim_noise=0.1, heal_below=0.3, retreat_below=0.2,
                       last_hits=True, uses_ultimate=False, respects_towers=True, trades_when_ahead=False),
    # hard's tree (reflexes, ultimate, hp thresholds, trading) with medium's aim: between the two, so an agent
    # that beats medium and never hard has a level it can climb (docs/results.md, moba-1v1 fine-tuning)
    "medium-hard": BotLevel("medium-hard", reaction_steps=1, aim_noise=0.1, heal_below=0.4, retreat_below=0.3,
                            last_hits=True, uses_ultimate=True, respects_towers=True, trades_when_ahead=True),
    "hard": BotLevel("hard", reaction_steps=1, aim_noise=0.0, heal_below=0.4, retreat_below=0.3,
                     last_hits=True, uses_ultimate=True, respects_towers=True, trades_when_ahead=True),
}


def none_action() -> np.ndarray:
    return np.zeros(4, dtype=np.int64)


class Situation:
    """One observation, decoded for the tree's rules (in the agent's own view: +x is toward the enemy)."""

    def __init__(self, features: list[float], masks: tuple[np.ndarray, ...]):
        self.f = features
        self.buttons = masks[0].tolist()
        self.targets = masks[3].tolist()

    def __getitem__(self, name: str) -> float:
        return self.f[F[name]]

    def enemy_minions(self) -> list[tuple[int, float, float]]:
        """(target slot, distance, hp) of the enemy minions we can target, nearest first."""
        f, out = self.f, []
        for i in range(OBSERVED_MINIONS):
            base = F[f"enemy_minion{i}.present"]
            if f[base] and self.targets[1 + i]:
                out.append((1 + i, f[base + 3] * DX, f[base + 4] * MINION_HP))
        return out

    def own_front(self) -> float | None:
        """How far ahead (+) or behind (-) of us our foremost observed minion is."""
        ahead = [self.f[F[f"own_minion{i}.dx"]] * DX for i in range(OBSERVED_MINIONS)
                 if self.f[F[f"own_minion{i}.present"]]]
        return max(ahead) if ahead else None


class Rule(py_trees.behaviour.Behaviour):
    """A leaf that proposes an action when its situation holds (SUCCESS) and fails otherwise."""

    def __init__(self, name: str, bot: BehaviourTreeBot, decide: Callable[[Situation], np.ndarray | None]):
        super().__init__(name)
        self.bot, self.decide = bot, decide

    def update(self) -> Status:
        action = self.decide(self.bot.situation)
        if action is None:
            return Status.FAILURE
        self.bot.decision = action
        return Status.SUCCESS


class BehaviourTreeBot:
    """A moba-1v1 bot of a given level; call it with one agent's observation to get its action."""

    def __init__(self, level: str | BotLevel = "medium", seed: int | None = None):
        if isinstance(level, str):
            if level not in LEVELS:
                raise AqlError(f"unknown bot level {level!r} (in bt:{level}); choose bt:LEVEL with LEVEL one of "
                               f"{list(LEVELS)}")
            level = LEVELS[level]
        self.level = level
        self.rng = random.Random(seed)
        self.situation: Situation | None = None
        self.decision = none_action()
        self.root = self._build_tree()
        self.reset()

    def reset(self) -> None:
        """Forget the previous game (call at each episode start)."""
        self.steps = 0
        self.last = none_action()

    def __call__(self, observation: dict[str, Any]) -> np.ndarray:
        masks = observation["action_mask"]
        if not isinstance(masks, tuple):
            masks = split_masks(masks)  # the concatenated form of ConcatenatedMasks and replay logs
        situation = Situation(np.asarray(observation["observation"]).tolist(), masks)
        self.steps += 1
        if (self.steps - 1) % self.level.reaction_steps:
            return self._keep(situation)
        self.situation = situation
        self.decision = none_action()
        self.root.tick_once()
        self.last = self.decision
        return self.decision

    def _keep(self, s: Situation) -> np.ndarray:
        """Between decisions a slow bot keeps walking or attacking; one-off actions are not repeated."""
        button, target = int(self.last[0]), int(self.last[3])
        if button == g.MOVE and s.buttons[g.MOVE]:
            return self.last
        if button in (g.ATTACK, g.SKILL1, g.SKILL3) and s.buttons[g.ATTACK] and s.targets[target]:
            return np.array([g.ATTACK, 0, 0, target])
        return none_action()

    # -- actions with the level's aim noise ------------------------------------------------------------------
    def _move(self, direction: int) -> np.ndarray:
        if self.level.aim_noise and self.rng.random() < self.level.aim_noise:
            direction = (direction + self.rng.randint(-4, 4)) % g.DIRECTIONS
        return np.array([g.MOVE, direction, 0, 0])

    def _on(self, button: int, slot: int, s: Situation) -> np.ndarray:
        if self.level.aim_noise and self.rng.random() < self.level.aim_noise:
            slot = self.rng.choice([i for i, legal in enumerate(s.targets) if legal])
        return np.array([button, 0, 0, slot])

    # -- the tree --------------------------------------------------------------------------------------------
    def _build_tree(self) -> py_trees.behaviour.Behaviour:
        level = self.level

        def group(name: str, rules: list[tuple[str, Callable]]) -> py_trees.composites.Selector:
            node = py_trees.composites.Selector(name, memory=False)
            node.add_children([Rule(rule_name, self, decide) for rule_name, decide in rules])
            return node

        survive = [("dead", lambda s: none_action() if not s["own.alive"] else None),
                   ("rest at fountain", lambda s: none_action()
                    if s["own.x"] < 0.06 and s["own.hp_frac"] < 0.9 else None),
                   ("keep recalling", lambda s: none_action() if s["own.recall_progress"] > 0 else None),
                   ("heal", lambda s: np.array([g.HEAL, 0, 0, 0])
                    if s["own.hp_frac"] < level.heal_below and s.buttons[g.HEAL] else None),
                   ("go home", self._go_home)]
        if level.respects_towers:
            survive.append(("leave enemy tower", self._leave_tower))
        fight = [("nuke", self._nuke), ("trade", self._trade)]
        if level.uses_ultimate:
            fight.insert(0, ("ultimate", self._ultimate))
        farm = [("farm", self._farm), ("siege", self._siege)]
        if level.last_hits:
            farm.insert(0, ("last hit", self._last_hit))
        root = py_trees.composites.Selector(f"bot:{level.name}", memory=False)
        root.add_children([group("survive", survive), group("fight", fight), group("farm", farm),
                           Rule("push", self, self._push)])
        return root

    def _go_home(self, s: Situation) -> np.ndarray | None:
        if s["own.hp_frac"] >= self.level.retreat_below:
            return None
        threatened = (s["enemy.visible"] and s["enemy.distance"] * DX < 10.0) or s["own.targeted_by_building"] or any(
            d < 6.0 for _, d, _ in s.enemy_minions())
        if not threatened and s.buttons[g.RECALL]:
            return np.array([g.RECALL, 0, 0, 0])
        return self._move(BACK)

    def _leave_tower(self, s: Situation) -> np.ndarray | None:
        if s["own.in_enemy_tower_range"] and (s["own.targeted_by_building"] or not s["own_minions_at_enemy_tower"]):
            return self._move(BACK)
        return None

    def _ultimate(self, s: Situation) -> np.ndarray | None:
        if s.buttons[g.SKILL3] and s.targets[TARGET_HERO] and s["enemy.hp_frac"] < 0.5:
            return self._on(g.SKILL3, TARGET_HERO, s)
        return None

    def _nuke(self, s: Situation) -> np.ndarray | None:
        if not (s.buttons[g.SKILL1] and s.targets[TARGET_HERO]):
            return None
        if self.level.respects_towers and s["enemy.in_own_tower_range"] == 0 and s["enemy.distance"] * DX > 9.0:
            return None  # out of reach: do not chase into trouble for a nuke
        return self._on(g.SKILL1, TARGET_HERO, s)

    def _trade(self, s: Situation) -> np.ndarray | None:
        if not (s.buttons[g.ATTACK] and s.targets[TARGET_HERO]):
            return None
        reach = s["own.attack_range"] * RANGE + 2.0
        if s["enemy.distance"] * DX > reach:
            return None
        if self.level.trades_when_ahead and s["own.hp_frac"] < s["enemy.hp_frac"]:
            return None
        if self.level.respects_towers and s["enemy_tower.distance"] * DX < 9.0 and not s["own_minions_at_enemy_tower"]:
            return None
        return self._on(g.ATTACK, TARGET_HERO, s)

    def _last_hit(self, s: Situation) -> np.ndarray | None:
        if not s.buttons[g.ATTACK]:
            return None
        attack, reach = s["own.attack"] * ATTACK, s["own.attack_range"] * RANGE + 1.0
        for slot, distance, hp in s.enemy_minions():
            if hp <= attack and distance <= reach:
                return self._on(g.ATTACK, slot, s)
        return None

    def _farm(self, s: Situation) -> np.ndarray | None:
        minions = s.enemy_minions()
        if not (minions and s.buttons[g.ATTACK]):
            return None
        if self.level.respects_towers and s["enemy_tower.distance"] * DX < 9.0 and not s["own_minions_at_enemy_tower"]:
            return None
        return self._on(g.ATTACK, minions[0][0], s)

    def _siege(self, s: Situation) -> np.ndarray | None:
        building_near = s.targets[TARGET_BUILDING] and s.buttons[g.ATTACK]
        if building_near and (s["own_minions_at_enemy_tower"] or not s["enemy_tower.alive"]):
            return self._on(g.ATTACK, TARGET_BUILDING, s)
        return None

    def _push(self, s: Situation) -> np.ndarray:
        front = s.own_front()
        tower_distance = s["enemy_tower.distance"] * DX if s["enemy_tower.alive"] else 99.0
        if front is None:  # no wave of ours: hold a safe distance from the enemy tower
            return self._move(BACK if tower_distance < 11.0 else FORWARD) if abs(tower_distance - 11.0) > 1.0 \
                else none_action()
        if front > 1.0:
            return self._move(FORWARD)
        if front < -3.0:
            return self._move(BACK)
        return none_action()
