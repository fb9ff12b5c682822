import msgpack
import numpy as np
import pytest
from gymnasium import spaces
from hypothesis import given, settings
from hypothesis import strategies as st

from aql_agent.errors import SpaceError
from aql_agent.spaces import Leaf, SpaceCodec, space_from_spec, space_to_spec

SPACES = [
    spaces.Box(-1.0, 2.0, (3, 2), np.float32),
    spaces.Box(0, 255, (4,), np.uint8),
    spaces.Discrete(7, start=-2),
    spaces.MultiDiscrete([12, 16, 16, 8]),
    spaces.MultiBinary(5),
    spaces.Dict({"observation": spaces.Box(-np.inf, np.inf, (9,), np.float64), "action_mask": spaces.MultiBinary(4),
                 "nested": spaces.Dict({"hp": spaces.Box(0, 1, (), np.float32)})}),
]


@pytest.mark.parametrize("space", SPACES, ids=lambda s: type(s).__name__)
def test_spec_round_trip_rebuilds_an_equal_space(space):
    rebuilt = space_from_spec(msgpack.unpackb(msgpack.packb(space_to_spec(space))))
    assert rebuilt == space


@pytest.mark.parametrize("space", SPACES, ids=lambda s: type(s).__name__)
def test_codec_round_trips_samples_and_layout_matches_msgpack(space):
    """The fast reader trusts `layout()`: it must be byte for byte what msgpack packs."""
    space.seed(0)
    codec = SpaceCodec(space)
    for _ in range(5):
        value = space.sample()
        wire = codec.encode(value)
        decoded = codec.decode(msgpack.unpackb(msgpack.packb(wire)))
        flat_decoded = [np.asarray(x) for x in _leaves(decoded)]
        for a, b in zip(flat_decoded, _leaves(value)):
            np.testing.assert_array_equal(a, b)
        data = iter(codec.split_leaves(wire))
        rebuilt = b"".join(next(data) if isinstance(part, Leaf) else part for part in codec.layout())
        assert rebuilt == msgpack.packb(wire)


def _leaves(value):
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    return [value]


@given(st.lists(st.integers(1, 40), min_size=0, max_size=3), st.sampled_from(["float32", "int16", "uint8", "bool"]))
@settings(max_examples=40, deadline=None)
def test_layout_matches_msgpack_for_any_box(shape, dtype):
    low, high = (0, 1) if dtype == "bool" else (0, 10)
    space = spaces.Box(low, high, tuple(shape), np.dtype(dtype))
    codec = SpaceCodec(space)
    wire = codec.encode(space.sample())
    rebuilt = b"".join(wire if isinstance(part, Leaf) else part for part in codec.layout())
    assert rebuilt == msgpack.packb(wire)


def test_encode_accepts_safe_casts_and_rejects_wrong_shapes_and_kinds():
    codec = SpaceCodec(spaces.Box(-1, 1, (3,), np.float32), "observation")
    assert codec.encode(np.zeros(3, np.float64)) == np.zeros(3, np.float32).tobytes()
    assert codec.encode([0.5, 0.5, 0.5]) == np.full(3, 0.5, np.float32).tobytes()
    with pytest.raises(SpaceError, match=r"observation: expected shape \(3,\), got \(4,\)"):
        codec.encode(np.zeros(4, np.float32))
    discrete = SpaceCodec(spaces.Discrete(4), "action")
    assert np.frombuffer(discrete.encode(3), np.int64)[0] == 3
    with pytest.raises(SpaceError, match="expected dtype int64, got float64"):
        discrete.encode(2.5)


def test_dict_codec_names_missing_and_extra_keys():
    codec = SpaceCodec(spaces.Dict({"a": spaces.Discrete(2), "b": spaces.Discrete(2)}), "obs")
    with pytest.raises(SpaceError, match="expected keys"):
        codec.encode({"a": 1})
    with pytest.raises(SpaceError, match="expected keys"):
        codec.encode({"a": 1, "b": 0, "c": 1})


def test_unsupported_spaces_and_dtypes_say_what_is_supported():
    with pytest.raises(SpaceError, match="Tuple spaces cannot be stored"):
        space_to_spec(spaces.Tuple([spaces.Discrete(2)]))
    with pytest.raises(SpaceError, match="unknown dtype 'complex64'"):
        space_from_spec({"type": "box", "dtype": "complex64", "shape": [1], "low": [0], "high": [1]})
    with pytest.raises(SpaceError, match="unknown space type 'graph'"):
        space_from_spec({"type": "graph"})
    with pytest.raises(SpaceError, match="'low' must be"):
        space_from_spec({"type": "box", "dtype": "float32", "shape": [2], "low": [0], "high": [1, 1]})
