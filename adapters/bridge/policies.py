"""What an agent process can serve: a trained checkpoint, or a random policy or a game's bot for testing.

A bridge policy answers a batch of decisions at once. Each decision comes with its stream (session, agent,
episode), so a stateful policy (the behaviour tree) keeps one state per stream; `begin` and `end` bracket
a stream's episode.
"""

from __future__ import annotations

import hashlib
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
    the fine-tuning loop serves its learner this way between rounds of updates.

    `seeded_streams=True` (exploring torch policies) gives every stream a torch random stream of its own,
    seeded by its episode id (an engine's game seed) and agent, and acts decision by decision: a game's
    exploration then depends on that game alone, not on which other engines shared the agent or how their
    decisions were batched, so games split over several engines play as they do through one."""

    def __init__(self, policy: Any, description: dict[str, Any], deterministic: bool = True,
                 seeded_streams: bool = False):
        self.policy, self.description, self.deterministic = policy, dict(description), deterministic
        self.seeded_streams = seeded_streams and not deterministic
        self.stream_random: dict[Stream, Any] = {}

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

    def begin(self, stream: Stream) -> None:
        if self.seeded_streams:
            import torch

            self.stream_random[stream] = torch.Generator().manual_seed(stream_seed(stream)).get_state()

    def end(self, stream: Stream) -> None:
        self.stream_random.pop(stream, None)

    def act(self, spec: EnvSpec, streams: list[Stream], observations: np.ndarray, masks: np.ndarray | None
            ) -> np.ndarray:
        if not self.seeded_streams:
            return self._act(observations, masks)
        import torch

        actions = []
        for i, stream in enumerate(streams):
            if stream not in self.stream_random:
                self.begin(stream)
            with torch.random.fork_rng(devices=[]):  # the server process's own stream goes on untouched
                torch.set_rng_state(self.stream_random[stream])
                actions.append(self._act(observations[i:i + 1], None if masks is None else masks[i:i + 1]))
                self.stream_random[stream] = torch.get_rng_state()
        return np.concatenate(actions)

    def _act(self, observations: np.ndarray, masks: np.ndarray | None) -> np.ndarray:
        if self.policy.discrete:
            return self.policy.act({"observation": observations, "action_mask": masks}, self.deterministic)
        return self.policy.act(observations, self.deterministic)

    def describe(self) -> dict[str, Any]:
        return dict(self.description)


def stream_seed(stream: Stream) -> int:
    """A torch seed from a stream's episode id and agent (not its session): the same game's same agent draws
    the same exploration whichever engine session plays it; the agents of one game draw differently."""
    _, agent, episode = stream
    text = f"{type(episode).__name__}:{episode}/{agent}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")


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


class GamePlayerPolicy(BridgePolicy):
    """A game's own player (moba-1v1's `bt:LEVEL`, connect-four's `greedy`) on the flat view the bridge carries,
    one player per stream. The game is the one the engine declares; its kind makes the player."""

    def __init__(self, spec: str, seed: int | None = None):
        from aql_agent.adapters.games import game_kind, registered_games

        self.spec, self.seed = spec, seed
        self.players: dict[Stream, Any] = {}
        self.kinds: dict[str, Any] = {}
        reasons = []
        for game in registered_games():  # refuse a spec no game knows at start-up, not at the first handshake
            try:
                game_kind(game).view_player(spec, seed)
                break
            except AqlError as error:
                reasons.append(f"{game}: {error}")
        else:
            raise AqlError(f"no registered game has a player {spec!r} ({'; '.join(reasons)})")

    def _kind(self, env_id: str) -> Any:
        from aql_agent.adapters.games import game_kind, registered_games

        if env_id not in registered_games():  # never import what a remote engine names
            raise AqlError(f"it plays the registered games {registered_games()}")
        if env_id not in self.kinds:
            self.kinds[env_id] = game_kind(env_id)
        return self.kinds[env_id]

    def check(self, spec: EnvSpec) -> str | None:
        try:
            kind = self._kind(spec.env_id)
            kind.view_player(self.spec, self.seed)
            expected = kind.bridge_spec()
        except AqlError as error:
            return f"{self.spec} cannot play {spec.env_id!r}: {error}"
        if (spec.observation_shape, spec.actions, spec.action_mask) != (expected.observation_shape, expected.actions,
                                                                        expected.action_mask):
            return (f"{self.spec} plays {spec.env_id}'s flat view (observations {list(expected.observation_shape)}, "
                    f"{expected.actions} masked actions); the engine declared {list(spec.observation_shape)} and "
                    f"{spec.actions} actions")
        return None

    def act(self, spec: EnvSpec, streams: list[Stream], observations: np.ndarray, masks: np.ndarray | None
            ) -> np.ndarray:
        actions = []
        for stream, observation, mask in zip(streams, observations, masks):
            player = self.players.get(stream)
            if player is None:
                player = self.players[stream] = self._kind(spec.env_id).view_player(self.spec, self.seed)
            actions.append(player({"observation": observation, "action_mask": mask}))
        return np.array(actions)

    def end(self, stream: Stream) -> None:
        self.players.pop(stream, None)

    def describe(self) -> dict[str, Any]:
        name, _, level = self.spec.partition(":")
        return {"name": name, **({"level": level} if level else {})}


def make_bridge_policy(spec: str, seed: int | None = None, backend: str = "torch") -> BridgePolicy:
    """`agent:CHECKPOINT` (or a checkpoint path; run by `backend`), `random`, or a game's bot (`bt:LEVEL`,
    `greedy`)."""
    kind, _, argument = spec.partition(":")
    if kind == "random" and not argument:
        return RandomPolicy(seed)
    path = argument if kind == "agent" else spec
    if kind == "agent" or os.path.exists(path):
        if not os.path.exists(path):
            raise AqlError(f"no checkpoint at {path!r}: give a checkpoint or run folder (aql train), random or a "
                           "game's bot")
        return CheckpointPolicy(path, backend)
    return GamePlayerPolicy(spec, seed)
