"""MuJoCo (gymnasium v5) and any continuous-control gymnasium env: make, roll out, record, evaluate.

D4RL's names work as short names: `make_continuous_env("hopper")` is `Hopper-v5`. Recording and evaluation
are the generic ones of `aql_agent.adapters.gym` (`record_episodes`, `evaluate_policy`), re-exported here.

    env = make_continuous_env("halfcheetah", seed=0)
    record_episodes(env, policy, "cheetah.aqlog", episodes=10, player={"kind": "agent", "checkpoint": path})
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from gymnasium import spaces

from aql_agent.adapters.gym import evaluate_policy, make_env, random_policy, record_episodes
from aql_agent.errors import AqlError
from aql_agent.spaces import describe_space

#: D4RL's environment names -> the gymnasium v5 ids used here
D4RL_ENVS = {"hopper": "Hopper-v5", "halfcheetah": "HalfCheetah-v5", "walker2d": "Walker2d-v5", "ant": "Ant-v5"}


def resolve_env_id(name: str) -> str:
    """A gymnasium id from an id or a D4RL short name (hopper, halfcheetah, walker2d, ant)."""
    return D4RL_ENVS.get(name.lower(), name)


def make_continuous_env(name: str, seed: int | None = None, **kwargs: Any) -> gym.Env:
    """A seeded env with a Box action space and flat Box observations, or one clear error."""
    env_id = resolve_env_id(name)
    try:
        env = make_env(env_id, seed=seed, **kwargs)
    except AqlError as error:
        hint = " (MuJoCo envs need: pip install 'aql-agent[mujoco]')" if "mujoco" in str(error).lower() else ""
        raise AqlError(f"{error}{hint}") from None
    if not isinstance(env.action_space, spaces.Box) or not isinstance(env.observation_space, spaces.Box) \
            or len(env.observation_space.shape) != 1:
        env.close()
        raise AqlError(f"{env_id} has {describe_space(env.action_space)} actions and "
                       f"{describe_space(env.observation_space)} observations; "
                       "this needs a continuous (Box) action space and flat Box observations")
    return env


__all__ = ["D4RL_ENVS", "evaluate_policy", "make_continuous_env", "random_policy", "record_episodes",
           "resolve_env_id"]
