"""Gymnasium spaces <-> replay-log space specs, and the byte codecs for values of a space.

A space spec is a plain map (msgpack and JSON friendly) so that an engine in any language can write one.
Every leaf value travels as its raw little-endian, C-order bytes; the spec carries the dtype and shape once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
from gymnasium import spaces

from aql_agent.errors import SpaceError

#: dtypes a replay log may carry, by their numpy names.
SUPPORTED_DTYPES = (
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64",
)

Value = Union[np.ndarray, dict[str, "Value"]]


def parse_dtype(name: Any, where: str = "space") -> np.dtype:
    """The little-endian numpy dtype for a dtype name in a spec; a clear error for anything else."""
    if not isinstance(name, str) or name not in SUPPORTED_DTYPES:
        raise SpaceError(f"{where}: unknown dtype {name!r}; supported dtypes are {', '.join(SUPPORTED_DTYPES)}")
    return np.dtype(name).newbyteorder("<")


def _dtype_name(dtype: np.dtype, where: str) -> str:
    name = np.dtype(dtype).name
    if name not in SUPPORTED_DTYPES:
        raise SpaceError(f"{where}: dtype {name} cannot be stored; use one of {', '.join(SUPPORTED_DTYPES)}")
    return name


def space_to_spec(space: spaces.Space, where: str = "space") -> dict[str, Any]:
    """Describe a gymnasium space as a replay-log space spec (see docs/replay-log.md)."""
    if isinstance(space, spaces.Box):
        return {
            "type": "box", "dtype": _dtype_name(space.dtype, where), "shape": list(space.shape),
            "low": space.low.ravel().tolist(), "high": space.high.ravel().tolist(),
        }
    if isinstance(space, spaces.Discrete):
        return {"type": "discrete", "dtype": _dtype_name(space.dtype, where), "n": int(space.n),
                "start": int(space.start)}
    if isinstance(space, spaces.MultiDiscrete):
        return {"type": "multi_discrete", "dtype": _dtype_name(space.dtype, where), "shape": list(space.shape),
                "nvec": space.nvec.ravel().tolist(), "start": space.start.ravel().tolist()}
    if isinstance(space, spaces.MultiBinary):
        return {"type": "multi_binary", "dtype": "int8", "shape": list(space.shape)}
    if isinstance(space, spaces.Dict):
        keys = list(space.spaces)
        for key in keys:
            if not isinstance(key, str) or "/" in key:
                raise SpaceError(f"{where}: Dict space keys must be strings without '/', got {key!r}")
        return {"type": "dict", "keys": keys,
                "spaces": {key: space_to_spec(space[key], f"{where}[{key!r}]") for key in keys}}
    raise SpaceError(
        f"{where}: {type(space).__name__} spaces cannot be stored in a replay log; supported are Box, Discrete, "
        "MultiDiscrete, MultiBinary and Dict of those (flatten others with gymnasium.wrappers.FlattenObservation)"
    )


def _discrete(n: int, start: int, dtype: np.dtype, where: str) -> spaces.Discrete:
    """Discrete(n, start, dtype). gymnasium 1.0 (which d3rlpy 2.8 pins) has no dtype argument and is always
    int64: there the int64 space is built without it, and any other dtype is one clear error."""
    try:
        return spaces.Discrete(n, start=start, dtype=dtype)
    except TypeError:
        if dtype != np.int64:
            raise SpaceError(f"{where}: a Discrete space of dtype {dtype.name} needs gymnasium >= 1.1 "
                             "(this one only has int64); upgrade gymnasium") from None
        return spaces.Discrete(n, start=start)


def describe_space(space: spaces.Space) -> str:
    """A one-line description for people: kind, shape, dtype and the range of the bounds."""
    if isinstance(space, spaces.Box):
        low, high = float(np.min(space.low)), float(np.max(space.high))
        return f"Box{space.shape} {space.dtype} in [{low:.4g}, {high:.4g}]"
    if isinstance(space, spaces.Discrete):
        return f"Discrete({space.n})" + (f" from {space.start}" if space.start else "")
    if isinstance(space, spaces.MultiDiscrete):
        return f"MultiDiscrete({space.nvec.tolist()})"
    if isinstance(space, spaces.MultiBinary):
        return f"MultiBinary{space.shape}"
    if isinstance(space, spaces.Dict):
        return "Dict(" + ", ".join(f"{k}: {describe_space(v)}" for k, v in space.spaces.items()) + ")"
    return repr(space)


def _shape(spec: Mapping, where: str) -> tuple[int, ...]:
    shape = spec.get("shape")
    if not isinstance(shape, (list, tuple)) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise SpaceError(f"{where}: 'shape' must be a list of non-negative integers, got {shape!r}")
    return tuple(shape)


def _bounds(spec: Mapping, key: str, shape: tuple[int, ...], where: str) -> np.ndarray:
    values = spec.get(key)
    size = int(np.prod(shape))
    if isinstance(values, (int, float)):  # bools too: a bool Box's bounds
        bounds = np.full(shape, values, dtype=np.float64)
    elif (isinstance(values, (list, tuple)) and len(values) == size
          and all(isinstance(v, (int, float)) for v in values)):
        bounds = np.asarray(values, dtype=np.float64).reshape(shape)
    else:
        raise SpaceError(f"{where}: '{key}' must be a number or a flat list of {size} numbers")
    if np.isnan(bounds).any():
        raise SpaceError(f"{where}: '{key}' holds NaN; a bound is a number or +/-inf")
    return bounds


def space_from_spec(spec: Any, where: str = "space") -> spaces.Space:
    """Rebuild the gymnasium space a spec describes; `SpaceError` names the field that is wrong."""
    if not isinstance(spec, Mapping):
        raise SpaceError(f"{where}: a space spec must be a map, got {type(spec).__name__}")
    kind = spec.get("type")
    try:
        if kind == "box":
            dtype = parse_dtype(spec.get("dtype"), where)
            shape = _shape(spec, where)
            low, high = _bounds(spec, "low", shape, where), _bounds(spec, "high", shape, where)
            return spaces.Box(low=low.astype(dtype), high=high.astype(dtype), shape=shape,
                              dtype=dtype.newbyteorder("="))
        if kind == "discrete":
            dtype = parse_dtype(spec.get("dtype", "int64"), where)
            return _discrete(int(spec["n"]), int(spec.get("start", 0)), dtype.newbyteorder("="), where)
        if kind == "multi_discrete":
            dtype = parse_dtype(spec.get("dtype", "int64"), where)
            shape = _shape(spec, where)
            nvec = np.asarray(spec["nvec"], dtype=np.int64).reshape(shape)
            start = np.asarray(spec.get("start", [0] * nvec.size), dtype=np.int64).reshape(shape)
            return spaces.MultiDiscrete(nvec, dtype=dtype.newbyteorder("="), start=start)
        if kind == "multi_binary":
            shape = _shape(spec, where)
            return spaces.MultiBinary(shape[0] if len(shape) == 1 else list(shape))
        if kind == "dict":
            keys, subspecs = spec.get("keys"), spec.get("spaces")
            if not isinstance(keys, list) or not isinstance(subspecs, Mapping) or set(keys) != set(subspecs):
                raise SpaceError(f"{where}: a dict space needs 'keys' (a list) and 'spaces' (a map with those keys)")
            # pairs, not a dict: gymnasium sorts a dict's keys, and values are encoded in the header's order
            return spaces.Dict([(key, space_from_spec(subspecs[key], f"{where}[{key!r}]")) for key in keys])
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, SpaceError):
            raise
        raise SpaceError(f"{where}: malformed {kind} space spec ({exc})") from None
    raise SpaceError(f"{where}: unknown space type {kind!r}; known: box, discrete, multi_discrete, multi_binary, dict")


def _value_dtype_and_shape(space: spaces.Space) -> tuple[np.dtype, tuple[int, ...]]:
    if isinstance(space, spaces.MultiBinary):
        return np.dtype("<i1"), tuple(space.shape)
    return np.dtype(np.dtype(space.dtype).newbyteorder("<").str), tuple(space.shape)


def _bin_header(nbytes: int) -> bytes:
    if nbytes < 1 << 8:
        return bytes((0xC4, nbytes))
    if nbytes < 1 << 16:
        return b"\xc5" + nbytes.to_bytes(2, "big")
    return b"\xc6" + nbytes.to_bytes(4, "big")


def array_header(count: int) -> bytes:
    """The msgpack array header for `count` elements, as a packer writes it."""
    if count < 16:
        return bytes((0x90 | count,))
    if count < 1 << 16:
        return b"\xdc" + count.to_bytes(2, "big")
    return b"\xdd" + count.to_bytes(4, "big")


@dataclass(frozen=True)
class Leaf:
    """One array-valued part of a space: its key path inside a Dict ('' for a plain space)."""

    key: str
    dtype: np.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


class SpaceCodec:
    """Encodes values of one space to their wire form (bytes, or a list for Dict spaces) and back.

    `layout()` gives the exact msgpack bytes of an encoded value as fixed structure and data slots, which lets
    the reader view a run of step records as one numpy array instead of unpacking them one by one.
    """

    def __init__(self, space: spaces.Space, where: str = "value"):
        space_to_spec(space, where)  # rejects what the format cannot hold
        self.space = space
        self.where = where
        self.children: dict[str, SpaceCodec] | None = None
        if isinstance(space, spaces.Dict):
            self.children = {key: SpaceCodec(sub, f"{where}[{key!r}]") for key, sub in space.spaces.items()}
            self.leaves = [Leaf(f"{key}/{leaf.key}".rstrip("/"), leaf.dtype, leaf.shape)
                           for key, child in self.children.items() for leaf in child.leaves]
        else:
            dtype, shape = _value_dtype_and_shape(space)
            self.leaves = [Leaf("", dtype, shape)]
            self._dtype, self._shape, self._nbytes = dtype, shape, self.leaves[0].nbytes

    def inline_check(self) -> tuple[tuple[int, ...] | None, np.dtype | None]:
        """(shape, dtype) an ndarray must have to be sent as `value.tobytes()` unchanged; (None, None) for dicts."""
        if self.children is not None:
            return None, None
        return self._shape, self._dtype

    def encode(self, value: Any) -> bytes | list:
        """The wire form of `value`; `SpaceError` if its shape or dtype kind does not fit the space."""
        if self.children is None:
            if type(value) is np.ndarray and value.dtype == self._dtype and value.shape == self._shape:
                return value.tobytes()
            array = np.asarray(value)
            if array.shape != self._shape:
                raise SpaceError(f"{self.where}: expected shape {self._shape}, got {array.shape}")
            if not np.can_cast(array.dtype, self._dtype, casting="same_kind"):
                raise SpaceError(f"{self.where}: expected dtype {self._dtype.name}, got {array.dtype.name}")
            return array.astype(self._dtype, copy=False).tobytes()
        if not isinstance(value, Mapping):
            raise SpaceError(f"{self.where}: expected a dict with keys {list(self.children)}, "
                             f"got {type(value).__name__}")
        if value.keys() != self.children.keys():
            raise SpaceError(f"{self.where}: expected keys {sorted(self.children)}, got {sorted(map(str, value))}")
        return [child.encode(value[key]) for key, child in self.children.items()]

    def _leaf_bytes(self, wire: Any) -> bytes:
        """`wire` if it is this leaf's exact byte string; `SpaceError` otherwise."""
        if type(wire) is not bytes or len(wire) != self._nbytes:
            size = len(wire) if isinstance(wire, bytes) else type(wire).__name__
            raise SpaceError(f"{self.where}: expected {self._nbytes} bytes, got {size}")
        return wire

    def decode(self, wire: Any) -> Value:
        """The array (or dict of arrays) for a wire value; `SpaceError` when the bytes do not fit."""
        if self.children is None:
            return np.frombuffer(self._leaf_bytes(wire), self._dtype).reshape(self._shape)
        return assemble_leaves(self.leaves, {leaf.key: np.frombuffer(part, leaf.dtype).reshape(leaf.shape)
                                             for leaf, part in zip(self.leaves, self.split_leaves(wire))})

    def split_leaves(self, wire: Any) -> list[bytes]:
        """The leaf byte strings of a wire value, in `leaves` order; `SpaceError` when they do not fit."""
        if self.children is None:
            return [self._leaf_bytes(wire)]
        if not isinstance(wire, (list, tuple)) or len(wire) != len(self.children):
            raise SpaceError(f"{self.where}: expected a list of {len(self.children)} values")
        return [leaf for child, part in zip(self.children.values(), wire) for leaf in child.split_leaves(part)]

    def layout(self) -> list[bytes | Leaf]:
        """The canonical msgpack encoding as structure bytes and `Leaf` data slots."""
        if self.children is None:
            return [_bin_header(self._nbytes), self.leaves[0]]
        parts: list[bytes | Leaf] = [array_header(len(self.children))]
        for key, child in self.children.items():
            parts += [Leaf(f"{key}/{p.key}".rstrip("/"), p.dtype, p.shape) if isinstance(p, Leaf) else p
                      for p in child.layout()]
        return parts


def assemble_leaves(leaves: list[Leaf], columns: dict[str, np.ndarray]) -> np.ndarray | dict:
    """Nest flat leaf columns ('a/b' keys) back into the dict shape of the space ('' is a plain space)."""
    if len(leaves) == 1 and leaves[0].key == "":
        return columns[""]
    nested: dict[str, Any] = {}
    for leaf in leaves:
        *parents, last = leaf.key.split("/")
        node = nested
        for parent in parents:
            node = node.setdefault(parent, {})
        node[last] = columns[leaf.key]
    return nested


def value_violation(space: spaces.Space, values: Any) -> str | None:
    """Why `values` (one value of `space`, or a stack of them along a leading axis) break what the space
    allows, or None: a bool byte other than 0/1, a Discrete or MultiDiscrete value out of range, a
    MultiBinary value other than 0/1. Box bounds are not checked (environments step outside them)."""
    if isinstance(space, spaces.Dict):
        for key, sub in space.spaces.items():
            problem = value_violation(sub, values[key])
            if problem:
                return f"[{key!r}] {problem}"
        return None
    array = np.asarray(values)
    if array.size == 0:
        return None
    if array.dtype == bool and array.view(np.uint8).max() > 1:
        return "holds a bool byte other than 0 or 1"
    if isinstance(space, spaces.Discrete):
        low, high = int(space.start), int(space.start) + int(space.n) - 1
        if array.min() < low or array.max() > high:
            return f"holds {array.min() if array.min() < low else array.max()}, outside Discrete's {low}..{high}"
    elif isinstance(space, spaces.MultiDiscrete):
        low = np.asarray(space.start).reshape(space.shape)
        high = low + np.asarray(space.nvec).reshape(space.shape) - 1
        if (array < low).any() or (array > high).any():
            return f"holds values outside MultiDiscrete's {low.tolist()}..{high.tolist()}"
    elif isinstance(space, spaces.MultiBinary) and ((array != 0) & (array != 1)).any():
        return "holds a MultiBinary value other than 0 or 1"
    return None
