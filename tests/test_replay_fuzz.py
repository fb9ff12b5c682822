"""Fuzz the reader with cuts and byte flips: a damaged log may only ever raise `ReplayLogError`."""

import os
import tempfile
import warnings

import pytest
from conftest import write_moba_log, write_single_agent_log
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aql_agent.errors import ReplayLogError
from aql_agent.replay import ReplayReader

_BASES: dict[str, bytes] = {}


def _base(kind: str) -> bytes:
    if kind not in _BASES:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "base.aqlog")
            if kind.startswith("moba"):
                write_moba_log(path, compression=kind.split("-")[1])
            else:
                write_single_agent_log(path, episodes=4, compression=kind.split("-")[1], info=True)
            _BASES[kind] = open(path, "rb").read()
    return _BASES[kind]


def _read_everything(path: str, recover: bool) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            reader = ReplayReader(path, recover=recover)
            list(reader.steps())
            list(reader.episodes())
            reader.columns()
        except ReplayLogError:
            pass


damage = st.tuples(
    st.sampled_from(["single-none", "single-zstd", "moba-none", "moba-zstd"]),
    st.floats(0.0, 1.0),  # where to cut, as a fraction of the length (1.0: no cut)
    st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(1, 255)), max_size=3),  # byte flips: where, xor mask
    st.booleans(),
)


@given(damage)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_cut_and_flipped_logs_raise_only_replay_log_errors(tmp_path, case):
    kind, cut_at, flips, recover = case
    data = bytearray(_base(kind))
    for where, mask in flips:
        data[min(int(where * len(data)), len(data) - 1)] ^= mask
    data = data[: int(cut_at * len(data))] if cut_at < 1.0 else data
    path = str(tmp_path / "fuzzed.aqlog")
    with open(path, "wb") as f:
        f.write(bytes(data))
    _read_everything(path, recover)


@given(st.binary(max_size=400))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_arbitrary_bytes_after_the_magic_raise_only_replay_log_errors(tmp_path, payload):
    from aql_agent.replay.format import FILE_MAGIC

    path = str(tmp_path / "random.aqlog")
    with open(path, "wb") as f:
        f.write(FILE_MAGIC + payload)
    _read_everything(path, recover=False)


@pytest.mark.parametrize("kind", ["single-none", "moba-zstd"])
def test_every_single_byte_flip_is_detected(tmp_path, kind):
    """CRC-32 catches every change confined to one byte: no flip may pass unnoticed."""
    data = _base(kind)
    path = str(tmp_path / "flip.aqlog")
    for position in range(0, len(data), 7):
        flipped = bytearray(data)
        flipped[position] ^= 0x01
        with open(path, "wb") as f:
            f.write(bytes(flipped))
        with pytest.raises(ReplayLogError), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reader = ReplayReader(path)
            list(reader.steps())
