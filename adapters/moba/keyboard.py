"""A human plays moba-1v1 from the keyboard in a pygame window (used by `tools/record --player human`).

Keys: move with WASD or the arrows (8 directions), attack with J or Space (held: keeps attacking; the
target is picked as a mobile MOBA does: the enemy hero when close, else the nearest minion, else the
building), skills 1 / 2 / 3 (2 dashes where you are moving, or forward), heal H, recall B, quit Esc or
close the window. The legend and both heroes' state are drawn under the lane.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from aql_agent.adapters.games import StopRecording
from aql_agent.errors import AqlError
from aql_agent.adapters.moba import game as g
from aql_agent.adapters.moba.env import FEATURE_INDEX, TARGET_BUILDING, TARGET_HERO, TARGETS

LEGEND = "move WASD/arrows | attack J/Space | skills 1 2 3 | heal H | recall B | quit Esc"
ONE_SHOT_BUTTONS = {"1": g.SKILL1, "2": g.SKILL2, "3": g.SKILL3, "h": g.HEAL, "b": g.RECALL}


class QuitGame(StopRecording):
    """The player closed the window or pressed Esc."""


class KeyboardPlayer:
    """Turns pygame key events into moba-1v1 actions for one side.

    Held keys are tracked from KEYDOWN/KEYUP events (not `pygame.key.get_pressed`), so scripted events
    drive it exactly like a keyboard. `events` is where events come from (default `pygame.event.get`).
    """

    def __init__(self, side: int, events: Callable[[], list] | None = None):
        try:
            import pygame
        except ImportError:
            raise AqlError("human play needs pygame: pip install 'aql-agent[play]'") from None

        self.pygame = pygame
        self.side = side
        self.events = events or pygame.event.get
        self.held: set[str] = set()
        self.pressed: list[str] = []  # one-shot keys since the last action
        self.message = ""
        k = pygame
        self.names = {k.K_w: "up", k.K_UP: "up", k.K_s: "down", k.K_DOWN: "down", k.K_a: "left", k.K_LEFT: "left",
                      k.K_d: "right", k.K_RIGHT: "right", k.K_j: "attack", k.K_SPACE: "attack", k.K_1: "1",
                      k.K_2: "2", k.K_3: "3", k.K_h: "h", k.K_b: "b", k.K_ESCAPE: "quit"}

    def poll(self) -> None:
        """Read pending events; raises QuitGame on Esc or a closed window."""
        pygame = self.pygame
        for event in self.events():
            if event.type == pygame.QUIT:
                raise QuitGame
            name = self.names.get(getattr(event, "key", None))
            if name is None:
                continue
            if event.type == pygame.KEYDOWN:
                if name == "quit":
                    raise QuitGame
                self.held.add(name)
                if name in ONE_SHOT_BUTTONS:
                    self.pressed.append(name)
            elif event.type == pygame.KEYUP:
                self.held.discard(name)

    def __call__(self, observation: dict[str, Any]) -> np.ndarray:
        self.poll()
        buttons, targets = observation["action_mask"][0], observation["action_mask"][3]
        features = observation["observation"]
        direction = self._direction()
        while self.pressed:
            button = ONE_SHOT_BUTTONS[self.pressed.pop(0)]
            if not buttons[button]:
                self.message = f"{g.BUTTONS[button]} is not ready"
                continue
            self.message = g.BUTTONS[button]
            if button == g.SKILL2:
                return np.array([button, 0, direction if direction is not None else 0, 0])
            if button in (g.SKILL1, g.SKILL3):
                return np.array([button, 0, 0, self._target(features, targets, prefer_hero=True)])
            return np.array([button, 0, 0, 0])
        if "attack" in self.held and buttons[g.ATTACK]:
            return np.array([g.ATTACK, 0, 0, self._target(features, targets, prefer_hero=False)])
        if direction is not None:
            return np.array([g.MOVE, direction, 0, 0])
        return np.zeros(4, dtype=np.int64)

    def _direction(self) -> int | None:
        """The held arrows as a direction in the agent's own view (red's view is mirrored)."""
        dx = ("right" in self.held) - ("left" in self.held)
        dy = ("up" in self.held) - ("down" in self.held)
        if not dx and not dy:
            return None
        if self.side == 1:
            dx, dy = -dx, -dy
        return round(math.atan2(dy, dx) / (2 * math.pi / g.DIRECTIONS)) % g.DIRECTIONS

    @staticmethod
    def _target(features: np.ndarray, targets: np.ndarray, prefer_hero: bool) -> int:
        close = features[FEATURE_INDEX["enemy.distance"]] * 20.0 <= 8.0
        if targets[TARGET_HERO] and (prefer_hero or close):
            return TARGET_HERO
        for slot in range(1, TARGETS):  # minions nearest first, then the building
            if targets[slot]:
                return slot
        return TARGET_BUILDING
