"""aql-bridge protocol v1: the messages between a game engine and an agent process (docs/bridge-protocol.md).

Every message is one ZeroMQ frame holding one msgpack map with string keys; `type` says which message it is
and `seq` (chosen by the engine, echoed by the agent) pairs a reply with its request. Arrays travel as raw
little-endian bytes whose dtype and shape the handshake fixed. No pickle: msgpack maps, strings, numbers,
booleans, nil and bytes only.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import math
from collections.abc import Mapping
from typing import Any

import msgpack
import numpy as np

from aql_agent.errors import AqlError

PROTOCOL = "aql-bridge"
VERSION = (1, 0)
DEFAULT_MAX_MESSAGE_BYTES = 1 << 20  # 1 MiB; larger frames are refused unread

ENGINE_MESSAGES = ("hello", "step", "end", "heartbeat", "bye")
AGENT_MESSAGES = ("welcome", "refuse", "action", "ack", "heartbeat", "error")
#: how deep arrays and maps may nest in one message (the deepest valid message nests 4)
MAX_DEPTH = 32
OBSERVATION_DTYPES = ("float32", "float64", "int32", "int64", "uint8", "int8")

# error codes an agent sends back (the request was not served; the agent keeps serving)
MALFORMED, TOO_LARGE, UNKNOWN_TYPE, BAD_FIELD, SHAPE, OUT_OF_ORDER, NO_SESSION, INTERNAL = (
    "malformed", "too_large", "unknown_type", "bad_field", "shape", "out_of_order", "no_session", "internal")


class BridgeError(AqlError):
    """A message that breaks the protocol; `code` is the error code the other side receives."""

    def __init__(self, code: str, message: str, seq: int | None = None):
        super().__init__(f"{code}: {message}")
        self.code, self.detail, self.seq = code, message, seq


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """What the engine declares in its hello: observation layout, action space, agents, tick rate."""

    env_id: str
    observation_shape: tuple[int, ...]
    observation_dtype: str = "float32"
    actions: int | None = None  # discrete: the number of actions
    action_shape: tuple[int, ...] | None = None  # continuous: the action vector's shape (float32 on the wire)
    action_mask: bool = False  # discrete: steps carry a uint8 legal-action mask of `actions` bytes
    agents: tuple[str, ...] = ("agent",)
    tick_rate: float = 0.0  # decisions per second per agent (informative)

    def __post_init__(self) -> None:
        if (self.actions is None) == (self.action_shape is None):
            raise BridgeError(BAD_FIELD, "env.action must be discrete (n) or continuous (shape), exactly one")
        if self.observation_dtype not in OBSERVATION_DTYPES:
            raise BridgeError(BAD_FIELD, f"observation dtype {self.observation_dtype!r} is not one of "
                                         f"{list(OBSERVATION_DTYPES)}")
        if self.action_mask and self.actions is None:
            raise BridgeError(BAD_FIELD, "an action mask needs a discrete action space")
        if not self.agents or not all(isinstance(a, str) and a for a in self.agents):
            raise BridgeError(BAD_FIELD, "env.agents must be a non-empty list of names")

    @property
    def observation_bytes(self) -> int:
        return math.prod(self.observation_shape) * np.dtype(self.observation_dtype).itemsize

    def to_wire(self) -> dict[str, Any]:
        action = ({"type": "discrete", "n": self.actions} if self.actions is not None
                  else {"type": "continuous", "shape": list(self.action_shape)})
        return {"id": self.env_id, "observation": {"dtype": self.observation_dtype,
                                                   "shape": list(self.observation_shape)},
                "action": action, "action_mask": self.action_mask, "agents": list(self.agents),
                "tick_rate": self.tick_rate}

    @classmethod
    def from_wire(cls, value: Any) -> EnvSpec:
        env = require(value, "env", Mapping, where="hello")
        observation = require(env, "observation", Mapping, where="env")
        action = require(env, "action", Mapping, where="env")
        kind = require(action, "type", str, where="env.action")
        shape = [require_int(v, "env.observation.shape", low=1) for v in
                 require(observation, "shape", list, where="env.observation")]
        if kind == "discrete":
            actions, action_shape = require_int(action.get("n"), "env.action.n", low=1), None
        elif kind == "continuous":
            actions = None
            action_shape = tuple(require_int(v, "env.action.shape", low=1)
                                 for v in require(action, "shape", list, where="env.action"))
        else:
            raise BridgeError(BAD_FIELD, f"env.action.type must be 'discrete' or 'continuous', got {kind!r}")
        agents = require(env, "agents", list, where="env")
        return cls(require(env, "id", str, where="env"), tuple(shape),
                   require(observation, "dtype", str, where="env.observation"), actions, action_shape,
                   bool(env.get("action_mask", False)), tuple(agents),
                   float(require(env, "tick_rate", (int, float), where="env", default=0.0)))


# -- encoding ---------------------------------------------------------------------------------------------


def encode(message: Mapping[str, Any]) -> bytes:
    return msgpack.packb(message, use_bin_type=True)


def decode(frame: bytes, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, expect: tuple[str, ...] = ENGINE_MESSAGES
           ) -> dict[str, Any]:
    """One message from one frame, or a `BridgeError` naming what is wrong with it."""
    if len(frame) > max_bytes:
        raise BridgeError(TOO_LARGE, f"message of {len(frame)} bytes is over the {max_bytes}-byte limit")
    try:
        message = msgpack.unpackb(frame, raw=False, strict_map_key=True, use_list=True)
    except Exception as error:  # msgpack raises several types for bad input
        raise BridgeError(MALFORMED, f"not a msgpack message ({type(error).__name__}: {error})") from None
    if not isinstance(message, dict):
        raise BridgeError(MALFORMED, f"a message is a msgpack map, got {type(message).__name__}")
    if _deeper_than(message, MAX_DEPTH):
        raise BridgeError(MALFORMED, f"the message nests arrays or maps more than {MAX_DEPTH} levels deep")
    kind = message.get("type")
    seq = message.get("seq")
    readable = seq if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0 else None
    if kind not in expect:
        raise BridgeError(UNKNOWN_TYPE, f"unknown message type {kind!r}; expected one of {list(expect)}", readable)
    require_int(seq, "seq", low=0)
    return message


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether arrays and maps nest deeper than `limit` (walked without recursion: depth is the attack)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, tuple, dict)):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False


def require(message: Mapping, key: str, kinds: type | tuple[type, ...], where: str = "message",
            default: Any = ...) -> Any:
    """`message[key]` if it has one of `kinds`, else a BAD_FIELD error (bool is not accepted as a number)."""
    if key not in message or message[key] is None:
        if default is not ...:
            return default
        raise BridgeError(BAD_FIELD, f"{where} has no {key!r}")
    value = message[key]
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        raise BridgeError(BAD_FIELD, f"{where}.{key} must be {_names(kinds)}, got a boolean")
    if not isinstance(value, kinds):
        raise BridgeError(BAD_FIELD, f"{where}.{key} must be {_names(kinds)}, got {type(value).__name__}")
    return value


def check_endpoint(endpoint: str, flag: str) -> None:
    """A ZeroMQ endpoint whose TCP port exists (1..65535 or `*`): libzmq would take 99999 as some random port."""
    if not isinstance(endpoint, str) or "://" not in endpoint:
        raise AqlError(f"{flag} {endpoint!r} is not an endpoint like tcp://127.0.0.1:5555 or ipc:///tmp/agent")
    if endpoint.startswith("tcp://"):
        port = _tcp_host_and_port(endpoint)[1]
        if port != "*" and not (port.isdigit() and 1 <= int(port) <= 65535):
            raise AqlError(f"{flag} {endpoint}: the port must be 1..65535 or *, got {port!r}")


def _tcp_host_and_port(endpoint: str) -> tuple[str, str]:
    """tcp://HOST:PORT split at its last colon (an IPv6 host keeps its brackets: tcp://[::1]:5555)."""
    host, _, port = endpoint[len("tcp://"):].rpartition(":")
    return host, port


def is_ipv6(endpoint: str) -> bool:
    """Whether `endpoint` names a bracketed IPv6 host (tcp://[::1]:5555), which a ZeroMQ socket binds or
    connects to only with its IPV6 option on; off for the rest, so `localhost` resolves as it always did."""
    return endpoint.startswith("tcp://") and _tcp_host_and_port(endpoint)[0].startswith("[")


def is_loopback(endpoint: str) -> bool:
    """Whether only this machine can reach `endpoint`: ipc, inproc, or TCP on a loopback address (127.0.0.0/8,
    [::1], localhost). The host is parsed, not prefix-matched, so tcp://[::1]:5555 is loopback and an interface
    name or wildcard (tcp://eth0:5555, tcp://*:5555) is not."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    if not endpoint.startswith("tcp://"):
        return False
    host = _tcp_host_and_port(endpoint)[0]
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # an interface name, a wildcard or a hostname: may be reachable from elsewhere
        return False


def require_int(value: Any, name: str, low: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or (low is not None and value < low):
        raise BridgeError(BAD_FIELD, f"{name} must be an integer{f' >= {low}' if low is not None else ''}, "
                                     f"got {value!r}")
    return value


def _names(kinds: type | tuple[type, ...]) -> str:
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    words = {int: "an integer", float: "a number", str: "a string", bytes: "bytes", bool: "a boolean",
             list: "a list", Mapping: "a map", dict: "a map"}
    return " or ".join(words.get(k, k.__name__) for k in kinds)


@functools.cache
def wire_dtype(dtype: str) -> np.dtype:
    """The little-endian numpy dtype of a protocol dtype name (built once per name: every step uses it)."""
    return np.dtype(dtype).newbyteorder("<")


def array_from_wire(data: Any, dtype: str, shape: tuple[int, ...], name: str) -> np.ndarray:
    """A raw little-endian byte string as an array of the declared dtype and shape."""
    if not isinstance(data, bytes):
        raise BridgeError(BAD_FIELD, f"{name} must be raw bytes (msgpack bin), got {type(data).__name__}")
    wire = wire_dtype(dtype)
    if len(data) != math.prod(shape) * wire.itemsize:
        raise BridgeError(SHAPE, f"{name} has {len(data)} bytes; the handshake declared {dtype} {list(shape)}, "
                                 f"which is {math.prod(shape) * wire.itemsize} bytes")
    return np.frombuffer(data, dtype=wire).reshape(shape)


def array_to_wire(array: np.ndarray, dtype: str) -> bytes:
    return np.ascontiguousarray(array, dtype=wire_dtype(dtype)).tobytes()


def error(seq: int, code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "seq": seq, "code": code, "message": message}
