"""D4RL's normalised score: 100 * (return - random) / (expert - random), per environment family."""

from __future__ import annotations

#: d4rl/infos.py reference returns (the same for every dataset of an environment, v0-v2).
D4RL_REFERENCE: dict[str, tuple[float, float]] = {
    "hopper": (-20.272305, 3234.3),
    "halfcheetah": (-280.178953, 12135.0),
    "walker2d": (1.629008, 4592.3),
}


def reference_for(env_id: str) -> tuple[float, float] | None:
    """(random, expert) returns for an env id such as 'Hopper-v5' or 'hopper-medium-v2', if D4RL has them."""
    family = env_id.split("-")[0].lower()
    return D4RL_REFERENCE.get(family)


def normalized_score(env_id: str, episode_return: float) -> float | None:
    """The D4RL-normalised score, or None for environments D4RL does not cover."""
    reference = reference_for(env_id)
    if reference is None:
        return None
    low, high = reference
    return 100.0 * (episode_return - low) / (high - low)
