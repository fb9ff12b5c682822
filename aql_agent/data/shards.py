"""Sharded datasets: a folder of .npz shards and a manifest, what `aql convert --workers` writes.

    DST/manifest.json      {"format": "aql-shards", "version": 1, "rows": N, "shards": [{"file", "rows",
                           "sources"}, ...], "keys": {key: [dtype, trailing shape]}}
    DST/shard-00000.npz    D4RL keys, the rows of some consecutive logs (each shard a plain .npz dataset)

The shards in manifest order, concatenated, are exactly the dataset the serial converter makes from the same
logs. `ShardedDataset` reads the manifest alone; `shard(i)` and `iter_shards()` load one shard at a time, so a
consumer can stream a dataset larger than memory; `load()` (what `load_dataset` does) joins them all.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from typing import Any

from aql_agent.data.dataset import TransitionDataset
from aql_agent.errors import DatasetError

MANIFEST = "manifest.json"
FORMAT = "aql-shards"


def is_sharded(path: str | os.PathLike) -> bool:
    return os.path.isfile(os.path.join(path, MANIFEST))


def write_manifest(folder: str, shards: Sequence[dict[str, Any]], keys: dict[str, Any]) -> None:
    """`shards`: {"file", "rows", "sources"} per shard, in order; written last, so a folder with a manifest is
    complete."""
    manifest = {"format": FORMAT, "version": 1, "rows": sum(s["rows"] for s in shards), "shards": list(shards),
                "keys": keys}
    staging = os.path.join(folder, MANIFEST + ".tmp")
    with open(staging, "w") as f:
        json.dump(manifest, f, indent=1)
    os.replace(staging, os.path.join(folder, MANIFEST))


def array_keys(path: str) -> dict[str, Any]:
    """{key: [dtype, trailing shape]} of an .npz shard (its metadata entry aside)."""
    import numpy as np

    with np.load(path, allow_pickle=False) as arrays:
        return {key: [str(arrays[key].dtype), list(arrays[key].shape[1:])] for key in arrays.files
                if key != "aql_metadata"}


class ShardedDataset:
    """A sharded dataset folder, read shard by shard."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = os.fspath(folder)
        try:
            with open(os.path.join(self.folder, MANIFEST)) as f:
                manifest = json.load(f)
            shards = manifest["shards"]
            ok = manifest.get("format") == FORMAT and all(isinstance(s["file"], str) and isinstance(s["rows"], int)
                                                          for s in shards)
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as error:
            raise DatasetError(f"{self.folder}/{MANIFEST} is unreadable ({error}); convert the logs again") from None
        if not ok or not shards:
            raise DatasetError(f"{self.folder}/{MANIFEST} is not a shard manifest (or lists no shards)")
        for shard in shards:
            if os.path.basename(shard["file"]) != shard["file"]:
                raise DatasetError(f"{self.folder}/{MANIFEST} names {shard['file']!r}: shards live in the folder")
        self.manifest = manifest
        self.shards: list[dict[str, Any]] = shards

    def __len__(self) -> int:
        return int(self.manifest["rows"])

    def shard(self, index: int) -> TransitionDataset:
        from aql_agent.data.formats import load_npz

        entry = self.shards[index]
        dataset = load_npz(os.path.join(self.folder, entry["file"]))
        if len(dataset) != entry["rows"]:
            raise DatasetError(f"{self.folder}/{entry['file']} holds {len(dataset)} rows, the manifest says "
                               f"{entry['rows']}: the folder was changed; convert the logs again")
        return dataset

    def iter_shards(self) -> Iterator[TransitionDataset]:
        for index in range(len(self.shards)):
            yield self.shard(index)

    def load(self) -> TransitionDataset:
        parts = list(self.iter_shards())
        return parts[0] if len(parts) == 1 else TransitionDataset.concatenate(parts)
