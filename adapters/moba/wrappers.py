"""Views of moba-1v1 for other consumers: one `Discrete` action for discrete learners, and the per-head
masks as one flat array for replay logs and datasets (whose masks are single arrays)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv
from pettingzoo.utils import BaseParallelWrapper

from aql_agent.adapters.moba import game as g
from aql_agent.adapters.moba.env import ACTION_HEADS, OBS_SIZE, TARGETS


def _flat_table() -> np.ndarray:
    """Every meaningful (button, move, skill direction, target), one row per flat action."""
    rows = [(g.NONE, 0, 0, 0)]
    rows += [(g.MOVE, d, 0, 0) for d in range(g.DIRECTIONS)]
    rows += [(g.ATTACK, 0, 0, t) for t in range(TARGETS)]
    rows += [(g.SKILL1, 0, 0, t) for t in range(TARGETS)]
    rows += [(g.SKILL2, 0, d, 0) for d in range(g.DIRECTIONS)]
    rows += [(g.SKILL3, 0, 0, t) for t in range(TARGETS)]
    rows += [(g.HEAL, 0, 0, 0), (g.RECALL, 0, 0, 0)]
    table = np.array(rows, dtype=np.int64)
    table.setflags(write=False)
    return table


FLAT_ACTIONS = _flat_table()  # (53, 4): flat action -> MultiDiscrete action
# which head's value each button reads: 1 move, 2 skill direction, 3 target, None (no parameter)
_PARAMETER_HEAD = {g.NONE: None, g.MOVE: 1, g.ATTACK: 3, g.SKILL1: 3, g.SKILL2: 2, g.SKILL3: 3, g.HEAL: None,
                   g.RECALL: None}
_BUTTON_OF_FLAT = FLAT_ACTIONS[:, 0]
_PARAMETER_OF_FLAT = np.array([row[_PARAMETER_HEAD[b]] if _PARAMETER_HEAD[b] else 0
                               for b, row in zip(_BUTTON_OF_FLAT.tolist(), FLAT_ACTIONS)])
_FLAT_INDEX = {(b, p): i for i, (b, p) in enumerate(zip(_BUTTON_OF_FLAT.tolist(), _PARAMETER_OF_FLAT.tolist()))}
_FLAT_OF = np.zeros((ACTION_HEADS[0], max(ACTION_HEADS[1:])), dtype=np.int64)  # (button, parameter) -> flat
for (_button, _parameter), _index in _FLAT_INDEX.items():
    _FLAT_OF[_button, _parameter] = _index
_ROWS_READING = {head: np.flatnonzero([_PARAMETER_HEAD[b] == head for b in _BUTTON_OF_FLAT.tolist()])
                 for head in (1, 2, 3)}


def flatten_action(action: Any) -> int:
    """The flat index of a MultiDiscrete action (heads the button does not use are ignored)."""
    button, move, skill_direction, target = (int(v) for v in np.asarray(action).reshape(-1))
    head = _PARAMETER_HEAD[button]
    return _FLAT_INDEX[(button, (0, move, skill_direction, target)[head] if head else 0)]


def flat_action_mask(head_masks: tuple[np.ndarray, ...]) -> np.ndarray:
    """Legal flat actions: the button is legal and so is the value of the head it reads. Works on one
    observation's masks ([8], [16], [16], [6]) or on stacked ones ([N, 8], ...)."""
    button_mask = np.asarray(head_masks[0])
    mask = button_mask[..., _BUTTON_OF_FLAT]
    for head, rows in _ROWS_READING.items():
        mask[..., rows] &= np.asarray(head_masks[head])[..., _PARAMETER_OF_FLAT[rows]]
    return mask


def head_masks_from_flat(mask: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per-head masks consistent with a flat mask: a button is legal when any of its flat actions is, a head
    value when any flat action reading it is (the inverse of `flat_action_mask` up to what it merged)."""
    mask = np.asarray(mask).astype(bool)
    heads = [np.zeros(size, np.int8) for size in ACTION_HEADS]
    np.logical_or.at(heads[0], _BUTTON_OF_FLAT, mask)
    for head, rows in _ROWS_READING.items():
        np.logical_or.at(heads[head], _PARAMETER_OF_FLAT[rows], mask[rows])
    heads[0][g.NONE] = 1
    return tuple(heads)


def flatten_actions(actions: np.ndarray) -> np.ndarray:
    """`flatten_action` for stacked MultiDiscrete actions [N, 4] -> [N]."""
    actions = np.asarray(actions, dtype=np.int64).reshape(-1, len(ACTION_HEADS))
    for head, size in enumerate(ACTION_HEADS):
        if actions.size and (actions[:, head].min() < 0 or actions[:, head].max() >= size):
            raise ValueError(f"moba-1v1 actions hold {actions[:, head].max()} in head {head}, which has {size} values")
    heads = np.array([_PARAMETER_HEAD[b] or 0 for b in range(ACTION_HEADS[0])])[actions[:, 0]]
    parameter = np.where(heads > 0, actions[np.arange(len(actions)), heads], 0)
    return _FLAT_OF[actions[:, 0], parameter]


def flat_player(policy: Any) -> Any:
    """A policy over the flat view (observation + 53-wide mask -> flat index) as a moba-1v1 player (raw
    observation -> MultiDiscrete action), for bots, recording and evaluation."""

    def act(observation: dict) -> np.ndarray:
        return FLAT_ACTIONS[int(policy(FlatActions.flat_observation(observation)))]

    return act


class FlatActions(BaseParallelWrapper):
    """moba-1v1 with one `Discrete(53)` action and a flat int8 mask over it, for discrete learners."""

    def __init__(self, env: ParallelEnv):
        super().__init__(env)
        self._observation_space = spaces.Dict({
            "observation": spaces.Box(-np.inf, np.inf, (OBS_SIZE,), np.float32),
            "action_mask": spaces.MultiBinary(len(FLAT_ACTIONS)),
        })
        self._action_space = spaces.Discrete(len(FLAT_ACTIONS))

    def observation_space(self, agent: str) -> spaces.Space:
        return self._observation_space

    def action_space(self, agent: str) -> spaces.Space:
        return self._action_space

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        observations, infos = self.env.reset(seed=seed, options=options)
        return {a: self.flat_observation(o) for a, o in observations.items()}, infos

    def step(self, actions: Mapping[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        head_actions = {}
        for agent, action in actions.items():
            index = int(action)
            if not 0 <= index < len(FLAT_ACTIONS):
                raise ValueError(f"flat moba-1v1 actions are 0..{len(FLAT_ACTIONS) - 1}, got {action!r} for {agent}")
            head_actions[agent] = FLAT_ACTIONS[index]
        observations, rewards, terminations, truncations, infos = self.env.step(head_actions)
        return ({a: self.flat_observation(o) for a, o in observations.items()}, rewards, terminations, truncations,
                infos)

    @staticmethod
    def flat_observation(observation: dict) -> dict:
        return {"observation": observation["observation"], "action_mask": flat_action_mask(observation["action_mask"])}


class ConcatenatedMasks(BaseParallelWrapper):
    """moba-1v1 with the per-head masks concatenated into one int8 array of 8 + 16 + 16 + 6 (HoK's
    `legal_action` layout): the form replay logs and `TransitionDataset` store."""

    def __init__(self, env: ParallelEnv):
        super().__init__(env)
        self._observation_space = spaces.Dict({
            "observation": spaces.Box(-np.inf, np.inf, (OBS_SIZE,), np.float32),
            "action_mask": spaces.MultiBinary(int(sum(ACTION_HEADS))),
        })

    def observation_space(self, agent: str) -> spaces.Space:
        return self._observation_space

    def action_space(self, agent: str) -> spaces.Space:
        return self.env.action_space(agent)

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        observations, infos = self.env.reset(seed=seed, options=options)
        return {a: concatenate_masks(o) for a, o in observations.items()}, infos

    def step(self, actions: Mapping[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        observations, *rest = self.env.step(actions)
        return ({a: concatenate_masks(o) for a, o in observations.items()}, *rest)


def concatenate_masks(observation: dict) -> dict:
    return {"observation": observation["observation"], "action_mask": np.concatenate(observation["action_mask"])}


def split_masks(mask: np.ndarray) -> tuple[np.ndarray, ...]:
    """The per-head masks back from a concatenated one ([46] or stacked [N, 46])."""
    return tuple(np.split(np.asarray(mask, dtype=np.int8), np.cumsum(ACTION_HEADS)[:-1], axis=-1))


def flatten_dataset(dataset):
    """A moba-1v1 dataset (MultiDiscrete actions [N, 4], concatenated masks [N, 46], as `tools/record` logs
    it) in the flat view discrete learners take: actions [N] in 0..52 and 53-wide masks."""
    from aql_agent.spaces import space_to_spec

    width = int(sum(ACTION_HEADS))
    if dataset.actions.ndim != 2 or dataset.actions.shape[1] != len(ACTION_HEADS):
        raise ValueError(f"moba-1v1 actions are [N, {len(ACTION_HEADS)}] (button, move, skill direction, target); "
                         f"got shape {dataset.actions.shape}")
    if dataset.action_masks is None or dataset.action_masks.shape[1] != width:
        raise ValueError(f"moba-1v1 data needs its concatenated [N, {width}] action masks (record with tools/record)")
    metadata = {**dataset.metadata, "action_space": space_to_spec(spaces.Discrete(len(FLAT_ACTIONS))),
                "action_view": "moba-1v1 FlatActions"}
    return dataclasses.replace(
        dataset, actions=flatten_actions(dataset.actions), metadata=metadata,
        action_masks=flat_action_mask(split_masks(dataset.action_masks)).astype(bool),
        next_action_masks=flat_action_mask(split_masks(dataset.next_action_masks)).astype(bool))
