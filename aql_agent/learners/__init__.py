"""Offline learners behind one protocol (see `base.Learner`), looked up by the names `aql train` takes."""

from __future__ import annotations

from aql_agent.errors import AqlError
from aql_agent.learners.aql import AQLConfig, AQLLearner
from aql_agent.learners.aql_discrete import DiscreteAQLConfig, DiscreteAQLLearner
from aql_agent.learners.base import Batch, DiscreteLearner, Learner, LearnerConfig
from aql_agent.learners.bc import BCConfig, BCLearner
from aql_agent.learners.bc_discrete import DiscreteBCConfig, DiscreteBCLearner
from aql_agent.learners.bcq import BCQConfig, BCQLearner
from aql_agent.learners.bcq_discrete import DiscreteBCQConfig, DiscreteBCQLearner
from aql_agent.learners.bear import BEARConfig, BEARLearner
from aql_agent.learners.cql import CQLConfig, CQLLearner
from aql_agent.learners.ddpg import DDPGConfig, DDPGLearner
from aql_agent.learners.dqn import DQNConfig, DQNLearner
from aql_agent.learners.sac import SACConfig, SACLearner

#: algorithm name -> (learner class, config overrides that define the variant)
ALGORITHMS: dict[str, tuple[type[Learner], dict]] = {
    "bc": (BCLearner, {}),
    "sac": (SACLearner, {}),
    "ddpg": (DDPGLearner, {}),
    "bcq": (BCQLearner, {}),
    "bear": (BEARLearner, {}),
    "cql": (CQLLearner, {}),
    "aql": (AQLLearner, {}),
    # The paper's section-6 variant: AQL with CQL(H)'s penalty (CQL's fixed weight 5).
    "aql-cql": (AQLLearner, {"conservative_weight": 5.0}),
    # discrete actions (act_dim = the number of actions), with legal-action masks
    "bc-discrete": (DiscreteBCLearner, {}),
    "dqn": (DQNLearner, {}),
    "bcq-discrete": (DiscreteBCQLearner, {}),
    "aql-discrete": (DiscreteAQLLearner, {}),
}


def is_discrete(algo: str) -> bool:
    """Whether `algo` takes discrete actions."""
    if algo not in ALGORITHMS:
        raise AqlError(f"unknown algorithm {algo!r}; choose one of {', '.join(ALGORITHMS)}")
    return ALGORITHMS[algo][0].discrete


def make_learner(algo: str, obs_dim: int, act_dim: int, overrides: dict | None = None,
                 device: str = "cpu") -> Learner:
    """Build the learner called `algo` with its variant's defaults, then `overrides` on top."""
    if algo not in ALGORITHMS:
        raise AqlError(f"unknown algorithm {algo!r}; choose one of {', '.join(ALGORITHMS)}")
    learner_class, variant = ALGORITHMS[algo]
    config = learner_class.config_class.from_dict({**variant, **(overrides or {})})
    learner = learner_class(obs_dim, act_dim, config, device)
    learner.algo = algo
    return learner


__all__ = ["ALGORITHMS", "AQLConfig", "AQLLearner", "BCConfig", "BCLearner", "BCQConfig", "BCQLearner", "BEARConfig",
           "BEARLearner", "Batch", "CQLConfig", "CQLLearner", "DDPGConfig", "DDPGLearner", "DQNConfig", "DQNLearner",
           "DiscreteAQLConfig", "DiscreteAQLLearner", "DiscreteBCConfig", "DiscreteBCLearner", "DiscreteBCQConfig",
           "DiscreteBCQLearner", "DiscreteLearner", "Learner", "LearnerConfig", "SACConfig", "SACLearner",
           "is_discrete", "make_learner"]
