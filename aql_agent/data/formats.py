"""Dataset files: D4RL-keyed `.npz` and `.hdf5`, local Minari datasets, and replay logs, with one
`load_dataset` / `save_dataset` / `convert` over all of them (format chosen by path)."""

from __future__ import annotations

import json
import os
import warnings
import zipfile
from collections.abc import Mapping
from typing import Any, BinaryIO

import numpy as np
from gymnasium import spaces
from tqdm import tqdm

from aql_agent.data.dataset import ACTION_MASK_KEY, OBSERVATION_KEY, TransitionDataset, next_rows, split_observation
from aql_agent.errors import AqlError, DatasetError, ReplayLogWarning, SpaceError, require_exists
from aql_agent.replay import ReplayWriter
from aql_agent.spaces import space_from_spec, space_to_spec

D4RL_KEYS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")
MASK_KEYS = ("action_masks", "next_action_masks")
METADATA_KEY = "aql_metadata"
LOG_SUFFIX = ".aqlog"
FORMATS = ("log", "npz", "hdf5", "minari")


def detect_format(path: str | os.PathLike) -> str:
    """'log' (a replay log or a folder of them), 'npz', 'hdf5', 'minari' or 'shards' (what `aql convert
    --workers` writes), from the path."""
    path = os.fspath(path)
    if os.path.isdir(path):
        from aql_agent.data.shards import is_sharded

        if is_sharded(path):
            return "shards"
        if _minari_data_dir(path) is not None:
            return "minari"
        if any(n.endswith(LOG_SUFFIX) for n in os.listdir(path)):
            return "log"
        raise DatasetError(f"{path} is a directory but neither a Minari dataset (data/main_data.hdf5 and "
                           f"data/metadata.json) nor a folder of replay logs (*{LOG_SUFFIX})")
    lower = path.lower()
    if lower.endswith((LOG_SUFFIX, LOG_SUFFIX + ".partial")):
        return "log"
    if lower.endswith(".npz"):
        return "npz"
    if lower.endswith((".hdf5", ".h5")):
        return "hdf5"
    raise DatasetError(f"cannot tell the format of {path}: use *{LOG_SUFFIX} (replay log), *.npz, *.hdf5/*.h5 "
                       "(D4RL keys) or a Minari dataset directory")


def load_dataset(path: str | os.PathLike, agent: str | None = None, recover: bool = False) -> TransitionDataset:
    """A `TransitionDataset` from any supported file; `agent` picks the perspective of a multi-agent log."""
    require_exists(path, "dataset")
    kind = detect_format(path)
    if kind == "log":
        return TransitionDataset.from_log(path, agent=agent, recover=recover)
    if agent not in (None, "all"):
        raise DatasetError(f"agent {agent!r}: only a multi-agent replay log has agents to choose from; {path} is a "
                           f"{kind} dataset of one agent, so leave --agent out")
    if kind == "shards":
        from aql_agent.data.shards import ShardedDataset

        return ShardedDataset(path).load()
    return {"npz": load_npz, "hdf5": load_hdf5, "minari": load_minari}[kind](path)


def save_dataset(dataset: TransitionDataset, path: str | os.PathLike, compression: str = "none",
                 overwrite: bool = False, progress: bool = False) -> None:
    """Write `dataset` in the format the path names (`compression` applies to replay logs)."""
    path = os.fspath(path)
    if os.path.exists(path) and not overwrite:
        raise DatasetError(f"{path} already exists (pass overwrite=True, or --overwrite, to replace it)")
    kind = detect_format(path) if not os.path.isdir(path) else "dir"
    if kind == "npz":
        save_npz(dataset, path)
    elif kind == "hdf5":
        save_hdf5(dataset, path)
    elif kind == "log":
        save_log(dataset, path, compression=compression, progress=progress, overwrite=overwrite)
    else:
        raise DatasetError(f"cannot write a dataset to {path}: use *{LOG_SUFFIX}, *.npz or *.hdf5 "
                           "(Minari datasets are read, not written)")


# -- D4RL arrays: shared by .npz and .hdf5 ------------------------------------------------------------------
def _to_arrays(dataset: TransitionDataset) -> dict[str, np.ndarray]:
    arrays = {key: getattr(dataset, key) for key in D4RL_KEYS}
    if dataset.action_masks is not None:
        arrays.update(action_masks=dataset.action_masks, next_action_masks=dataset.next_action_masks)
    arrays.update({f"infos/{k}": v for k, v in dataset.infos.items()})
    return arrays


def _from_arrays(arrays: Mapping[str, np.ndarray], metadata: dict, source: str) -> TransitionDataset:
    missing = [k for k in ("observations", "actions", "rewards", "terminals") if k not in arrays]
    if missing:
        raise DatasetError(f"{source} lacks the D4RL keys {missing} (it has {sorted(arrays)})")
    known = set(D4RL_KEYS) | set(MASK_KEYS)
    ignored = sorted(k for k in arrays if k not in known and not k.startswith("infos/"))
    if ignored:
        warnings.warn(ReplayLogWarning(f"{source}: keys {ignored} are not part of a transition dataset and are "
                                       "not read"), stacklevel=4)
    obs, terminals = arrays["observations"], arrays["terminals"]
    timeouts = arrays.get("timeouts")
    if timeouts is None:
        warnings.warn(ReplayLogWarning(f"{source}: no 'timeouts' key; every episode end is taken from 'terminals'"),
                      stacklevel=4)
        timeouts = np.zeros(len(obs), dtype=bool)
    fields = dict(observations=obs, actions=arrays["actions"], rewards=arrays["rewards"],
                  terminals=terminals, timeouts=timeouts,
                  action_masks=arrays.get("action_masks"), next_action_masks=arrays.get("next_action_masks"),
                  infos={k[len("infos/"):]: v for k, v in arrays.items() if k.startswith("infos/")},
                  metadata={**metadata, "source": [source]})
    if "next_observations" in arrays:
        return TransitionDataset(next_observations=arrays["next_observations"], **fields)
    return _derive_next_observations(fields, source)


def _derive_next_observations(fields: dict, source: str) -> TransitionDataset:
    """Old D4RL files lack next_observations: shift within episodes; a cut episode's last step is unknown."""
    obs = fields["observations"]
    terminals = np.asarray(fields["terminals"]).astype(bool)
    timeouts = np.asarray(fields["timeouts"]).astype(bool)
    n = len(obs)
    ends = terminals | timeouts
    if n:
        ends[-1] = True
    # a terminal's next observation is never bootstrapped from: its own observation is a safe filler
    next_obs = next_rows(obs, ends)
    keep = ~(ends & ~terminals)
    if fields.get("action_masks") is not None:
        fields["next_action_masks"] = next_rows(fields["action_masks"], ends)
    dropped = int(n - keep.sum())
    if dropped:
        warnings.warn(ReplayLogWarning(f"{source}: no 'next_observations' key; derived it within episodes and "
                                       f"dropped {dropped} transition(s) that end a cut episode (their next "
                                       "observation is unknown)"), stacklevel=5)
    dataset = TransitionDataset(next_observations=next_obs, **fields)
    return dataset if not dropped else dataset.select(keep)


def _metadata_json(dataset: TransitionDataset) -> str:
    return json.dumps(dataset.metadata, default=str)


def _parse_metadata(text: Any, source: str) -> dict:
    if text is None:
        return {}
    if isinstance(text, bytes):
        text = text.decode()
    try:
        value = json.loads(str(text))
    except ValueError:
        warnings.warn(ReplayLogWarning(f"{source}: unreadable {METADATA_KEY}; spaces will be inferred"), stacklevel=4)
        return {}
    return value if isinstance(value, dict) else {}


def save_npz(dataset: TransitionDataset, path: str | os.PathLike | BinaryIO) -> None:
    """D4RL keys in an uncompressed .npz (`infos/<key>` for info columns, metadata as JSON); `path` may be
    an open binary file."""
    arrays = _to_arrays(dataset)
    arrays[METADATA_KEY] = np.asarray(_metadata_json(dataset))
    if hasattr(path, "write"):
        np.savez(path, **arrays)
        return
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def load_npz(path: str | os.PathLike) -> TransitionDataset:
    path = os.fspath(path)
    require_exists(path, "dataset")
    if not zipfile.is_zipfile(path):  # np.load would try it as one .npy array, then as a pickle (refused)
        raise DatasetError(f"{path} is not an .npz archive (a zip of .npy arrays, as numpy.savez writes): "
                           "check the file is complete, or convert it with `aql convert`")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError) as exc:
        raise DatasetError(f"{path} is not a readable .npz file ({exc})") from None
    metadata = _parse_metadata(arrays.pop(METADATA_KEY, None), path)
    return _from_arrays(arrays, metadata, path)


def save_hdf5(dataset: TransitionDataset, path: str | os.PathLike) -> None:
    """D4RL's hdf5 layout: one dataset per key, `infos/` as a group, metadata as a root attribute."""
    import h5py

    with h5py.File(path, "w") as f:
        for key, value in _to_arrays(dataset).items():
            f.create_dataset(key, data=value)
        f.attrs[METADATA_KEY] = _metadata_json(dataset)


def load_hdf5(path: str | os.PathLike) -> TransitionDataset:
    import h5py

    path = os.fspath(path)
    require_exists(path, "dataset")
    arrays: dict[str, np.ndarray] = {}
    try:
        with h5py.File(path, "r") as f:
            def visit(name: str, node: Any) -> None:
                if isinstance(node, h5py.Dataset):
                    arrays[name] = node[()]

            f.visititems(visit)
            metadata = _parse_metadata(f.attrs.get(METADATA_KEY), path)
    except OSError as exc:
        raise DatasetError(f"{path} is not a readable HDF5 file ({exc})") from None
    return _from_arrays(arrays, metadata, path)


# -- Minari -------------------------------------------------------------------------------------------------
def _minari_data_dir(path: str) -> str | None:
    for candidate in (os.path.join(path, "data"), path):
        if os.path.isfile(os.path.join(candidate, "main_data.hdf5")) and os.path.isfile(
                os.path.join(candidate, "metadata.json")):
            return candidate
    return None


def load_minari(path: str | os.PathLike, use_minari: bool | None = None) -> TransitionDataset:
    """A local Minari dataset (its root or its `data/` folder), through the `minari` package when installed.

    `use_minari=False` reads the HDF5 layout directly with h5py (what happens when minari is not installed).
    """
    path = os.fspath(path)
    require_exists(path, "Minari dataset")
    data_dir = _minari_data_dir(path) if os.path.isdir(path) else None
    if data_dir is None:
        raise DatasetError(f"{path} is not a Minari dataset directory: expected data/main_data.hdf5 and "
                           "data/metadata.json inside it")
    if use_minari is None:
        try:
            import minari  # noqa: F401
            use_minari = True
        except ImportError:
            use_minari = False
    with open(os.path.join(data_dir, "metadata.json")) as f:
        try:
            raw_meta = json.load(f)
        except ValueError as exc:
            raise DatasetError(f"{data_dir}/metadata.json is not valid JSON ({exc})") from None
    episodes, obs_space, act_space, env_id = (_minari_episodes_package(data_dir) if use_minari
                                              else _minari_episodes_h5py(data_dir, raw_meta))
    if not episodes:
        raise DatasetError(f"{path}: the Minari dataset holds no episodes")
    parts = []
    for ep in episodes:
        observations = ep["observations"]
        obs, masks = split_observation(observations, path)
        length = len(ep["rewards"])
        if len(obs) != length + 1:
            raise DatasetError(f"{path}: episode {ep['id']} has {len(obs)} observations for {length} steps "
                               "(Minari stores one more observation than steps)")
        infos = {}
        for key, value in (ep.get("infos") or {}).items():
            value = np.asarray(value) if not isinstance(value, dict) else None
            if value is not None and value.dtype != object and len(value) in (length, length + 1):
                infos[key] = value[-length:] if length else value[:0]
        parts.append(TransitionDataset(
            observations=obs[:-1], actions=np.asarray(ep["actions"]), rewards=np.asarray(ep["rewards"]),
            next_observations=obs[1:], terminals=np.asarray(ep["terminations"]),
            timeouts=np.asarray(ep["truncations"]),
            action_masks=None if masks is None else masks[:-1], next_action_masks=None if masks is None else masks[1:],
            infos=infos, metadata={}))
    dataset = TransitionDataset.concatenate(parts) if len(parts) > 1 else parts[0]
    dataset.metadata = {"env_id": env_id or raw_meta.get("dataset_id", ""), "source": [path],
                        "minari_dataset_id": raw_meta.get("dataset_id"),
                        **_spec_metadata(obs_space, act_space, path)}
    return dataset


def _spec_metadata(obs_space: Any, act_space: Any, source: str) -> dict:
    specs = {}
    for name, space in (("observation_space", obs_space), ("action_space", act_space)):
        if space is None:
            continue
        try:
            specs[name] = space_to_spec(space)
        except SpaceError as exc:
            warnings.warn(ReplayLogWarning(f"{source}: {exc}; it will be inferred from the data"), stacklevel=4)
    return specs


def _minari_episodes_package(data_dir: str) -> tuple[list[dict], Any, Any, str | None]:
    from minari import MinariDataset

    try:
        ds = MinariDataset(data_dir)
    except Exception as exc:  # minari raises ValueError, AssertionError, KeyError... on a bad dataset
        raise DatasetError(f"minari cannot open {data_dir} ({type(exc).__name__}: {exc})") from None
    episodes = [{"id": ep.id, "observations": ep.observations, "actions": ep.actions, "rewards": ep.rewards,
                 "terminations": ep.terminations, "truncations": ep.truncations, "infos": ep.infos}
                for ep in ds.iterate_episodes()]
    env_id = ds.env_spec.id if ds.env_spec is not None else None
    return episodes, ds.observation_space, ds.action_space, env_id


def _minari_space(spec: Any) -> spaces.Space | None:
    """A space from Minari's own JSON serialisation (Box, Discrete, MultiDiscrete, MultiBinary, Dict)."""
    if isinstance(spec, str):
        spec = json.loads(spec)
    kind = spec.get("type")
    if kind == "Box":
        low, high = np.asarray(spec["low"]), np.asarray(spec["high"])
        return space_from_spec({"type": "box", "dtype": spec["dtype"], "shape": spec["shape"],
                                "low": low.ravel().tolist(), "high": high.ravel().tolist()})
    if kind == "Discrete":
        return spaces.Discrete(int(spec["n"]), start=int(spec.get("start", 0)))
    if kind == "MultiDiscrete":
        return spaces.MultiDiscrete(np.asarray(spec["nvec"]), start=np.asarray(spec.get("start", 0)))
    if kind == "MultiBinary":
        return spaces.MultiBinary(spec["n"])
    if kind == "Dict":
        subspaces = {key: _minari_space(sub) for key, sub in spec["subspaces"].items()}
        return None if any(s is None for s in subspaces.values()) else spaces.Dict(subspaces)
    return None


def _minari_episodes_h5py(data_dir: str, raw_meta: dict) -> tuple[list[dict], Any, Any, str | None]:
    import h5py

    def read(node: Any) -> Any:
        if isinstance(node, h5py.Group):
            return {key: read(child) for key, child in node.items()}
        return node[()]

    episodes = []
    try:
        with h5py.File(os.path.join(data_dir, "main_data.hdf5"), "r") as f:
            names = sorted((k for k in f if k.startswith("episode_")), key=lambda k: int(k.split("_")[1]))
            for name in names:
                group = read(f[name])
                group["id"] = int(name.split("_")[1])
                episodes.append(group)
    except (OSError, KeyError, ValueError) as exc:
        raise DatasetError(f"{data_dir}/main_data.hdf5 is not a readable Minari file ({exc})") from None
    spaces_found = []
    for key in ("observation_space", "action_space"):
        try:
            spaces_found.append(_minari_space(raw_meta[key]) if key in raw_meta else None)
        except (AqlError, KeyError, ValueError, TypeError):
            spaces_found.append(None)
    env_id = None
    if isinstance(raw_meta.get("env_spec"), str):
        try:
            env_id = json.loads(raw_meta["env_spec"]).get("id")
        except ValueError:
            env_id = None
    return episodes, spaces_found[0], spaces_found[1], env_id


# -- replay logs --------------------------------------------------------------------------------------------
def dataset_spaces(dataset: TransitionDataset) -> tuple[spaces.Space, spaces.Space]:
    """The observation and action spaces from the metadata, or inferred from the arrays (said in metadata)."""
    meta = dataset.metadata
    try:
        if "observation_space" in meta and "action_space" in meta:
            return space_from_spec(meta["observation_space"]), space_from_spec(meta["action_space"])
    except SpaceError as exc:
        warnings.warn(ReplayLogWarning(f"dataset metadata: {exc}; spaces inferred from the data"), stacklevel=3)
    obs = dataset.observations
    if obs.dtype.kind == "f":
        low, high = -np.inf, np.inf
    elif obs.dtype.kind in "iu":
        low, high = np.iinfo(obs.dtype).min, np.iinfo(obs.dtype).max
    else:  # bool
        low, high = 0, 1
    obs_space: spaces.Space = spaces.Box(low, high, obs.shape[1:], obs.dtype)
    if dataset.action_masks is not None:
        mask = dataset.action_masks
        obs_space = spaces.Dict({OBSERVATION_KEY: obs_space,
                                 ACTION_MASK_KEY: spaces.Box(0, 1, mask.shape[1:], mask.dtype)})
    actions = dataset.actions
    if actions.dtype.kind == "f":
        bound = 1.0 if len(actions) and np.abs(actions).max() <= 1.0 else np.inf
        act_space: spaces.Space = spaces.Box(-bound, bound, actions.shape[1:], actions.dtype)
    elif actions.ndim == 1:
        act_space = spaces.Discrete(int(actions.max()) + 1 if len(actions) else 1)
    else:
        act_space = spaces.MultiDiscrete(actions.max(axis=0) + 1)
    return obs_space, act_space


def save_log(dataset: TransitionDataset, path: str | os.PathLike, compression: str = "none",
             progress: bool = False, overwrite: bool = False) -> None:
    """A replay log of the dataset, one episode per `episode_slices()`; converting it back gives the same arrays."""
    obs_space, act_space = dataset_spaces(dataset)
    meta = dataset.metadata
    masked = dataset.action_masks is not None
    stored = {"reward_dtype": dataset.rewards.dtype.name,
              "info_dtypes": {k: v.dtype.name for k, v in dataset.infos.items() if v.dtype != object}}
    players = meta.get("players") if isinstance(meta.get("players"), dict) else None
    agent = str(meta.get("agent") or "agent")
    player = (players or {}).get(agent) or {"kind": "dataset", "source": [str(s) for s in meta.get("source", [])]}
    info_keys = list(dataset.infos)

    def observation(array: np.ndarray, mask: np.ndarray | None, i: int) -> Any:
        return {OBSERVATION_KEY: array[i], ACTION_MASK_KEY: mask[i]} if masked else array[i]

    with ReplayWriter(path, str(meta.get("env_id") or "unknown"), obs_space, act_space, agents=[agent],
                      players={agent: player}, info_keys=info_keys, compression=compression, overwrite=overwrite,
                      recorder={"tool": "aql convert"},
                      metadata={"dataset": stored, "converted_from": [str(s) for s in meta.get("source", [])]}) as w:
        obs, next_obs = dataset.observations, dataset.next_observations
        actions, rewards = dataset.actions, dataset.rewards
        masks, next_masks = dataset.action_masks, dataset.next_action_masks
        terminals, timeouts = dataset.terminals, dataset.timeouts
        for part in tqdm(dataset.episode_slices(), desc="episodes", disable=not progress, unit="ep"):
            w.begin_episode()
            for i in range(part.start, part.stop):
                info = {k: dataset.infos[k][i] for k in info_keys} if info_keys else None
                w.add_step(observation(obs, masks, i), actions[i], rewards[i], terminals[i], timeouts[i], info)
            w.end_episode(observation(next_obs, next_masks, part.stop - 1))


def convert(source: str | os.PathLike, destination: str | os.PathLike, agent: str | None = None,
            compression: str = "none", overwrite: bool = False, progress: bool = False) -> TransitionDataset:
    """Any supported format to any writable one, through a `TransitionDataset`; returns that dataset."""
    dataset = load_dataset(source, agent=agent)
    save_dataset(dataset, destination, compression=compression, overwrite=overwrite, progress=progress)
    return dataset
