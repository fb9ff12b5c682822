"""Datasets: `TransitionDataset` and its files (replay logs, D4RL .npz / .hdf5, Minari)."""

from aql_agent.data.dataset import TransitionDataset
from aql_agent.data.formats import convert, detect_format, load_dataset, load_minari, save_dataset

__all__ = ["TransitionDataset", "convert", "detect_format", "load_dataset", "load_minari", "save_dataset"]
