"""The README's demo: record bot games into replay logs, convert them to datasets, show what they hold.

Later features extend it into the whole story (record -> train -> deploy -> fine-tune).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from aql_agent.adapters.gym import make_env, record_episodes
from aql_agent.data import TransitionDataset, convert, load_dataset
from aql_agent.inspect import format_summary, summarise
from aql_agent.recording import record_moba


def cartpole_bot(noise: float, seed: int) -> Callable[[np.ndarray], int]:
    """A scripted CartPole player: push toward where the pole is falling; `noise` is its chance of a random push."""
    rng = np.random.default_rng(seed)

    def act(observation: np.ndarray) -> int:
        if rng.random() < noise:
            return int(rng.integers(2))
        return int(observation[2] + 0.5 * observation[3] > 0)

    return act


def _banner(text: str) -> None:
    print(f"\n=== {text} " + "=" * max(0, 70 - len(text)))


def run_demo(out: str, episodes: int = 10, seed: int = 0) -> TransitionDataset:
    """Record two bot levels, merge their logs into .npz and .hdf5, check a lossless round trip, then record
    moba-1v1 bot games and read one side back as a dataset with its action masks."""
    logs = os.path.join(out, "logs")
    os.makedirs(logs, exist_ok=True)
    env = make_env("CartPole-v1", seed=seed)
    for level, noise in (("hard", 0.0), ("easy", 0.5)):
        path = os.path.join(logs, f"cartpole-bot-{level}.aqlog")
        _banner(f"1. record {episodes} episodes of the {level} bot -> {path}")
        record_episodes(env, cartpole_bot(noise, seed), path, episodes, seed=seed, overwrite=True,
                        player={"kind": "bot", "name": "cartpole-lean", "level": level},
                        metadata={"demo": True})
        print(format_summary(summarise(path)))

    npz, hdf5 = os.path.join(out, "cartpole.npz"), os.path.join(out, "cartpole.hdf5")
    _banner(f"2. convert {logs}/ -> {npz} and {hdf5}")
    dataset = convert(logs, npz, overwrite=True)
    convert(npz, hdf5, overwrite=True)
    print(format_summary(summarise(npz)))

    roundtrip = os.path.join(out, "cartpole-roundtrip.aqlog")
    _banner(f"3. round trip {hdf5} -> {roundtrip} -> arrays")
    convert(hdf5, roundtrip, compression="zstd", overwrite=True)
    same = load_dataset(roundtrip) == dataset
    print(f"{len(dataset)} transitions, {len(dataset.episode_slices())} episodes; "
          f"identical after log -> npz -> hdf5 -> zstd log -> arrays: {same}")
    if not same:
        raise RuntimeError("the round trip changed the data: please report this as a bug")

    moba_logs = os.path.join(out, "moba-logs")
    _banner(f"4. record 2 moba-1v1 games, bt:hard (blue) vs bt:easy (red) -> {moba_logs}/")
    moba_log = record_moba(moba_logs, "bt:hard", "bt:easy", episodes=2, seed=seed, overwrite=True, progress=False)
    print(format_summary(summarise(moba_log)))
    moba_data = TransitionDataset.from_log(moba_log, agent="red")
    print(f"red's view as a dataset: observations {moba_data.observations.shape}, actions "
          f"{moba_data.actions.shape}, legal-action masks {moba_data.action_masks.shape}")
    print(f"\nfiles are in {out}/ ; try: aql inspect {roundtrip}; tools/record --player human --opponent bt:easy")
    return dataset
