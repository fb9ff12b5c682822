"""Online SAC, the behaviour policy behind `aql make-dataset` (and the base of CQL), learns a continuous task.

A budget that fits the suite: Pendulum-v1, where uniform random play scores about -1200 and a swung-up,
balanced pendulum about -150. The threshold is "swings up and balances", not a figure from one run; how close
SAC comes to Stable-Baselines3's on MuJoCo lives in benchmarks/sac_reference.py.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from aql_agent.make_dataset import DatasetMaker, MakeDatasetSettings


def test_online_sac_swings_up_and_balances_pendulum(tmp_path):
    torch.set_num_threads(1)
    settings = MakeDatasetSettings("Pendulum-v1", str(tmp_path), train_steps=4000, snapshot_every=1000,
                                   learning_starts=1000, eval_episodes=3, progress=False)
    maker = DatasetMaker(settings)
    started = time.perf_counter()
    maker.train_behaviour()
    returns = [snapshot["return"] for snapshot in maker.card["snapshots"]]
    print(f"Pendulum-v1 snapshot returns {np.round(returns)} in {time.perf_counter() - started:.0f} s")
    assert returns[0] < -900  # random play, before any update: the task is not solved by chance
    assert returns[-1] > -400, returns
