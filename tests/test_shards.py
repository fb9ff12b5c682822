"""Sharded datasets streamed through training (`aql train --resident-shards K`): only K shards in memory, every
row still drawn, training learns and resumes bit-exactly. Shards are written here directly (no Ray)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from aql_agent.checkpoint import Preprocessing, load_learner
from aql_agent.cli import main
from aql_agent.data import TransitionDataset, load_dataset
from aql_agent.data.formats import save_npz
from aql_agent.data.shards import ShardedDataset, array_keys, write_manifest
from aql_agent.training import ShardSampler, TrainSettings, train


def write_shards(dataset: TransitionDataset, folder: str, count: int) -> str:
    """`dataset` cut into `count` consecutive shards, as `aql convert --workers` lays them out."""
    os.makedirs(folder)
    entries = []
    for index, rows in enumerate(np.array_split(np.arange(len(dataset)), count)):
        name = f"shard-{index:05d}.npz"
        save_npz(_rows(dataset, rows), os.path.join(folder, name))
        entries.append({"file": name, "rows": len(rows), "sources": []})
    write_manifest(folder, entries, array_keys(os.path.join(folder, entries[0]["file"])))
    return folder


def _rows(dataset: TransitionDataset, rows: np.ndarray) -> TransitionDataset:
    import dataclasses

    def cut(value):
        if isinstance(value, np.ndarray) and len(value) == len(dataset):
            return value[rows]
        if isinstance(value, dict):
            return {key: cut(item) for key, item in value.items()}
        return value

    return dataclasses.replace(dataset, **{field.name: cut(getattr(dataset, field.name))
                                           for field in dataclasses.fields(dataset)})


def test_the_stream_holds_only_resident_shards_and_draws_every_row(tmp_path):
    n = 300
    ids = np.arange(n, dtype=np.float32)[:, None]
    dataset = TransitionDataset(ids, np.zeros((n, 1), np.float32), np.zeros(n, np.float32), ids,
                                np.zeros(n, bool), np.zeros(n, bool))
    shards = ShardedDataset(write_shards(dataset, str(tmp_path / "shards"), 6))  # 50 rows each
    identity = Preprocessing((0.0,), (1.0,), (-1.0,), (1.0,))
    sampler = ShardSampler(shards, lambda d: d, identity, seed=0, device="cpu", discrete=False, resident=2,
                           batch_size=10)
    assert sampler.refresh_every == 5
    drawn, resident_sets = set(), set()
    for _ in range(400):
        batch = sampler.sample(10)
        rows = batch.observations[:, 0].long().tolist()
        assert len(sampler.table) <= 100  # two shards of 50
        allowed = {row for index in sampler.resident for row in range(50 * index, 50 * index + 50)}
        assert set(rows) <= allowed
        drawn.update(rows)
        resident_sets.add(tuple(sampler.resident))
    assert drawn == set(range(n)) and len(resident_sets) > 6  # every row, through many shard pairs


def learnable_data(path: str, n: int = 2000) -> str:
    """Actions a fixed function of the observations (BC can fit them), observations off-centre (the moments
    matter)."""
    rng = np.random.default_rng(0)
    observations = (rng.normal(size=(n, 3)) * [1.0, 2.0, 0.5] + [3.0, -1.0, 0.0]).astype(np.float32)
    actions = np.tanh((observations - [3.0, -1.0, 0.0]) @ np.array([[0.8, -0.4], [0.2, 0.5], [-0.6, 0.3]]))
    np.savez(path, observations=observations, actions=actions.astype(np.float32), rewards=np.zeros(n, np.float32),
             next_observations=observations, terminals=np.zeros(n, bool), timeouts=np.zeros(n, bool))
    return path


def test_training_streams_shards_learns_and_resumes_exactly(pendulum_data, tmp_path, capsys):
    data = learnable_data(str(tmp_path / "data.npz"))
    shards = write_shards(load_dataset(data), str(tmp_path / "shards"), 4)
    common = dict(algo="bc", seed=2, log_every=20, checkpoint_every=60, progress=False, tensorboard=False,
                  normalize_observations=True, learner={"hidden": [32, 32], "batch_size": 32})
    streamed = dict(common, data=shards, resident_shards=1)
    straight = train(TrainSettings(out=str(tmp_path / "straight"), steps=120, **streamed))
    whole = train(TrainSettings(out=str(tmp_path / "whole"), data=data, steps=120, **common))
    rows = (tmp_path / "straight" / "metrics.csv").read_text().splitlines()[1:]
    first, last = float(rows[0].split(",")[1]), straight["metrics"]["actor_loss"]
    assert last < 0.5 * first and last < 1.5 * whole["metrics"]["actor_loss"]  # learns as from the whole table
    train(TrainSettings(out=str(tmp_path / "resumed"), steps=60, **streamed))
    resumed = train(TrainSettings(out=str(tmp_path / "resumed"), steps=120, resume=True, **streamed))
    assert resumed["start_step"] == 60
    assert (tmp_path / "resumed" / "metrics.csv").read_text() == (tmp_path / "straight" / "metrics.csv").read_text()
    a, info, _ = load_learner(straight["checkpoint"])
    b, _, _ = load_learner(resumed["checkpoint"])
    for key, value in a.state_dict()["nets"].items():
        assert torch.equal(value, b.state_dict()["nets"][key]), key
    observations = load_dataset(data).observations  # the moments are the whole dataset's, read shard by shard
    np.testing.assert_allclose(info["preprocessing"]["obs_mean"], observations.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(info["preprocessing"]["obs_std"], observations.std(0) + 1e-3, rtol=1e-4)

    assert main(["train", "--algo", "bc", "--data", pendulum_data, "--out", str(tmp_path / "npz"),
                 "--resident-shards", "2", "--steps", "5"]) == 2
    assert "--resident-shards streams a sharded dataset folder" in capsys.readouterr().err
    with pytest.raises(Exception, match="resume the way it started"):
        train(TrainSettings(out=str(tmp_path / "resumed"), steps=180, resume=True, data=shards, **common))
