"""moba-1v1: a 1v1 lane MOBA (PettingZoo) and its behaviour-tree bots. See env.py's docstring and docs/moba.md.

    from aql_agent.adapters import moba
    par = moba.parallel_env(seed=0)            # ParallelEnv, agents "blue" and "red"
    aec = moba.env(seed=0)                     # AEC, through PettingZoo's converter
    flat = moba.FlatActions(moba.parallel_env())  # one Discrete(53) action per agent
"""

from __future__ import annotations

from typing import Any

from pettingzoo import AECEnv
from pettingzoo.utils.conversions import parallel_to_aec

from aql_agent.adapters.moba.env import (ACTION_HEADS, AGENTS, FEATURE_INDEX, FEATURES, OBS_SIZE, MobaConfig,
                                         MobaConfigError, MobaParallelEnv)
from aql_agent.adapters.moba.game import BUTTONS, HEROES
from aql_agent.adapters.moba.wrappers import (FLAT_ACTIONS, ConcatenatedMasks, FlatActions, concatenate_masks,
                                              flat_action_mask, flat_player, flatten_action, flatten_actions,
                                              flatten_dataset, head_masks_from_flat, split_masks)

ENV_NAME = "moba-1v1"


def parallel_env(render_mode: str | None = None, seed: int | None = None, **settings: Any) -> MobaParallelEnv:
    """The raw ParallelEnv; `settings` are `MobaConfig` fields (heroes, frame_skip, max_frames, ...)."""
    return MobaParallelEnv(render_mode=render_mode, seed=seed, **settings)


def env(render_mode: str | None = None, seed: int | None = None, **settings: Any) -> AECEnv:
    """The AEC view (PettingZoo's `parallel_to_aec`, with its order enforcing)."""
    return parallel_to_aec(parallel_env(render_mode=render_mode, seed=seed, **settings))


raw_env = parallel_env

__all__ = ["ACTION_HEADS", "AGENTS", "BUTTONS", "ENV_NAME", "FEATURES", "FEATURE_INDEX", "FLAT_ACTIONS", "HEROES",
           "OBS_SIZE", "ConcatenatedMasks", "FlatActions", "MobaConfig", "MobaConfigError", "MobaParallelEnv",
           "concatenate_masks", "env", "flat_action_mask", "flat_player", "flatten_action", "flatten_actions",
           "flatten_dataset", "head_masks_from_flat", "parallel_env", "raw_env", "split_masks"]
