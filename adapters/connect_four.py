"""connect-four: PettingZoo's `connect_four_v3` as a game of the SDK, with a scripted opponent.

Everything generic (recording, the learner's view, win rates, fine-tuning rounds, the bridge) comes from
`PettingZooKind`; this file adds only what is particular to the game: the `greedy` bot and a text board for a
human at the terminal. It is the worked example of docs/games.md.

    aql record --env connect-four --player random --opponent greedy --episodes 200 --out logs/c4
    aql train --algo aql-discrete --data logs/c4 --agent all --env connect-four --opponent greedy --out runs/c4
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from aql_agent.adapters.games import Player
from aql_agent.adapters.pettingzoo_games import PettingZooKind, import_game_module

ROWS, COLUMNS = 6, 7
#: columns in the order the bot prefers them when nothing is at stake (centre first)
CENTRE_FIRST = (3, 2, 4, 1, 5, 0, 6)


def connect_four_kind(settings: Mapping[str, Any] | None = None) -> PettingZooKind:
    connect_four_v3 = import_game_module("pettingzoo.classic.connect_four_v3")
    return PettingZooKind("connect-four", connect_four_v3.env, settings, bots={"greedy": greedy_bot},
                          default_opponent="greedy", describe=board_text)


def _landing_row(board: np.ndarray, column: int) -> int | None:
    empty = np.flatnonzero(board[:, column] == 0)
    return int(empty[-1]) if len(empty) else None


def _wins(pieces: np.ndarray, row: int, column: int) -> bool:
    """Whether a piece at (row, column) completes four in a line for `pieces` (a 0/1 board of one side)."""
    for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
        count = 1
        for sign in (1, -1):
            r, c = row + sign * dr, column + sign * dc
            while 0 <= r < ROWS and 0 <= c < COLUMNS and pieces[r, c]:
                count, r, c = count + 1, r + sign * dr, c + sign * dc
        if count >= 4:
            return True
    return False


def greedy_bot(level: str = "", seed: int | None = None) -> Player:
    """Wins when it can, blocks the opponent's immediate win, avoids giving one away, else prefers the centre
    (with a little seeded noise so games differ). A random player wins about 1 game in 100 against it."""
    if level:
        raise ValueError("the greedy bot has no levels")
    rng = np.random.default_rng(seed)

    def act(observation: Mapping[str, Any]) -> int:
        planes = np.asarray(observation["observation"])
        mine, theirs = planes[..., 0].astype(bool), planes[..., 1].astype(bool)
        board = (mine | theirs).astype(np.int8)
        legal = [c for c in CENTRE_FIRST if observation["action_mask"][c]]
        for pieces in (mine, theirs):  # win first, then block
            for column in legal:
                row = _landing_row(board, column)
                if row is not None and _wins(pieces, row, column):
                    return column
        safe = []
        for column in legal:  # a move is unsafe when the opponent could then win on top of it
            row = _landing_row(board, column)
            safe.append(column if row is None or row == 0 or not _wins(theirs, row - 1, column) else None)
        choices = [c for c in safe if c is not None] or legal
        if rng.random() < 0.25:
            return int(rng.choice(choices))
        return choices[0]

    return act


def board_text(observation: Mapping[str, Any]) -> str:
    """The board as a human at the terminal sees it: X yours, O theirs, columns numbered."""
    planes = np.asarray(observation["observation"])
    rows = ["".join("X" if planes[r, c, 0] else "O" if planes[r, c, 1] else "." for c in range(COLUMNS))
            for r in range(ROWS)]
    return "\n".join([" ".join("0123456"), *(" ".join(row) for row in rows)])
