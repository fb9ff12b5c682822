"""Names the rest of the SDK uses for environments and players: `moba-1v1`, `bt:hard`, `random`, `agent:PATH`.

    env = make_parallel_env("moba-1v1", seed=0, heroes=("ranger", "bruiser"))
    bot, who = make_player("bt:hard", "moba-1v1", seed=1)   # who = the replay log's player description
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aql_agent.errors import AqlError

if TYPE_CHECKING:
    from aql_agent.data import TransitionDataset

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


def learner_view(dataset: TransitionDataset) -> TransitionDataset:
    """A dataset in the action view a discrete learner takes: a registered multi-agent env's multi-head
    actions flattened (moba-1v1: `FlatActions`' 53 actions and masks); other datasets as they are."""
    if dataset.metadata.get("env_id") == "moba-1v1" and dataset.actions.ndim == 2:
        from aql_agent.adapters import moba

        try:
            return moba.flatten_dataset(dataset)
        except ValueError as error:
            raise AqlError(f"{dataset.metadata.get('source')}: {error}") from error
    return dataset


def flat_spaces(name: str) -> tuple[Any, Any]:
    """(observation space, action space) of a registered multi-agent env as discrete learners see it."""
    if name == "moba-1v1":
        from aql_agent.adapters import moba

        view = moba.FlatActions(moba.parallel_env())
        return view.observation_space("blue")["observation"], view.action_space("blue")
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
        who = {"kind": "agent", "name": policy.info["algo"], "checkpoint": os.path.abspath(argument),
               "step": policy.info["step"]}
        if env_name == "moba-1v1":
            from aql_agent.adapters import moba

            if not policy.learner.discrete or policy.learner.act_dim != len(moba.FLAT_ACTIONS):
                raise AqlError(f"checkpoint {argument!r} holds a {policy.info['algo']!r} learner with "
                               f"{policy.learner.act_dim} {'discrete' if policy.learner.discrete else 'continuous'} "
                               f"actions; moba-1v1 agents take its {len(moba.FLAT_ACTIONS)} flat discrete actions "
                               "(train bc-discrete, dqn, bcq-discrete or aql-discrete on moba-1v1 logs)")
            return moba.flat_player(policy), who
        return policy, {"kind": "agent", "name": policy.info["algo"], "checkpoint": os.path.abspath(argument),
                        "step": policy.info["step"]}
    raise AqlError(f"unknown player {spec!r}; use human, random, bt:LEVEL (levels {list(BOTS['bt'])}) "
                   "or agent:CHECKPOINT")


def evaluate_against(env_name: str, policy: Policy, opponent: str, games: int, seed: int = 0,
                     progress: bool = False) -> dict[str, Any]:
    """Win rate (with a 95% interval), game length, kills and towers of a discrete learner's policy (which
    takes the flat view: observation and mask -> action index) against `opponent` in a registered env."""
    if env_name == "moba-1v1":
        from aql_agent.adapters import moba
        from aql_agent.adapters.moba.play import evaluate_against as play_against

        return {"env": env_name, **play_against(moba.flat_player(policy), opponent, games, first_seed=seed,
                                                progress=progress)}
    raise AqlError(f"unknown multi-agent environment {env_name!r}; registered: {list(MULTI_AGENT_ENVS)}")
