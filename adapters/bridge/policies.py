"""What an agent process can serve: a trained checkpoint, or a random or behaviour-tree policy for testing.

A bridge policy answers a batch of decisions at once. Each decision comes with its stream (session, agent,
episode), so a stateful policy (the behaviour tree) keeps one state per stream; `begin` and `end` bracket
a stream's episode.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from aql_agent.adapters.bridge.protocol import EnvSpec
from aql_agent.errors import AqlError

Stream = tuple[int, str, Any]  # (session, agent, episode)


class BridgePolicy:
    """Base class: `check` a handshake, `act` on a batch, `describe` for the welcome and the logs."""

    def check(self, spec: EnvSpec) -> str | None:
        """Why this policy cannot play `spec` (the agent refuses the handshake with it), or None."""
        return None

    def act(self, spec: EnvSpec, streams: list[Stream], observations: np.ndarray, masks: np.ndarray | None
            ) -> np.ndarray:
        """Actions for a batch of decisions of one env spec: [B] indices or [B, *action_shape] floats."""
        raise NotImplementedError

    def begin(self, stream: Stream) -> None:
        """A stream's episode starts."""

    def end(self, stream: Stream) -> None:
        """A stream's episode ended (or its engine went away)."""

    def describe(self) -> dict[str, Any]:
        raise NotImplementedError


class ServedPolicy(BridgePolicy):
    """A trained policy held in memory (`aql_agent.checkpoint.Policy`, or an `OnnxPolicy` of one): one batched
    forward pass per batch of decisions. `deterministic=False` explores (epsilon-greedy among legal actions):
    the fine-tuning loop serves its learner this way between rounds of updates."""

    def __init__(self, policy: Any, description: dict[str, Any], deterministic: bool = True):
        self.policy, self.description, self.deterministic = policy, dict(description), deterministic

    def check(self, spec: EnvSpec) -> str | None:
        policy = self.policy
        if spec.observation_shape != (policy.obs_dim,):
            return (f"the checkpoint takes observations of shape ({policy.obs_dim},), the engine declared "
                    f"{list(spec.observation_shape)}")
        if policy.discrete:
            if spec.actions != policy.act_dim:
                return (f"the checkpoint chooses among {policy.act_dim} discrete actions, the engine declared "
                        + (f"{spec.actions}" if spec.actions is not None else "continuous actions"))
        elif spec.action_shape != (policy.act_dim,):
            return (f"the checkpoint outputs continuous actions of shape ({policy.act_dim},), the engine "
                    f"declared {spec.action_shape or f'{spec.actions} discrete actions'}")
        return None

    def act(self, spec: EnvSpec, streams: list[Stream], observations: np.ndarray, masks: np.ndarray | None
            ) -> np.ndarray:
        if self.policy.discrete:
            return self.policy.act({"observation": observations, "action_mask": masks}, self.deterministic)
        return self.policy.act(observations, self.deterministic)

    def describe(self) -> dict[str, Any]:
        return dict(self.description)


class CheckpointPolicy(ServedPolicy):
    """A trained checkpoint (`aql train`, `aql finetune`) loaded from disk and run by torch, or exported to
    ONNX and run by ONNX Runtime (`backend="onnx"`: the same actions at a fraction of the latency)."""

    def __init__(self, path: str, backend: str = "torch"):
        from aql_agent.checkpoint import load_policy

        if backend == "onnx":
            from aql_agent.export import OnnxPolicy

            policy: Any = OnnxPolicy.from_checkpoint(path)
        elif backend == "torch":
            policy = load_policy(path)
        else:
            raise AqlError(f"unknown backend {backend!r}; choose torch or onnx")
        super().__init__(policy, {"name": policy.info["algo"], "checkpoint": os.path.abspath(path),
                                  "step": policy.info["step"], "backend": backend})
        self.path = path


class RandomPolicy(BridgePolicy):
    """Uniform legal actions (discrete) or uniform in [-1, 1] (continuous): a stand-in for tests."""

    def __init__(self, seed: int | None = None):
        self.rng = np.random.default_rng(seed)

    def act(self, spec: EnvSpec, streams: list[Stream], observations: np.ndarray, masks: np.ndarray | None
            ) -> np.ndarray:
        n = len(observations)
        if spec.actions is None:
            return self.rng.uniform(-1, 1, (n, *spec.action_shape)).astype(np.float32)
        if masks is None:
            return self.rng.integers(0, spec.actions, n)
        return np.array([self.rng.choice(np.flatnonzero(m)) if m.any() else 0 for m in masks])

    def describe(self) -> dict[str, Any]:
        return {"name": "random"}


class BotPolicy(BridgePolicy):
    """moba-1v1's behaviour tree on the flat view the bridge carries (one bot per stream)."""

    def __init__(self, level: str, seed: int | None = None):
        from aql_agent.adapters.moba.bt import LEVELS

        if level not in LEVELS:
            raise AqlError(f"unknown bot level {level!r}; choose from {list(LEVELS)}")
        self.level, self.seed = level, seed
        self.bots: dict[Stream, Any] = {}

    def check(self, spec: EnvSpec) -> str | None:
        from aql_agent.adapters import moba

        if spec.env_id != "moba-1v1" or spec.actions != len(moba.FLAT_ACTIONS) or not spec.action_mask:
            return (f"the behaviour-tree bot plays moba-1v1's flat view ({len(moba.FLAT_ACTIONS)} masked actions), "
                    f"not {spec.env_id!r}")
        return None

    def act(self, spec: EnvSpec, streams: list[Stream], observations: np.ndarray, masks: np.ndarray | None
            ) -> np.ndarray:
        from aql_agent.adapters import moba
        from aql_agent.adapters.moba.bt import BehaviourTreeBot

        actions = []
        for stream, observation, mask in zip(streams, observations, masks):
            bot = self.bots.get(stream)
            if bot is None:
                bot = self.bots[stream] = BehaviourTreeBot(self.level, seed=self.seed)
            heads = bot({"observation": observation, "action_mask": moba.head_masks_from_flat(mask)})
            flat = moba.flatten_action(heads)
            actions.append(flat if mask[flat] else 0)  # 0: the `none` button, always legal
        return np.array(actions)

    def end(self, stream: Stream) -> None:
        self.bots.pop(stream, None)

    def describe(self) -> dict[str, Any]:
        return {"name": "bt", "level": self.level}


def make_bridge_policy(spec: str, seed: int | None = None, backend: str = "torch") -> BridgePolicy:
    """`agent:CHECKPOINT` (or a checkpoint path; run by `backend`), `random`, or `bt:LEVEL` (moba-1v1 only)."""
    kind, _, argument = spec.partition(":")
    if kind == "random" and not argument:
        return RandomPolicy(seed)
    if kind == "bt":
        return BotPolicy(argument or "medium", seed)
    path = argument if kind == "agent" else spec
    if not os.path.exists(path):
        raise AqlError(f"no checkpoint at {path!r}: give a checkpoint or run folder (aql train), random or bt:LEVEL")
    return CheckpointPolicy(path, backend)
