"""Drawing moba-1v1: a top-down `rgb_array` in numpy, an `ansi` text lane, and a pygame window for `human`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from aql_agent.errors import AqlError
from aql_agent.adapters.moba import game as g
from aql_agent.adapters.moba.game import Game, Unit

SCALE = 8  # pixels per lane unit
HUD = 28  # pixels of hero bars above the lane
WIDTH = int(g.LANE_LENGTH * SCALE)
HEIGHT = HUD + int(2 * g.LANE_HALF_WIDTH * SCALE)
SIDE_COLORS = ((70, 130, 255), (235, 75, 60))
DARK = ((30, 50, 110), (110, 35, 30))
GRASS, LANE, RUBBLE = (48, 72, 48), (92, 108, 80), (70, 70, 70)


def _box(img: np.ndarray, x: float, y: float, half_w: float, half_h: float, color: Sequence[int]) -> None:
    """Fill a box centred on lane coordinates (x, y), sizes in lane units, clipped to the picture."""
    cx, cy = x * SCALE, HUD + (g.LANE_HALF_WIDTH - y) * SCALE
    x0, x1 = max(0, int(cx - half_w * SCALE)), min(WIDTH, int(cx + half_w * SCALE) + 1)
    y0, y1 = max(HUD, int(cy - half_h * SCALE)), min(HEIGHT, int(cy + half_h * SCALE) + 1)
    if x0 < x1 and y0 < y1:
        img[y0:y1, x0:x1] = color


def _bar(img: np.ndarray, x0: int, y0: int, width: int, height: int, frac: float, color: Sequence[int]) -> None:
    x0, y0 = max(0, x0), max(0, y0)
    img[y0:y0 + height, x0:x0 + width] = (25, 25, 25)
    filled = int(round(width * min(1.0, max(0.0, frac))))
    img[y0:y0 + height, x0:x0 + filled] = color


def _unit_bar(img: np.ndarray, unit: Unit, half_w: float, half_h: float) -> None:
    cx, top = unit.x * SCALE, HUD + (g.LANE_HALF_WIDTH - unit.y - half_h) * SCALE
    width = max(6, int(2 * half_w * SCALE))
    _bar(img, int(cx - width / 2), max(HUD, int(top) - 4), width, 2, unit.hp / unit.max_hp, (80, 220, 80))


def rgb_array(game: Game) -> np.ndarray:
    """A (HEIGHT, WIDTH, 3) uint8 top-down picture: blue's base on the left, hero bars on top."""
    img = np.empty((HEIGHT, WIDTH, 3), dtype=np.uint8)
    img[:] = GRASS
    img[HUD + SCALE:HEIGHT - SCALE] = LANE
    for side in (0, 1):
        _box(img, g.FOUNTAIN_X[side], 0.0, g.FOUNTAIN_RADIUS, g.LANE_HALF_WIDTH, DARK[side])
        for building, (w, h) in ((game.towers[side], (1.0, 2.0)), (game.crystals[side], (1.5, 2.5))):
            _box(img, building.x, 0.0, w, h, SIDE_COLORS[side] if building.alive else RUBBLE)
            if building.alive:
                _unit_bar(img, building, w, h)
        for minion in game.minions[side]:
            size = 0.45 if minion.kind == "melee" else 0.35
            _box(img, minion.x, minion.y, size, size, SIDE_COLORS[side])
            _unit_bar(img, minion, size, size)
        hero = game.heroes[side]
        if hero.alive:
            _box(img, hero.x, hero.y, 0.9, 0.9, (255, 255, 255))
            _box(img, hero.x, hero.y, 0.7, 0.7, SIDE_COLORS[side])
            _unit_bar(img, hero, 0.9, 0.9)
        # hero bars in the HUD: hp, mana, experience toward the next level
        x0 = 8 if side == 0 else WIDTH // 2 + 8
        _bar(img, x0, 4, WIDTH // 2 - 16, 8, hero.hp / hero.max_hp, SIDE_COLORS[side])
        _bar(img, x0, 14, WIDTH // 2 - 16, 4, hero.mana / hero.max_mana, (90, 140, 230))
        _bar(img, x0, 20, WIDTH // 2 - 16, 3, hero.level / g.MAX_LEVEL, (230, 200, 80))
    return img


def ansi(game: Game) -> str:
    """The lane as text, one character per lane unit: B/R heroes, >/< minions, T/t towers, C/c crystals."""
    rows = [[" "] * int(g.LANE_LENGTH + 1) for _ in range(3)]

    def put(unit: Unit, char: str) -> None:
        row = 0 if unit.y > g.LANE_HALF_WIDTH / 3 else 2 if unit.y < -g.LANE_HALF_WIDTH / 3 else 1
        rows[row][min(int(g.LANE_LENGTH), max(0, int(round(unit.x))))] = char

    for side in (0, 1):
        for building, char in ((game.towers[side], "Tt"[side]), (game.crystals[side], "Cc"[side])):
            put(building, char if building.alive else "_")
        for minion in game.minions[side]:
            put(minion, "><"[side])
    for side in (0, 1):
        if game.heroes[side].alive:
            put(game.heroes[side], "BR"[side])
    border = "+" + "-" * int(g.LANE_LENGTH + 1) + "+"
    lane = "\n".join("|" + "".join(row) + "|" for row in rows)
    return "\n".join([border, lane, border, *status_lines(game)])


def status_lines(game: Game) -> list[str]:
    lines = [f"frame {game.frame} ({game.frame / g.FPS:.0f} s), wave {game.waves}"
             + ("" if game.winner is None else f", {('blue', 'red')[game.winner]} wins")]
    for side, name in ((0, "blue"), (1, "red")):
        h = game.heroes[side]
        state = "" if h.alive else f" dead {h.respawn_frames / g.FPS:.0f}s"
        state += " recalling" if h.recall_frames else ""
        lines.append(f"{name} {h.spec.name} L{h.level} hp {h.hp:.0f}/{h.max_hp:.0f} mana {h.mana:.0f} gold {h.gold:.0f}"
                     f" K/D {h.kills}/{h.deaths} last hits {h.last_hits}{state}")
    return lines


class Window:
    """A pygame window showing frames and text lines (the env's `human` mode and `tools/record`)."""

    def __init__(self, title: str, scale: int = 1, text_lines: int = 6):
        try:
            import pygame
        except ImportError:
            raise AqlError("the moba-1v1 window needs pygame: pip install 'aql-agent[play]'") from None

        self.pygame = pygame
        pygame.display.init()
        pygame.font.init()
        self.font = pygame.font.Font(None, 20)
        self.scale = scale
        self.size = (WIDTH * scale, HEIGHT * scale + 18 * text_lines + 8)
        self.screen = pygame.display.set_mode(self.size)
        pygame.display.set_caption(title)

    def show(self, frame: np.ndarray, lines: Sequence[str] = ()) -> None:
        pygame = self.pygame
        surface = pygame.surfarray.make_surface(np.ascontiguousarray(frame.transpose(1, 0, 2)))
        if self.scale != 1:
            surface = pygame.transform.scale(surface, (WIDTH * self.scale, HEIGHT * self.scale))
        self.screen.fill((16, 16, 16))
        self.screen.blit(surface, (0, 0))
        y = HEIGHT * self.scale + 6
        for line in lines:
            self.screen.blit(self.font.render(line, True, (230, 230, 230)), (8, y))
            y += 18
        pygame.display.flip()
        pygame.event.pump()

    def close(self) -> None:
        self.pygame.display.quit()
