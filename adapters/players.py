"""Names the rest of the SDK uses for environments and players: `moba-1v1`, `bt:hard`, `random`, `agent:PATH`.

    env = make_parallel_env("moba-1v1", seed=0, heroes=("ranger", "bruiser"))
    bot, who = make_player("bt:hard", "moba-1v1", seed=1)   # who = the replay log's player description
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from aql_agent.errors import AqlError

Policy = Callable[[Any], Any]

#: registered multi-agent environments
MULTI_AGENT_ENVS = ("moba-1v1",)
#: registered bots and their levels
BOTS = {"bt": ("easy", "medium", "hard")}


def make_parallel_env(name: str, render_mode: str | None = None, seed: int | None = None, **settings: Any):
    """A registered multi-agent environment (ParallelEnv) by name."""
    if name == "moba-1v1":
        from aql_agent.adapters import moba

        return moba.parallel_env(render_mode=render_mode, seed=seed, **settings)
    raise AqlError(f"unknown multi-agent environment {name!r}; registered: {list(MULTI_AGENT_ENVS)}")


def make_player(spec: str, env_name: str, seed: int | None = None) -> tuple[Policy, dict[str, Any]]:
    """A policy from a player spec, and the description a replay log stores for it.

    `bt:LEVEL` (moba-1v1's behaviour tree: easy, medium, hard), `random` (uniform legal actions), or
    `agent:CHECKPOINT` (a trained checkpoint or run folder). `human` is not a policy: `tools/record` reads the
    keyboard for it.
    """
    kind, _, argument = spec.partition(":")
    if kind == "bt":
        if env_name != "moba-1v1":
            raise AqlError(f"the behaviour-tree bot plays moba-1v1, not {env_name!r}")
        from aql_agent.adapters.moba.bt import BehaviourTreeBot

        level = argument or "medium"
        return BehaviourTreeBot(level, seed=seed), {"kind": "bot", "name": "bt", "level": level}
    if kind == "random" and not argument:
        if env_name == "moba-1v1":
            from aql_agent.adapters.moba.play import random_legal_policy

            return random_legal_policy(seed), {"kind": "random"}
        raise AqlError("a random player for a gymnasium env is made from the env's action space (record_episodes)")
    if kind == "agent" and argument:
        if not os.path.exists(argument):
            raise AqlError(f"no checkpoint at {argument!r} (give a checkpoint or run folder written by aql train)")
        from aql_agent.checkpoint import load_policy

        policy = load_policy(argument)
        if env_name == "moba-1v1":
            raise AqlError(f"checkpoint {argument!r} holds a continuous-action {policy.info['algo']!r} learner; "
                           "moba-1v1 takes discrete actions (train a discrete learner for it)")
        return policy, {"kind": "agent", "name": policy.info["algo"], "checkpoint": os.path.abspath(argument),
                        "step": policy.info["step"]}
    raise AqlError(f"unknown player {spec!r}; use human, random, bt:LEVEL (levels {list(BOTS['bt'])}) "
                   "or agent:CHECKPOINT")
