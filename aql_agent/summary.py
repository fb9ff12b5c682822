"""What a log or dataset holds, as a JSON-friendly summary and as text (`aql inspect`)."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from aql_agent.data.dataset import TransitionDataset, log_paths
from aql_agent.data.formats import dataset_spaces, detect_format, load_dataset
from aql_agent.errors import require_exists
from aql_agent.replay.reader import ReplayReader
from aql_agent.spaces import describe_space


def _stats(values: np.ndarray) -> dict[str, float] | None:
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    return {"mean": float(values.mean()), "std": float(values.std()), "min": float(values.min()),
            "max": float(values.max())}


def summarise_log(path: str) -> dict[str, Any]:
    """Header, episodes, steps, returns and outcomes per agent of one replay log."""
    reader = ReplayReader(path)
    columns = reader.columns()
    header = columns.header
    agents = {}
    for agent in header.agents:
        cols = columns.agents[agent]
        complete = [e for e in columns.episodes if e.complete]
        outcomes = [e.outcomes.get(agent) for e in complete]
        agents[agent] = {
            "observation_space": describe_space(header.observation_spaces[agent]),
            "action_space": describe_space(header.action_spaces[agent]),
            "player": header.players[agent],
            "steps": len(cols),
            "terminated": int(cols.terminated.sum()),
            "truncated": int(cols.truncated.sum()),
            "returns": _stats(np.asarray([e.returns[agent] for e in complete])),
            "outcomes": {o: outcomes.count(o) for o in ("win", "loss", "draw") if o in outcomes},
        }
    return {
        "path": path, "format": f"replay log v{header.version[0]}.{header.version[1]}",
        "bytes": os.path.getsize(path), "env_id": header.env_id, "created": header.created,
        "recorder": header.recorder, "finalised": columns.finalised,
        "episodes": len(columns.episodes), "complete_episodes": sum(e.complete for e in columns.episodes),
        "steps": sum(len(c) for c in columns.agents.values()), "agents": agents,
        "info_keys": header.info_keys, "metadata": header.metadata,
    }


def summarise_dataset(dataset: TransitionDataset, path: str, kind: str) -> dict[str, Any]:
    """Transitions, episodes, returns, shapes and spaces of a dataset file."""
    obs_space, act_space = dataset_spaces(dataset)
    return {
        "path": path, "format": kind, "env_id": dataset.metadata.get("env_id", ""),
        "transitions": len(dataset), "episodes": len(dataset.episode_slices()),
        "returns": _stats(dataset.episode_returns()),
        "observations": f"{dataset.observations.shape[1:]} {dataset.observations.dtype}",
        "actions": f"{dataset.actions.shape[1:]} {dataset.actions.dtype}",
        "observation_space": describe_space(obs_space), "action_space": describe_space(act_space),
        "spaces_from": "metadata" if "observation_space" in dataset.metadata else "inferred from the data",
        "terminals": int(dataset.terminals.sum()), "timeouts": int(dataset.timeouts.sum()),
        "action_masks": None if dataset.action_masks is None else str(dataset.action_masks.shape[1:]),
        "infos": sorted(dataset.infos),
        "sha256": dataset.digest(),
    }


def summarise(path: str | os.PathLike) -> dict[str, Any] | list[dict[str, Any]]:
    """A summary of a replay log (or of each log in a folder), or of an .npz / .hdf5 / Minari dataset."""
    path = os.fspath(path)
    require_exists(path, "input")
    kind = detect_format(path)
    if kind == "log":
        summaries = [summarise_log(p) for p in log_paths(path)]
        return summaries[0] if not os.path.isdir(path) else summaries
    return summarise_dataset(load_dataset(path), path, kind)


def _number(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.6g}"


def format_summary(summary: dict[str, Any] | list[dict[str, Any]]) -> str:
    """The summary as aligned `key: value` lines for a terminal."""
    if isinstance(summary, list):
        return "\n\n".join(format_summary(s) for s in summary)
    lines = []

    def put(key: str, value: Any, indent: int = 0) -> None:
        if isinstance(value, dict) and value and set(value) == {"mean", "std", "min", "max"}:
            value = (f"mean {_number(value['mean'])} +/- {_number(value['std'])} "
                     f"(min {_number(value['min'])}, max {_number(value['max'])})")
        if isinstance(value, dict) and value and key in ("agents",):
            lines.append(" " * indent + f"{key}:")
            for agent, entry in value.items():
                lines.append(" " * (indent + 2) + f"{agent}:")
                for k, v in entry.items():
                    put(k, v, indent + 4)
            return
        if isinstance(value, (dict, list)):
            value = json.dumps(value) if value else "-"
        lines.append(" " * indent + f"{key + ':':<20}{'-' if value is None else value}")

    for key, value in summary.items():
        put(key, value)
    return "\n".join(lines)
