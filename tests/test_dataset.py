import json
import os

import numpy as np
import pytest
from conftest import write_moba_log, write_single_agent_log

from aql_agent.data import TransitionDataset, convert, load_dataset, load_minari, save_dataset
from aql_agent.errors import DatasetError, MissingFileError, ReplayLogWarning
from aql_agent.replay import ReplayWriter


def test_next_observation_at_an_episode_end_is_the_final_observation_not_the_next_start(single_log):
    ds = TransitionDataset.from_log(single_log.path)
    recorded = single_log.steps["agent"]
    assert len(ds) == len(recorded)
    start = 0
    for e, length in enumerate(single_log.lengths):
        end = start + length - 1
        np.testing.assert_array_equal(ds.next_observations[end], single_log.finals[(e, "agent")])
        np.testing.assert_array_equal(ds.next_observations[start:end], ds.observations[start + 1:end + 1])
        # episode e ends terminated when e is even, truncated (a timeout) when odd: kept apart, verbatim
        assert bool(ds.terminals[end]) == (e % 2 == 0) and bool(ds.timeouts[end]) == (e % 2 == 1)
        assert not ds.terminals[start:end].any() and not ds.timeouts[start:end].any()
        start = end + 1
    assert [s.stop - s.start for s in ds.episode_slices()] == single_log.lengths
    np.testing.assert_allclose(ds.episode_returns(),
                               [sum(r[3] for r in recorded if r[0] == e) for e in range(len(single_log.lengths))])
    assert ds.metadata["env_id"] == "Toy-v0" and ds.metadata["players"]["agent"]["name"] == "toy"


def test_an_episode_without_a_final_observation_loses_only_its_last_transition_with_a_warning(tmp_path):
    from conftest import ACT_SPACE, OBS_SPACE

    path = str(tmp_path / "nofinal.aqlog")
    with ReplayWriter(path, "Toy-v0", OBS_SPACE, ACT_SPACE) as w:
        for e in range(2):
            w.begin_episode()
            for t in range(4):
                w.add_step(np.full(5, 10 * e + t, np.float32), np.zeros(2, np.float32), 1.0, False, t == 3)
            w.end_episode(np.full(5, 99, np.float32) if e == 0 else None)
    with pytest.warns(ReplayLogWarning, match="1 transition"):
        ds = TransitionDataset.from_log(path)
    assert len(ds) == 7
    assert ds.next_observations[3, 0] == 99 and ds.next_observations[6, 0] == 13


def test_a_cut_log_gives_every_transition_whose_next_observation_is_known(tmp_path):
    rec = write_single_agent_log(str(tmp_path / "full.aqlog"), episodes=3, lengths=[4, 4, 6])
    data = open(rec.path, "rb").read()
    cut = str(tmp_path / "cut.aqlog")
    open(cut, "wb").write(data[: len(data) - 150])  # inside the last episode's chunk
    with pytest.warns(ReplayLogWarning):
        ds = TransitionDataset.from_log(cut)
    full = TransitionDataset.from_log(rec.path)
    assert 8 <= len(ds) < len(full)
    assert ds == full.select(slice(0, len(ds)))


def test_multi_agent_logs_need_a_perspective_and_keep_masks_right_at_episode_ends(moba_log):
    with pytest.raises(DatasetError, match=r"holds agents \['blue', 'red'\]: choose one"):
        TransitionDataset.from_log(moba_log.path)
    red = TransitionDataset.from_log(moba_log.path, agent="red")
    recorded = moba_log.steps["red"]
    np.testing.assert_array_equal(red.action_masks, np.stack([r[1]["action_mask"] for r in recorded]))
    first_end = moba_log.lengths[0] - 1
    np.testing.assert_array_equal(red.next_action_masks[first_end], np.ones(6, np.int8))
    np.testing.assert_array_equal(red.next_action_masks[0], red.action_masks[1])
    both = TransitionDataset.from_log(moba_log.path, agent="all")
    assert len(both) == 2 * len(red)
    with pytest.raises(DatasetError, match="has no agent 'green'"):
        TransitionDataset.from_log(moba_log.path, agent="green")


def _toy_dataset(n=50, masks=False, seed=0) -> TransitionDataset:
    """A consistent dataset: next_observations[i] == observations[i+1] inside episodes."""
    rng = np.random.default_rng(seed)
    obs = rng.standard_normal((n + 1, 3)).astype(np.float32)
    terminals = np.zeros(n, bool)
    timeouts = np.zeros(n, bool)
    terminals[9] = True
    timeouts[24] = True
    next_obs = obs[1:].copy()
    next_obs[9] = rng.standard_normal(3)  # the step after a terminal: a fresh final observation
    mask = rng.integers(0, 2, (n + 1, 4)).astype(np.int8) if masks else None
    return TransitionDataset(
        observations=obs[:-1], actions=rng.uniform(-1, 1, (n, 2)).astype(np.float32),
        rewards=rng.standard_normal(n).astype(np.float32), next_observations=next_obs,
        terminals=terminals, timeouts=timeouts,
        action_masks=None if mask is None else mask[:-1], next_action_masks=None if mask is None else mask[1:],
        infos={"qpos": rng.standard_normal((n, 2)), "level": rng.integers(0, 3, n)},
        metadata={"env_id": "Toy-v0"})


@pytest.mark.parametrize("suffix", [".npz", ".hdf5", ".aqlog"])
@pytest.mark.parametrize("masks", [False, True])
def test_datasets_round_trip_through_every_writable_format(tmp_path, suffix, masks):
    ds = _toy_dataset(masks=masks)
    path = str(tmp_path / f"toy{suffix}")
    save_dataset(ds, path)
    back = load_dataset(path)
    assert back == ds and back.digest() == ds.digest()  # the same data in any format, the same digest
    assert back.rewards.dtype == np.float32 and back.metadata["env_id"] == "Toy-v0"
    with pytest.raises(DatasetError, match="already exists"):
        save_dataset(ds, path)


def test_the_digest_changes_with_any_value_and_not_with_metadata():
    ds = _toy_dataset(masks=True)
    reference = ds.digest()
    assert _toy_dataset(masks=True).digest() == reference
    for change in (lambda d: d.rewards.__setitem__(3, d.rewards[3] + 1e-3),
                   lambda d: d.timeouts.__setitem__(0, not d.timeouts[0]),
                   lambda d: d.next_action_masks.__setitem__((1, 0), 1 - d.next_action_masks[1, 0]),
                   lambda d: d.infos["level"].__setitem__(2, 7)):
        changed = _toy_dataset(masks=True)
        change(changed)
        assert changed.digest() != reference
    relabelled = _toy_dataset(masks=True)
    relabelled.metadata["env_id"] = "Other-v0"
    assert relabelled.digest() == reference


def test_an_unflagged_break_in_observations_is_an_episode_boundary_that_round_trips(tmp_path):
    ds = _toy_dataset()
    ds.next_observations[30] += 1.0  # no flag, but the next row does not continue this one
    ends = np.flatnonzero(ds.episode_ends()).tolist()
    assert ends == [9, 24, 30, 49]
    save_dataset(ds, str(tmp_path / "break.aqlog"))
    assert load_dataset(str(tmp_path / "break.aqlog")) == ds


def test_returns_to_go_are_discounted_within_each_episode_and_samplers_carry_them():
    """Cal-QL's reference value: row i's sum_t gamma^t r_(i+t) up to its episode's end (terminal 9, timeout 24, an
    unflagged break after 30, the data's end), by hand; a sampler asked for them puts them, reward-scaled, in
    every batch beside the row they belong to."""
    import dataclasses

    import torch

    from aql_agent.checkpoint import Preprocessing
    from aql_agent.training import TensorSampler

    ds = _toy_dataset()
    ds.next_observations[30] += 1.0
    ds.rewards[:] = 1.0
    returns = ds.returns_to_go(0.5)
    by_hand = np.concatenate([[sum(0.5 ** t for t in range(end - i + 1)) for i in range(start, end + 1)]
                              for start, end in ((0, 9), (10, 24), (25, 30), (31, 49))])
    np.testing.assert_allclose(returns, by_hand)
    assert returns[9] == returns[24] == returns[30] == returns[49] == 1.0 and returns[0] == pytest.approx(2 - 0.5 ** 9)

    ds.rewards[:] = np.arange(50, dtype=np.float32)  # each row's reward says which row it is
    preprocessing = dataclasses.replace(Preprocessing.identity(3, 2), reward_scale=0.1)
    batch = TensorSampler(ds, preprocessing, seed=0, device="cpu", returns_discount=0.9).sample(64)
    rows = torch.round(batch.rewards / 0.1).long().numpy()
    assert len(set(rows.tolist())) > 20
    np.testing.assert_allclose(batch.returns_to_go.numpy(), 0.1 * ds.returns_to_go(0.9)[rows], rtol=1e-5)
    assert ds.returns_to_go(0.9)[0] == pytest.approx(sum(0.9 ** t * t for t in range(10)))
    assert TensorSampler(ds, preprocessing, seed=0, device="cpu").sample(4).returns_to_go is None


def test_old_d4rl_files_without_next_observations_are_derived_and_cut_steps_dropped(tmp_path):
    ds = _toy_dataset()
    path = str(tmp_path / "old.npz")
    np.savez(path, observations=ds.observations, actions=ds.actions, rewards=ds.rewards,
             terminals=ds.terminals, timeouts=ds.timeouts)
    with pytest.warns(ReplayLogWarning, match="dropped 2 transition"):
        old = load_dataset(path)
    keep = np.ones(len(ds), bool)
    keep[[24, 49]] = False  # the timeout and the unflagged end of file: next observation unknown
    expected = ds.select(keep)
    assert len(old) == len(expected)
    inner = ~(expected.terminals | expected.timeouts)
    np.testing.assert_array_equal(old.observations, expected.observations)
    np.testing.assert_array_equal(old.next_observations[inner], expected.next_observations[inner])
    assert old.terminals.sum() == 1


def test_bad_dataset_files_get_one_clear_error(tmp_path):
    with pytest.raises(MissingFileError, match="dataset not found"):
        load_dataset(str(tmp_path / "missing.npz"))
    np.savez(str(tmp_path / "partial.npz"), observations=np.zeros((3, 2)))
    with pytest.raises(DatasetError, match=r"lacks the D4RL keys \['actions', 'rewards', 'terminals'\]"):
        load_dataset(str(tmp_path / "partial.npz"))
    (tmp_path / "garbage.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(DatasetError, match="not an .npz archive"):
        load_dataset(str(tmp_path / "garbage.npz"))
    with open(tmp_path / "one-array.npz", "wb") as f:  # np.save's .npy under an .npz name: no arrays by key
        np.save(f, np.zeros(3))
    with pytest.raises(DatasetError, match="not an .npz archive"):
        load_dataset(str(tmp_path / "one-array.npz"))
    np.savez(str(tmp_path / "objects.npz"), observations=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DatasetError, match="Object arrays cannot be loaded"):  # never unpickled
        load_dataset(str(tmp_path / "objects.npz"))
    (tmp_path / "garbage.hdf5").write_bytes(b"not hdf5")
    with pytest.raises(DatasetError, match="not a readable HDF5"):
        load_dataset(str(tmp_path / "garbage.hdf5"))
    with pytest.raises(DatasetError, match="cannot tell the format"):
        load_dataset(__file__)
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    with pytest.raises(DatasetError, match="neither a Minari dataset"):
        load_dataset(str(empty_dir))
    with pytest.raises(DatasetError, match="not a Minari dataset directory"):
        load_minari(str(empty_dir))
    with pytest.raises(DatasetError, match="rows"):
        TransitionDataset(observations=np.zeros((3, 2)), actions=np.zeros((2, 1)), rewards=np.zeros(3),
                          next_observations=np.zeros((3, 2)), terminals=np.zeros(3, bool), timeouts=np.zeros(3, bool))


def _write_minari(root: str, episodes: list[dict]) -> None:
    """A Minari dataset written by minari's own storage API (no jax needed)."""
    from gymnasium import spaces
    from minari.data_collector.episode_buffer import EpisodeBuffer
    from minari.dataset.minari_storage import MinariStorage

    import minari

    os.makedirs(root)
    storage = MinariStorage.new(os.path.join(root, "data"),
                                observation_space=spaces.Box(-np.inf, np.inf, (3,), np.float32),
                                action_space=spaces.Box(-1, 1, (2,), np.float32))
    storage.update_episodes([EpisodeBuffer(id=i, observations=e["observations"], actions=e["actions"],
                                           rewards=e["rewards"], terminations=e["terminations"],
                                           truncations=e["truncations"], infos={})
                             for i, e in enumerate(episodes)])
    storage.update_metadata({"dataset_id": "toy/test-v0", "minari_version": minari.__version__})


@pytest.mark.parametrize("use_minari", [True, False], ids=["minari-package", "h5py-fallback"])
def test_minari_datasets_import_with_and_without_the_package(tmp_path, use_minari):
    pytest.importorskip("minari")
    rng = np.random.default_rng(0)
    episodes = []
    for length, terminated in ((5, True), (3, False)):
        episodes.append({"observations": rng.standard_normal((length + 1, 3)).astype(np.float32),
                         "actions": rng.uniform(-1, 1, (length, 2)).astype(np.float32),
                         "rewards": rng.standard_normal(length),
                         "terminations": np.eye(1, length, length - 1, dtype=bool)[0] & terminated,
                         "truncations": np.eye(1, length, length - 1, dtype=bool)[0] & (not terminated)})
    root = str(tmp_path / "toy-test-v0")
    _write_minari(root, episodes)
    ds = load_minari(root, use_minari=use_minari)
    assert len(ds) == 8
    np.testing.assert_array_equal(ds.next_observations[4], episodes[0]["observations"][5])
    np.testing.assert_array_equal(ds.observations[5], episodes[1]["observations"][0])
    assert ds.terminals.tolist() == [False] * 4 + [True] + [False] * 3
    assert ds.timeouts.tolist() == [False] * 7 + [True]
    assert ds.metadata["observation_space"]["type"] == "box" and ds.metadata["minari_dataset_id"] == "toy/test-v0"
    convert(root, str(tmp_path / "toy.npz"))
    assert load_dataset(str(tmp_path / "toy.npz")) == ds


def test_metadata_survives_and_is_json(tmp_path, single_log):
    ds = TransitionDataset.from_log(single_log.path)
    save_dataset(ds, str(tmp_path / "meta.npz"))
    with np.load(str(tmp_path / "meta.npz")) as data:
        meta = json.loads(str(data["aql_metadata"]))
    assert meta["observation_space"]["shape"] == [5] and meta["agent"] == "agent"


def test_a_folder_of_logs_is_one_dataset_and_unfinished_logs_are_named(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    a = write_single_agent_log(str(logs / "a.aqlog"), seed=1)
    b = write_single_agent_log(str(logs / "b.aqlog"), seed=2)
    (logs / "c.aqlog.partial").write_bytes(b"")
    with pytest.warns(ReplayLogWarning, match="skipping unfinished logs"):
        ds = load_dataset(str(logs))
    assert len(ds) == len(a.steps["agent"]) + len(b.steps["agent"])
    assert ds.metadata["source"] == [a.path, b.path]


def test_moba_masks_survive_conversion_to_every_format(tmp_path):
    rec = write_moba_log(str(tmp_path / "m.aqlog"))
    ds = TransitionDataset.from_log(rec.path, agent="blue")
    for suffix in (".npz", ".hdf5", ".aqlog"):
        path = str(tmp_path / f"m2{suffix}")
        convert(rec.path, path, agent="blue")
        assert load_dataset(path) == ds


def test_a_dataset_of_one_transition_converts_and_summarises(tmp_path, capsys):
    from aql_agent.cli import main

    one = TransitionDataset(np.zeros((1, 3), np.float32), np.zeros((1, 1), np.float32), np.ones(1, np.float32),
                            np.ones((1, 3), np.float32), np.array([True]), np.array([False]))
    assert one.episode_ends().tolist() == [True] and one.episode_returns().tolist() == [1.0]
    save_dataset(one, str(tmp_path / "one.npz"))
    assert main(["convert", str(tmp_path / "one.npz"), str(tmp_path / "one.aqlog")]) == 0
    assert main(["inspect", str(tmp_path / "one.aqlog")]) == 0
    assert "episodes:" in capsys.readouterr().out


def test_a_sampler_refuses_rows_of_another_layout_instead_of_misreading_them():
    """Fine-tuning adds online play to the offline table through `rows`: play recorded without legal-action masks
    must not silently shift the masked table's columns."""
    import dataclasses

    from aql_agent.checkpoint import Preprocessing
    from aql_agent.errors import AqlError
    from aql_agent.training import TensorSampler

    def discrete(masks: bool) -> TransitionDataset:
        ds = _toy_dataset(masks=masks)
        return dataclasses.replace(ds, actions=np.arange(len(ds.rewards)) % 4)

    sampler = TensorSampler(discrete(True), Preprocessing.identity(3, 4), seed=0, device="cpu", discrete=True)
    assert sampler.rows(discrete(True)).shape[1] == sampler.table.shape[1]
    with pytest.raises(AqlError, match="action masks: False"):
        sampler.rows(discrete(False))
    assert sampler.masked and sampler.sample(8).action_masks.shape == (8, 4)
