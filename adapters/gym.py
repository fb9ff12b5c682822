"""Single-agent gymnasium environments: make them seeded, record their episodes into replay logs, evaluate policies."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm import tqdm

from aql_agent.errors import AqlError
from aql_agent.scores import normalized_score
from aql_agent.replay import ReplayWriter

Policy = Callable[[Any], Any]


def make_env(env_id: str, seed: int | None = None, **kwargs: Any) -> gym.Env:
    """`gymnasium.make` with a clear error for unknown ids; `seed` seeds the action space too."""
    try:
        env = gym.make(env_id, **kwargs)
    except gym.error.Error as exc:
        raise AqlError(f"cannot make environment {env_id!r}: {exc}") from None
    if seed is not None:
        env.action_space.seed(seed)
    return env


def record_episodes(env: gym.Env, policy: Policy, path: str | os.PathLike, episodes: int, *, seed: int = 0,
                    player: Mapping[str, Any] | None = None, info_keys: Iterable[str] = (),
                    compression: str = "none", metadata: Mapping[str, Any] | None = None,
                    overwrite: bool = False, progress: bool = True) -> ReplayWriter:
    """Play `episodes` episodes of `policy` (seeds `seed`, `seed + 1`, ...) and record them to `path`.

    The final observation of each episode goes into its end record, so datasets built from the log have the
    true next observation at every episode end. Returns the closed writer (its `episodes` and `steps`).
    """
    env_id = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
    with ReplayWriter(path, env_id, env.observation_space, env.action_space, players=player,
                      info_keys=info_keys, compression=compression, overwrite=overwrite,
                      recorder={"tool": "aql_agent.adapters.gym.record_episodes"},
                      metadata=metadata) as writer:
        for episode in tqdm(range(episodes), desc=f"recording {env_id}", unit="ep", disable=not progress):
            observation, _ = env.reset(seed=seed + episode)
            writer.begin_episode(seed=seed + episode)
            done = False
            while not done:
                action = policy(observation)
                next_observation, reward, terminated, truncated, info = env.step(action)
                writer.add_step(observation, action, float(reward), terminated, truncated, info)
                observation = next_observation
                done = terminated or truncated
            writer.end_episode(final_observation=observation)
    return writer


def random_policy(env: gym.Env) -> Policy:
    """Uniform random actions from the environment's (seeded) action space."""
    return lambda observation: env.action_space.sample()


def evaluate_policy(env_id: str, policy: Policy, episodes: int, seed: int = 0) -> dict[str, Any]:
    """Play `episodes` seeded episodes (seeds seed, seed + 1, ...) and summarise the returns.

    Returns mean and std of the return and, for D4RL's environments, of the normalised score.
    """
    env = make_env(env_id, seed=seed)
    returns, lengths = [], []
    try:
        for episode in range(episodes):
            obs, _ = env.reset(seed=seed + episode)
            total, length, done = 0.0, 0, False
            while not done:
                obs, reward, terminated, truncated, _ = env.step(policy(obs))
                total += float(reward)
                length += 1
                done = terminated or truncated
            returns.append(total)
            lengths.append(length)
    finally:
        env.close()
    result: dict[str, Any] = {"env": env_id, "episodes": episodes, "return_mean": float(np.mean(returns)),
                              "return_std": float(np.std(returns)), "length_mean": float(np.mean(lengths)),
                              "returns": returns}
    scores = [normalized_score(env_id, r) for r in returns]
    if scores and scores[0] is not None:
        result["normalized_mean"] = float(np.mean(scores))
        result["normalized_std"] = float(np.std(scores))
    return result
