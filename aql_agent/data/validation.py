"""Checks that a dataset is one a learner can train on, before any training starts: one clear error naming
the source and what to do, never a shape error deep inside an update."""

from __future__ import annotations

import dataclasses

import numpy as np
from gymnasium import spaces

from aql_agent.data.dataset import TransitionDataset
from aql_agent.data.formats import dataset_spaces
from aql_agent.errors import DatasetError


def check_dataset(dataset: TransitionDataset, source: str) -> None:
    """Refuse data a continuous learner cannot use, before any training starts."""
    if dataset.actions.dtype.kind != "f" or dataset.actions.ndim != 2:
        raise DatasetError(f"{source}: actions have dtype {dataset.actions.dtype} and shape "
                           f"{dataset.actions.shape}; continuous learners need float actions [N, act_dim] "
                           "(discrete actions need a discrete learner)")
    if dataset.observations.ndim != 2:
        raise DatasetError(f"{source}: observations have shape {dataset.observations.shape}; learners take flat "
                           "vectors [N, obs_dim]: flatten them when converting the data")
    if len(dataset) == 0:
        raise DatasetError(f"{source}: the dataset has no transitions")
    check_finite(dataset, source)


def check_finite(dataset: TransitionDataset, source: str) -> None:
    """No NaN or infinity, also after the float32 cast training makes (float64 beyond 3.4e38 would become inf)."""
    limit = np.finfo(np.float32).max
    for name in ("observations", "actions", "rewards", "next_observations"):
        values = getattr(dataset, name).reshape(len(getattr(dataset, name)), -1)
        bad = ~np.isfinite(values).all(axis=1)
        if values.dtype.kind == "f" and values.dtype.itemsize > 4:
            bad |= (np.abs(np.nan_to_num(values)) > limit).any(axis=1)
        if bad.any():
            raise DatasetError(f"{source}: {name} has {int(bad.sum())} rows with NaN, infinity or values beyond "
                               f"float32's range (first at row {int(np.argmax(bad))}); clean or drop them before "
                               "training")


def check_discrete_dataset(dataset: TransitionDataset, source: str) -> TransitionDataset:
    """Refuse data a discrete learner cannot use; returns it with int64 actions [N]."""
    actions = dataset.actions
    if actions.ndim == 2 and actions.shape[1] == 1:
        actions = actions[:, 0]
    if actions.ndim != 1 or not (actions.dtype.kind in "iu" or (actions.dtype.kind == "f"
                                                                  and np.all(np.mod(actions, 1) == 0))):
        raise DatasetError(f"{source}: actions have dtype {actions.dtype} and shape {dataset.actions.shape}; discrete "
                           "learners need one integer action per transition (continuous actions need a continuous "
                           "learner; multi-head actions need flattening: record games with their kind, as aql "
                           "record does)")
    if dataset.observations.ndim != 2 or len(dataset) == 0:
        raise DatasetError(f"{source}: discrete learners need transitions with flat observations [N, obs_dim]; got "
                           f"{dataset.observations.shape}")
    dataset = dataclasses.replace(dataset, actions=actions.astype(np.int64))
    n = action_count(dataset)
    if actions.min() < 0 or actions.max() >= n:
        raise DatasetError(f"{source}: actions range over {actions.min()}..{actions.max()}, outside the action space's "
                           f"0..{n - 1}")
    if dataset.action_masks is not None and dataset.action_masks.shape[1:] != (n,):
        raise DatasetError(f"{source}: action masks are {dataset.action_masks.shape[1:]} wide, not one per action "
                           f"({n})")
    return dataset


def action_count(dataset: TransitionDataset) -> int:
    """How many discrete actions the dataset's action space has."""
    space = dataset_spaces(dataset)[1]
    if not isinstance(space, spaces.Discrete) or space.start != 0:
        raise DatasetError(f"the dataset's action space is {space}; discrete learners need Discrete(n) from 0")
    return int(space.n)
