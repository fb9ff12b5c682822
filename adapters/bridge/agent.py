"""The agent side of the bridge: one process serves a policy to any number of engines (`aql deploy`).

The agent binds a ROUTER socket (loopback unless told otherwise); engines connect with DEALER (or REQ)
sockets. Each loop drains every waiting message, answers handshakes, heartbeats and episode ends at once,
and answers all waiting step requests with one batched policy call. A malformed request gets an error
reply and the server keeps serving. With `record_dir`, every game played is written to a replay log (one
per engine session, flushed every second, so a killed agent loses at most a second of steps) and each
game's outcome is appended to `games.jsonl`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from aql_agent.adapters.bridge import protocol as p
from aql_agent.adapters.bridge.policies import BridgePolicy
from aql_agent.errors import AqlError


class Decision(NamedTuple):
    """A decision awaiting its reward before it goes into the log."""

    observation: np.ndarray
    mask: np.ndarray | None
    action: Any


@dataclasses.dataclass
class Stream:
    """One agent of one session: its episode, last frame, and the decision awaiting its reward."""

    episode: Any = None
    frame: int = -1
    pending: Decision | None = None


@dataclasses.dataclass
class Session:
    id: str
    identity: bytes
    envelope: tuple[bytes, ...]
    spec: p.EnvSpec
    engine: str
    last_seen: float
    streams: dict[str, Stream] = dataclasses.field(default_factory=dict)
    writer: Any = None
    ended: set = dataclasses.field(default_factory=set)  # agents whose current episode has ended
    finals: dict = dataclasses.field(default_factory=dict)  # their final observations, for the log
    outcomes: dict = dataclasses.field(default_factory=dict)  # and their outcomes
    log_episode: Any = None  # the engine's episode the log's open episode records
    games: int = 0


class StepRequest(NamedTuple):
    """A valid step request waiting for its batch's policy call."""

    session: Session
    seq: int
    agent: str
    episode: Any
    frame: int
    observation: np.ndarray
    mask: np.ndarray | None
    reward: float


#: agents one session may declare (each holds a stream, and a recorded log one column set)
MAX_AGENTS = 256


class AgentServer:
    """Serve `policy` on `bind` until `stop()` (or `serve(until=...)` returns true)."""

    def __init__(self, policy: BridgePolicy, bind: str = "tcp://127.0.0.1:5555", record_dir: str | None = None,
                 session_timeout: float = 10.0, max_message_bytes: int = p.DEFAULT_MAX_MESSAGE_BYTES,
                 max_batch: int = 256, curve_secret_key: bytes | None = None,
                 log: Callable[[str], None] | None = print, max_sessions: int = 64):
        import zmq

        from aql_agent.errors import require_number

        require_number("--session-timeout", session_timeout, 0, above_low=True)
        require_number("--max-message-bytes", max_message_bytes, 1024, whole=True)
        require_number("--max-batch", max_batch, 1, whole=True)
        require_number("--max-sessions", max_sessions, 1, whole=True)
        self.max_sessions = max_sessions
        if record_dir is not None and os.path.exists(record_dir) and not os.path.isdir(record_dir):
            raise AqlError(f"--record {record_dir} is a file; give a folder for the replay logs")
        p.check_endpoint(bind, "--bind")
        self.policy, self.record_dir, self.session_timeout = policy, record_dir, session_timeout
        self.max_message_bytes, self.max_batch, self.log = max_message_bytes, max_batch, log or (lambda _: None)
        self.context = zmq.Context.instance()
        self.socket = self.context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.MAXMSGSIZE, max_message_bytes + 4096)  # libzmq drops bigger ones unread
        self.socket.setsockopt(zmq.ROUTER_MANDATORY, 0)
        self.socket.setsockopt(zmq.IPV6, int(p.is_ipv6(bind)))
        if curve_secret_key is not None:
            self.socket.setsockopt(zmq.CURVE_SERVER, 1)
            self.socket.setsockopt(zmq.CURVE_SECRETKEY, curve_secret_key)
        try:
            self.socket.bind(bind)
        except zmq.ZMQError as error:
            self.socket.close(0)
            raise AqlError(f"cannot bind {bind}: {error} (another agent there? pick another port, or "
                           "tcp://127.0.0.1:* for a free one)") from None
        self.endpoint = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.sessions: dict[str, Session] = {}
        self.stats = {"requests": 0, "steps": 0, "batches": 0, "errors": 0, "games": 0, "sessions": 0,
                      "decisions_unrecorded": 0, "recording_failures": 0}
        self._running = True
        self._last_flush = time.monotonic()

    # -- the loop ---------------------------------------------------------------------------------------
    def serve(self, until: Callable[[], bool] | None = None, poll_ms: int = 100) -> None:
        import zmq

        # A blocking receive with a timeout (RCVTIMEO), not poll-then-receive: one system call fewer per wake-up.
        self.socket.setsockopt(zmq.RCVTIMEO, poll_ms)
        try:
            while self._running and not (until and until()):
                try:
                    first = self.socket.recv_multipart()
                except zmq.Again:  # idle for poll_ms
                    first = None
                if first is not None:
                    try:
                        self._serve_waiting(first)
                    except Exception as failure:  # noqa: BLE001 - one bad batch must not stop the agent
                        self.stats["errors"] += 1
                        self.log(f"a batch failed and was not answered ({failure!r:.300}); still serving")
                self._housekeeping()
        finally:
            self.close()

    def stop(self) -> None:
        self._running = False

    def _serve_waiting(self, frames: list[bytes]) -> None:
        """Handle `frames` and whatever else has arrived, then answer every step in one policy call."""
        import zmq

        steps = []
        while True:
            self.stats["requests"] += 1
            step = self._handle(frames)
            if step is not None:
                steps.append(step)
            # asking the socket, not catching zmq.Again: an exception per wake-up costs more than the check
            if len(steps) >= self.max_batch or not self.socket.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                break
            frames = self.socket.recv_multipart(zmq.NOBLOCK)
        if steps:
            self._answer_steps(steps)

    def _handle(self, frames: list[bytes]) -> StepRequest | None:
        """Answer everything but steps; a valid step comes back for the batch."""
        identity, envelope, payload = frames[0], tuple(frames[1:-1]), frames[-1]
        seq = 0
        try:
            if len(frames) < 2 or envelope not in ((), (b"",)):  # DEALER: [id, msg]; REQ: [id, b"", msg]
                envelope = ()  # never echo the extra frames back
                raise p.BridgeError(p.MALFORMED, "a request is one frame (DEALER) or an empty delimiter and one "
                                                 "frame (REQ)")
            message = p.decode(payload, self.max_message_bytes)
            seq = message["seq"]
            kind = message["type"]
            if kind == "hello":
                self._send(identity, envelope, self._hello(identity, envelope, message))
                return None
            session = self._session(message, identity)
            session.last_seen = time.monotonic()
            if kind == "step":
                return self._parse_step(session, message)
            if kind == "end":
                self._end(session, message)
                self._send(identity, envelope, {"type": "ack", "seq": seq})
            elif kind == "heartbeat":
                self._send(identity, envelope, {"type": "heartbeat", "seq": seq, "time": time.time()})
            else:  # bye
                self._close_session(message["session"], "engine said bye")
                self._send(identity, envelope, {"type": "ack", "seq": seq})
        except p.BridgeError as failure:
            self.stats["errors"] += 1
            seq = failure.seq if failure.seq is not None else seq
            self._send(identity, envelope, p.error(seq if isinstance(seq, int) else 0, failure.code, failure.detail))
        except Exception as failure:  # noqa: BLE001 - no request may take the agent down
            self.stats["errors"] += 1
            self._send(identity, envelope, p.error(seq if isinstance(seq, int) else 0, p.INTERNAL,
                                                   f"the agent could not handle this request: {failure!r:.300}"))
        return None

    def _hello(self, identity: bytes, envelope: tuple, message: dict) -> dict:
        seq = message["seq"]
        protocol = message.get("protocol")
        version = message.get("version")
        if protocol != p.PROTOCOL:
            return {"type": "refuse", "seq": seq, "reason": f"this agent speaks {p.PROTOCOL!r}, not {protocol!r}"}
        if not (isinstance(version, list) and len(version) == 2 and all(isinstance(v, int) for v in version)):
            raise p.BridgeError(p.BAD_FIELD, f"hello.version must be [major, minor], got {version!r}")
        if version[0] != p.VERSION[0]:
            return {"type": "refuse", "seq": seq, "reason": f"protocol major version {version[0]} is not this "
                    f"agent's {p.VERSION[0]} (agent speaks {p.VERSION[0]}.{p.VERSION[1]})"}
        spec = p.EnvSpec.from_wire(message)
        if len(self.sessions) >= self.max_sessions:
            return {"type": "refuse", "seq": seq, "reason": f"this agent serves at most {self.max_sessions} sessions "
                    "at once (aql deploy --max-sessions); send bye from finished ones"}
        if len(spec.agents) > MAX_AGENTS:
            return {"type": "refuse", "seq": seq, "reason": f"{len(spec.agents)} agents in one session; at most "
                    f"{MAX_AGENTS}"}
        if spec.observation_bytes > self.max_message_bytes or (spec.actions or 0) > self.max_message_bytes:
            return {"type": "refuse", "seq": seq, "reason": f"an observation of {spec.observation_bytes} bytes or "
                    f"{spec.actions} actions cannot fit this agent's {self.max_message_bytes}-byte messages"}
        reason = self.policy.check(spec)
        if reason:
            return {"type": "refuse", "seq": seq, "reason": reason}
        session_id = secrets.token_hex(8)
        engine = str(message.get("engine", "engine"))
        session = Session(session_id, identity, envelope, spec, engine, time.monotonic(),
                          streams={agent: Stream() for agent in spec.agents})
        if self.record_dir:
            try:
                session.writer = self._open_log(session_id, session)
            except Exception as failure:  # noqa: BLE001 - e.g. the folder became unwritable
                self.log(f"cannot open a replay log in {self.record_dir}: {failure!r:.300}")
                return {"type": "refuse", "seq": seq, "reason": f"this agent records every game and cannot open a "
                        f"log now ({failure!r:.200})"}
        self.sessions[session_id] = session
        self.stats["sessions"] += 1
        self.log(f"session {session_id}: {engine} playing {spec.env_id} (agents {list(spec.agents)})")
        return {"type": "welcome", "seq": seq, "protocol": p.PROTOCOL, "version": list(p.VERSION),
                "session": session_id, "policy": self.policy.describe(),
                "heartbeat_ms": int(self.session_timeout * 1000 / 4),
                "session_timeout_ms": int(self.session_timeout * 1000), "max_message_bytes": self.max_message_bytes}

    def _session(self, message: dict, identity: bytes) -> Session:
        session_id = message.get("session")
        if not isinstance(session_id, str):
            raise p.BridgeError(p.BAD_FIELD, f"{message['type']}.session must be the string the welcome gave, got "
                                             f"{type(session_id).__name__}")
        session = self.sessions.get(session_id)
        if session is None:
            raise p.BridgeError(p.NO_SESSION, f"no session {session_id!r} (the agent restarted, or it timed out): "
                                              "send hello again")
        if session.identity != identity:
            session.identity = identity  # the engine reconnected with a new socket
        return session

    def _parse_step(self, session: Session, message: dict) -> StepRequest:
        spec = session.spec
        agent = p.require(message, "agent", str, where="step")
        if agent not in session.streams:
            raise p.BridgeError(p.BAD_FIELD, f"step.agent {agent!r} is not one of the handshake's {list(spec.agents)}")
        episode = message.get("episode")
        if not isinstance(episode, (int, str)) or isinstance(episode, bool):
            raise p.BridgeError(p.BAD_FIELD, f"step.episode must be an integer or a string, got {episode!r}")
        frame = p.require_int(message.get("frame"), "step.frame", low=0)
        stream = session.streams[agent]
        if episode == stream.episode and frame <= stream.frame:
            raise p.BridgeError(p.OUT_OF_ORDER, f"frame {frame} of episode {episode!r} for {agent!r} does not follow "
                                                f"frame {stream.frame}")
        observation = p.array_from_wire(message.get("observation"), spec.observation_dtype, spec.observation_shape,
                                        "step.observation")
        mask = None
        if spec.action_mask:
            mask = p.array_from_wire(message.get("action_mask"), "uint8", (spec.actions,), "step.action_mask")
            if mask.max(initial=0) > 1:
                raise p.BridgeError(p.BAD_FIELD, "step.action_mask bytes are 1 (legal) or 0, got "
                                                 f"{int(mask.max())}")
            if not mask.any():
                raise p.BridgeError(p.BAD_FIELD, "step.action_mask allows no action: send at least one legal action")
        reward = float(p.require(message, "reward", (int, float), where="step", default=0.0))
        if episode != stream.episode:
            self._begin(session, agent, episode)
        stream.frame = frame
        return StepRequest(session, message["seq"], agent, episode, frame, observation, mask, reward)

    def _answer_steps(self, steps: list[StepRequest]) -> None:
        """One policy call per environment spec among the waiting steps (usually one)."""
        groups: dict[p.EnvSpec, list[StepRequest]] = {}
        for step in steps:
            groups.setdefault(step.session.spec, []).append(step)
        for spec, group in groups.items():
            self._answer_group(spec, group)

    def _answer_group(self, spec: p.EnvSpec, steps: list[StepRequest]) -> None:
        if len(steps) == 1:  # the common case with one engine: a view, not a stack
            observations = steps[0].observation[None]
            masks = steps[0].mask[None] if spec.action_mask else None
        else:
            observations = np.stack([s.observation for s in steps])
            masks = np.stack([s.mask for s in steps]) if spec.action_mask else None
        try:
            actions = self.policy.act(spec, [(id(s.session), s.agent, s.episode) for s in steps], observations, masks)
        except Exception as failure:  # a policy bug must not take the server down
            for step in steps:
                self._send(step.session.identity, step.session.envelope,
                           p.error(step.seq, p.INTERNAL, f"policy failed: {failure}"))
            self.stats["errors"] += len(steps)
            return
        self.stats["batches"] += 1
        self.stats["steps"] += len(steps)
        for step, action in zip(steps, actions):
            session, stream = step.session, step.session.streams[step.agent]
            if session.writer is not None:
                if session.id not in self.sessions:  # an earlier step of this batch could not be recorded
                    self._send(session.identity, session.envelope, p.error(step.seq, p.NO_SESSION, "the session "
                               "was closed because its recording failed: send hello again"))
                    continue
                try:
                    if stream.pending is not None and stream.episode != session.log_episode:
                        self._drop_pending(session, stream)  # its episode's log episode was closed meanwhile
                    if stream.pending is not None:
                        session.writer.add_step(*self._logged(stream.pending), step.reward, False, False,
                                                agent=step.agent)
                    stream.pending = Decision(step.observation, step.mask, action)
                except Exception as failure:  # noqa: BLE001 - a full disk ends this session, not the agent
                    self._recording_failed(session, failure)
                    self._send(session.identity, session.envelope, p.error(step.seq, p.INTERNAL, f"recording "
                               f"failed ({failure!r:.200}); the session is closed: send hello again"))
                    continue
            wire_action = (int(action) if session.spec.actions is not None
                           else p.array_to_wire(np.asarray(action), "float32"))
            self._send(session.identity, session.envelope, {"type": "action", "seq": step.seq, "episode": step.episode,
                                                             "frame": step.frame, "agent": step.agent,
                                                             "action": wire_action})

    # -- episodes and recording -------------------------------------------------------------------------
    def _begin(self, session: Session, agent: str, episode: Any) -> None:
        stream = session.streams[agent]
        if stream.episode is not None:  # the engine moved on without an `end`: the policy forgets that episode
            self.policy.end((id(session), agent, stream.episode))
        self._drop_pending(session, stream)
        if session.writer is not None:
            others_open = any(s.episode == episode for name, s in session.streams.items() if name != agent)
            if not others_open:
                if session.writer.episode_open:
                    self._finish_log_episode(session, {"stopped": "the engine began another episode"})
                session.writer.begin_episode(metadata={"engine_episode": episode})
                session.ended, session.finals, session.outcomes = set(), {}, {}
                session.log_episode = episode
        stream.episode, stream.frame, stream.pending = episode, -1, None
        self.policy.begin((id(session), agent, episode))

    def _end(self, session: Session, message: dict) -> None:
        agent = p.require(message, "agent", str, where="end")
        if agent not in session.streams:
            raise p.BridgeError(p.BAD_FIELD, f"end.agent {agent!r} is not one of {list(session.spec.agents)}")
        stream = session.streams[agent]
        episode = message.get("episode")
        if episode != stream.episode or stream.episode is None:
            raise p.BridgeError(p.BAD_FIELD, f"end.episode {episode!r} is not {agent!r}'s episode in progress "
                                             f"({stream.episode!r}): end the episode that was stepped")
        p.require_int(message.get("frame", 0), "end.frame", low=0)
        outcome = message.get("outcome")
        if outcome not in (None, "win", "loss", "draw"):
            raise p.BridgeError(p.BAD_FIELD, f"end.outcome must be win, loss, draw or nil, got {outcome!r}")
        final = None
        if message.get("observation") is not None:
            final = p.array_from_wire(message["observation"], session.spec.observation_dtype,
                                      session.spec.observation_shape, "end.observation")
        mask = None
        if session.spec.action_mask and message.get("action_mask") is not None:
            mask = p.array_from_wire(message["action_mask"], "uint8", (session.spec.actions,), "end.action_mask")
        elif session.spec.action_mask and final is not None:  # unknown: all zeros, which learners read as all legal
            mask = np.zeros(session.spec.actions, np.uint8)
        reward = float(p.require(message, "reward", (int, float), where="end", default=0.0))
        terminated = bool(message.get("terminated", outcome is not None))
        truncated = bool(message.get("truncated", False))
        writer = session.writer
        if writer is not None and stream.episode != session.log_episode:
            self._drop_pending(session, stream)  # an episode whose log episode another one already closed
        if writer is not None and writer.episode_open and stream.pending is not None:
            try:
                writer.add_step(*self._logged(stream.pending), reward, terminated, truncated, agent=agent)
                stream.pending = None
                session.ended.add(agent)
                if final is not None:
                    session.finals[agent] = self._observation(final, mask)
                if outcome is not None:
                    session.outcomes[agent] = outcome
                active = {name for name, s in session.streams.items() if s.episode == stream.episode}
                if session.ended >= active:
                    self._finish_log_episode(session, {"engine_episode": stream.episode})
            except Exception as failure:  # noqa: BLE001 - a full disk ends this session, not the agent
                self._recording_failed(session, failure)
                raise p.BridgeError(p.INTERNAL, f"recording failed ({failure!r:.200}); the session is closed: "
                                                "send hello again") from None
        self.policy.end((id(session), agent, stream.episode))
        session.games += 1
        self.stats["games"] += 1
        record = {"session": session.id, "engine": session.engine,
                  "episode": stream.episode, "agent": agent, "outcome": outcome, "frame": message.get("frame")}
        self.log(json.dumps(record))
        if self.record_dir:
            with open(os.path.join(self.record_dir, "games.jsonl"), "a") as f:
                f.write(json.dumps(record) + "\n")
        stream.episode, stream.frame = None, -1

    def _drop_pending(self, session: Session, stream: Any) -> None:
        """A decision whose reward never came (the engine began another episode, said bye or went silent
        without `end`) is not logged, since its reward and done flags are unknown; counted in the stats."""
        if session.writer is not None and stream.pending is not None:
            self.stats["decisions_unrecorded"] += 1
        stream.pending = None

    @staticmethod
    def _observation(observation: np.ndarray, mask: np.ndarray | None) -> Any:
        return observation if mask is None else {"observation": observation, "action_mask": mask}

    def _logged(self, pending: Decision) -> tuple[Any, Any]:
        return self._observation(pending.observation, pending.mask), pending.action

    def _finish_log_episode(self, session: Session, metadata: dict) -> None:
        finals = session.finals or None
        if finals is not None and len(session.writer.agents) == 1:  # a one-agent log takes the observation itself
            finals = next(iter(finals.values()))
        session.writer.end_episode(final_observation=finals, outcome=session.outcomes or None, metadata=metadata)
        session.finals, session.outcomes = {}, {}

    def _open_log(self, session_id: str, session: Session) -> Any:
        from gymnasium import spaces

        from aql_agent.replay import ReplayWriter

        spec = session.spec
        os.makedirs(self.record_dir, exist_ok=True)
        observation = spaces.Box(-np.inf, np.inf, spec.observation_shape, np.dtype(spec.observation_dtype)) \
            if np.dtype(spec.observation_dtype).kind == "f" else \
            spaces.Box(np.iinfo(spec.observation_dtype).min, np.iinfo(spec.observation_dtype).max,
                       spec.observation_shape, np.dtype(spec.observation_dtype))
        if spec.action_mask:
            observation = spaces.Dict({"observation": observation, "action_mask": spaces.MultiBinary(spec.actions)})
        action = (spaces.Discrete(spec.actions) if spec.actions is not None
                  else spaces.Box(-np.inf, np.inf, spec.action_shape, np.float32))
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = os.path.join(self.record_dir, f"{spec.env_id}-{stamp}-{session_id}.aqlog")
        player = {"kind": "agent", **self.policy.describe()}
        return ReplayWriter(path, spec.env_id, observation, action, agents=list(spec.agents),
                            players={agent: player for agent in spec.agents},
                            recorder={"tool": "aql deploy", "engine": session.engine},
                            metadata={"session": session_id, "env": spec.to_wire()})

    # -- sessions ---------------------------------------------------------------------------------------
    def _housekeeping(self) -> None:
        now = time.monotonic()
        for session_id, session in list(self.sessions.items()):
            if now - session.last_seen > self.session_timeout:
                self._close_session(session_id, f"engine silent for {self.session_timeout:.0f} s")
        if now - self._last_flush >= 1.0:
            for session in list(self.sessions.values()):
                if session.writer is not None:
                    try:
                        session.writer.flush()
                    except Exception as failure:  # noqa: BLE001
                        self._recording_failed(session, failure)
            self._last_flush = now

    def _recording_failed(self, session: Session, failure: BaseException) -> None:
        """The session's log cannot be written (disk full, folder gone): keep what was flushed (the log stays a
        readable `.partial`), close that session, keep serving the others."""
        self.sessions.pop(session.id, None)
        self.stats["recording_failures"] += 1
        writer, session.writer = session.writer, None
        try:
            writer.abort()
        except Exception:  # noqa: BLE001 - the file may be gone already
            pass
        for agent, stream in session.streams.items():
            if stream.episode is not None:
                self.policy.end((id(session), agent, stream.episode))
        self.log(f"session {session.id} closed: its recording failed ({failure!r:.300})")

    def _close_session(self, session_id: str, why: str) -> None:
        session = self.sessions.pop(session_id, None)
        if session is None:
            return
        if session.writer is not None:
            try:
                if session.writer.episode_open:
                    self._finish_log_episode(session, {"stopped": why})
                session.writer.close()
            except Exception as failure:  # noqa: BLE001 - the log stays a readable .partial
                self.log(f"session {session_id}: its log could not be finished ({failure!r:.300})")
        for agent, stream in session.streams.items():
            self._drop_pending(session, stream)
            if stream.episode is not None:
                self.policy.end((id(session), agent, stream.episode))
        self.log(f"session {session_id} closed: {why} ({session.games} games)")

    def close(self) -> None:
        for session_id in list(self.sessions):
            self._close_session(session_id, "agent shut down")
        self.socket.close(0)

    def _send(self, identity: bytes, envelope: tuple, message: dict) -> None:
        self.socket.send_multipart([identity, *envelope, p.encode(message)])
