"""The engine side of the bridge: the client a game integration calls (Python; the protocol doc serves C++/C#).

    client = EngineClient("tcp://127.0.0.1:5555", spec, fallback_action=0)
    client.connect()                                  # hello -> welcome (or BridgeRefused with the reason)
                                                      # waits up to connect_timeout_s for an agent starting up
    action = client.act("blue", episode, frame, observation, action_mask, reward)
    client.end_episode("blue", episode, frame, final_observation, action_mask, reward, outcome="win")
    client.close()

A DEALER socket, requests paired with replies by `seq`. When the agent does not answer within `timeout_s`
the client returns `fallback_action` for that decision (the game never stalls), drops the socket and
reconnects; if the agent restarted and no longer knows the session, the client shakes hands again and
repeats the request. Late replies to abandoned requests are discarded by their `seq`.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from aql_agent.adapters.bridge import protocol as p
from aql_agent.errors import AqlError


class BridgeRefused(AqlError):
    """The agent refused the handshake; the message is its reason."""


class EngineClient:
    def __init__(self, endpoint: str, spec: p.EnvSpec, engine: str = "aql-agent python engine",
                 timeout_s: float = 1.0, fallback_action: Any = 0, curve_server_key: bytes | None = None,
                 connect_timeout_s: float = 30.0):
        import zmq

        self.endpoint, self.spec, self.engine, self.timeout_s = endpoint, spec, engine, timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.fallback_action = fallback_action
        self.curve_server_key = curve_server_key
        self.context = zmq.Context.instance()
        self.socket = None
        self.session: str | None = None
        self.welcome: dict[str, Any] = {}
        self.seq = 0
        self.stats = {"requests": 0, "timeouts": 0, "fallbacks": 0, "reconnects": 0, "rehandshakes": 0,
                      "stale_replies": 0, "mismatched": 0}
        self.latencies: list[float] = []

    # -- connection -------------------------------------------------------------------------------------
    def _open(self) -> None:
        import zmq

        self.socket = self.context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.IPV6, int(p.is_ipv6(self.endpoint)))
        self._receive_timeout_ms: int | None = None
        if self.curve_server_key is not None:
            public, secret = zmq.curve_keypair()
            self.socket.setsockopt(zmq.CURVE_SERVERKEY, self.curve_server_key)
            self.socket.setsockopt(zmq.CURVE_PUBLICKEY, public)
            self.socket.setsockopt(zmq.CURVE_SECRETKEY, secret)
        try:
            self.socket.connect(self.endpoint)
        except zmq.ZMQError as error:
            self.socket.close(0)
            self.socket = None
            raise AqlError(f"cannot connect to {self.endpoint}: {error} (an endpoint like tcp://127.0.0.1:5555)") \
                from None

    def _reset_socket(self) -> None:
        if self.socket is not None:
            self.socket.close(0)
        self.socket = None
        self.stats["reconnects"] += 1

    def connect(self, timeout_s: float | None = None) -> dict[str, Any]:
        """Shake hands; returns the welcome (session, policy, heartbeat and timeout). Raises BridgeRefused.

        The first handshake waits up to `connect_timeout_s` (an agent may still be loading its checkpoint);
        a re-handshake in the middle of a game waits `timeout_s`, like any decision."""
        timeout_s = self.connect_timeout_s if timeout_s is None else timeout_s
        reply = self._request({"type": "hello", "protocol": p.PROTOCOL, "version": list(p.VERSION),
                               "engine": self.engine, "env": self.spec.to_wire()}, timeout_s=timeout_s)
        if reply is None:
            raise AqlError(f"no agent answered at {self.endpoint} within {timeout_s} s (is `aql deploy` running "
                           "and bound there?)")
        if reply["type"] == "refuse":
            raise BridgeRefused(f"the agent at {self.endpoint} refused: {reply.get('reason')}")
        if reply["type"] != "welcome":
            raise AqlError(f"unexpected reply to hello: {reply}")
        self.session, self.welcome = reply["session"], reply
        return reply

    def close(self) -> None:
        if self.socket is not None and self.session is not None:
            self._request({"type": "bye", "session": self.session})
        if self.socket is not None:
            self.socket.close(0)
        self.socket, self.session = None, None

    # -- decisions --------------------------------------------------------------------------------------
    def act(self, agent: str, episode: int | str, frame: int, observation: np.ndarray,
            action_mask: np.ndarray | None = None, reward: float = 0.0) -> Any:
        """The agent's action for this decision, or `fallback_action` if it does not answer in time."""
        message = {"type": "step", "agent": agent, "episode": episode, "frame": frame, "reward": float(reward),
                   "observation": p.array_to_wire(observation, self.spec.observation_dtype)}
        if self.spec.action_mask:
            message["action_mask"] = p.array_to_wire(np.asarray(action_mask) != 0, "uint8")
        reply = self._session_request(message)
        if reply is not None and reply["type"] == "action" and (
                reply.get("frame") != frame or reply.get("episode") != episode or reply.get("agent") != agent):
            self.stats["mismatched"] += 1  # an answer to another decision: never play it
            reply = None
        if reply is None or reply["type"] != "action":
            self.stats["fallbacks"] += 1
            return self.fallback_action
        action = reply["action"]
        if self.spec.actions is None:
            return p.array_from_wire(action, "float32", self.spec.action_shape, "action")
        return action

    def end_episode(self, agent: str, episode: int | str, frame: int, final_observation: np.ndarray | None = None,
                    action_mask: np.ndarray | None = None, reward: float = 0.0, terminated: bool = True,
                    truncated: bool = False, outcome: str | None = None) -> bool:
        """Report the episode's end (the last reward, the final observation, the outcome); True if acknowledged."""
        message = {"type": "end", "agent": agent, "episode": episode, "frame": frame, "reward": float(reward),
                   "terminated": terminated, "truncated": truncated, "outcome": outcome}
        if final_observation is not None:
            message["observation"] = p.array_to_wire(final_observation, self.spec.observation_dtype)
            if self.spec.action_mask and action_mask is not None:
                message["action_mask"] = p.array_to_wire(np.asarray(action_mask) != 0, "uint8")
        reply = self._session_request(message)
        return reply is not None and reply["type"] == "ack"

    def heartbeat(self) -> bool:
        reply = self._session_request({"type": "heartbeat"})
        return reply is not None and reply["type"] == "heartbeat"

    def _session_request(self, message: dict) -> dict | None:
        """Send within the session, shaking hands first (again) when there is none or the agent forgot it."""
        for _ in range(2):
            if self.session is None:
                try:
                    self.connect(self.timeout_s)
                    self.stats["rehandshakes"] += 1
                except AqlError:
                    return None
            reply = self._request({**message, "session": self.session})
            if reply is not None and reply["type"] == "error" and reply.get("code") == p.NO_SESSION:
                self.session = None
                continue
            return reply
        return None

    def _request(self, message: dict, timeout_s: float | None = None) -> dict | None:
        """One request, one reply (None after `timeout_s`, by default the client's, with the socket reset)."""
        import zmq

        if self.socket is None:
            self._open()
        self.seq += 1
        seq = self.seq
        self.stats["requests"] += 1
        started = time.perf_counter()
        self.socket.send(p.encode({**message, "seq": seq}))
        deadline = started + (self.timeout_s if timeout_s is None else timeout_s)
        while True:
            # A blocking receive with a timeout (RCVTIMEO) rather than poll-then-receive: one wake-up per reply.
            remaining = deadline - time.perf_counter()
            timeout_ms = int(remaining * 1000) + 1
            if timeout_ms != self._receive_timeout_ms:
                self.socket.setsockopt(zmq.RCVTIMEO, timeout_ms)
                self._receive_timeout_ms = timeout_ms
            try:
                if remaining <= 0:
                    raise zmq.Again
                frame = self.socket.recv()
            except zmq.Again:
                self.stats["timeouts"] += 1
                self._reset_socket()  # the session is kept: a restarted agent answers no_session, and we re-hello
                return None
            reply = p.decode(frame, expect=p.AGENT_MESSAGES)
            if reply["seq"] == seq:
                self.latencies.append(time.perf_counter() - started)
                return reply
            self.stats["stale_replies"] += 1


def engine_client(spec: p.EnvSpec, engine: str, endpoint: str, **options: Any) -> EngineClient:
    """A client for `spec` whose fallback (a decision that timed out) is action 0 or a zero action."""
    fallback = 0 if spec.actions is not None else np.zeros(spec.action_shape, np.float32)
    return EngineClient(endpoint, spec, engine=engine, fallback_action=fallback, **options)
