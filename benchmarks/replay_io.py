"""Replay-log I/O against plain msgpack, side by side in one run.

Writes and reads N steps (17-float observation, 6-float action, 1000-step episodes) with:
- plain msgpack: one packed record per step (obs bytes, action bytes, reward, terminated, truncated), no framing,
  no checks: the practical limit for any msgpack-based log;
- aql-agent's writer and reader (checksummed chunks, uncompressed and zstd);
and converts the log to a `TransitionDataset`. Trials are interleaved and the median is reported, so the ratios
compare runs that saw the same machine load.

    python benchmarks/replay_io.py                # 1M steps, 3 trials
    python benchmarks/replay_io.py --steps 100000 --trials 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable

import msgpack
import numpy as np
from gymnasium import spaces
from tqdm import tqdm

from aql_agent import __version__
from aql_agent.data import TransitionDataset
from aql_agent.replay import ReplayReader, ReplayWriter

OBS_DIM, ACT_DIM, EPISODE = 17, 6, 1000


def make_steps(n: int, seed: int = 0) -> tuple[list, list, list]:
    rng = np.random.default_rng(seed)
    obs = rng.standard_normal((n, OBS_DIM)).astype(np.float32)
    act = rng.uniform(-1, 1, (n, ACT_DIM)).astype(np.float32)
    return list(obs), list(act), rng.standard_normal(n).tolist()


def raw_write(path: str, obs: list, act: list, rew: list) -> None:
    pack = msgpack.Packer().pack
    with open(path, "wb") as f:
        write = f.write
        for i in range(len(rew)):
            write(pack((obs[i].tobytes(), act[i].tobytes(), rew[i], False, i % EPISODE == EPISODE - 1)))


def raw_read_arrays(path: str) -> int:
    """Plain msgpack to the same arrays our reader returns: unpack every record, then build the columns."""
    o, a, r, te, tr = [], [], [], [], []
    with open(path, "rb") as f:
        for rec in msgpack.Unpacker(f):
            o.append(rec[0])
            a.append(rec[1])
            r.append(rec[2])
            te.append(rec[3])
            tr.append(rec[4])
    np.frombuffer(b"".join(o), np.float32).reshape(-1, OBS_DIM)
    np.frombuffer(b"".join(a), np.float32).reshape(-1, ACT_DIM)
    np.asarray(r), np.asarray(te), np.asarray(tr)
    return len(r)


def raw_iterate(path: str) -> int:
    """Plain msgpack records one by one, with observation and action as arrays (what `steps()` yields)."""
    count = 0
    with open(path, "rb") as f:
        for rec in msgpack.Unpacker(f):
            np.frombuffer(rec[0], np.float32)
            np.frombuffer(rec[1], np.float32)
            count += 1
    return count


def ours_write(path: str, obs: list, act: list, rew: list, compression: str) -> None:
    space_o = spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
    space_a = spaces.Box(-1, 1, (ACT_DIM,), np.float32)
    with ReplayWriter(path, "Hopper-like", space_o, space_a, compression=compression, overwrite=True) as w:
        for start in range(0, len(rew), EPISODE):
            w.begin_episode()
            stop = min(start + EPISODE, len(rew))
            for i in range(start, stop):
                w.add_step(obs[i], act[i], rew[i], False, i == stop - 1)
            w.end_episode(obs[stop - 1])


def ours_iterate(path: str) -> int:
    return sum(1 for _ in ReplayReader(path).steps())


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(steps: int, trials: int, out: str, iterate_steps: int) -> dict:
    obs, act, rew = make_steps(steps)
    tmp = tempfile.mkdtemp(prefix="aql-bench-")
    raw, plain, zstd = (os.path.join(tmp, n) for n in ("raw.msgpack", "ours.aqlog", "ours-zstd.aqlog"))
    small_raw, small_ours = os.path.join(tmp, "small.msgpack"), os.path.join(tmp, "small.aqlog")
    raw_write(small_raw, obs[:iterate_steps], act[:iterate_steps], rew[:iterate_steps])
    ours_write(small_ours, obs[:iterate_steps], act[:iterate_steps], rew[:iterate_steps], "none")
    cases: dict[str, Callable[[], object]] = {
        "write/raw msgpack": lambda: raw_write(raw, obs, act, rew),
        "write/aql": lambda: ours_write(plain, obs, act, rew, "none"),
        "write/aql zstd": lambda: ours_write(zstd, obs, act, rew, "zstd"),
        "read to arrays/raw msgpack": lambda: raw_read_arrays(raw),
        "read to arrays/aql": lambda: ReplayReader(plain).columns(),
        "read to arrays/aql zstd": lambda: ReplayReader(zstd).columns(),
        "iterate steps/raw msgpack": lambda: raw_iterate(small_raw),
        "iterate steps/aql": lambda: ours_iterate(small_ours),
        "convert to TransitionDataset/aql": lambda: TransitionDataset.from_log(plain),
        "convert to TransitionDataset/aql zstd": lambda: TransitionDataset.from_log(zstd),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in tqdm(range(trials), desc="trials"):
            for name, fn in cases.items():
                times[name].append(timed(fn))
    median = {name: statistics.median(t) for name, t in times.items()}
    n_for = {name: (iterate_steps if name.startswith("iterate") else steps) for name in cases}
    result = {
        "steps": steps, "iterate_steps": iterate_steps, "trials": trials,
        "observation": f"{OBS_DIM} x float32", "action": f"{ACT_DIM} x float32", "episode_length": EPISODE,
        "machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(), "platform": platform.platform()},
        "aql_agent": __version__, "msgpack": msgpack.version,
        "seconds": {name: {"median": median[name], "all": times[name]} for name in cases},
        "steps_per_second": {name: n_for[name] / median[name] for name in cases},
        "bytes": {"raw msgpack": os.path.getsize(raw), "aql": os.path.getsize(plain),
                  "aql zstd": os.path.getsize(zstd)},
    }
    result["ratios"] = {
        "write overhead vs raw msgpack (aql / raw)": median["write/aql"] / median["write/raw msgpack"],
        "write overhead vs raw msgpack (aql zstd / raw)": median["write/aql zstd"] / median["write/raw msgpack"],
        "read-to-arrays time vs raw msgpack (aql / raw)":
            median["read to arrays/aql"] / median["read to arrays/raw msgpack"],
        "read-to-arrays time vs raw msgpack (aql zstd / raw)":
            median["read to arrays/aql zstd"] / median["read to arrays/raw msgpack"],
        "step iteration time vs raw msgpack (aql Step objects / raw records + frombuffer)":
            median["iterate steps/aql"] / median["iterate steps/raw msgpack"],
    }
    scale = 1_000_000 / steps
    result["targets"] = {
        "read >= 1M steps/s to arrays": result["steps_per_second"]["read to arrays/aql"] >= 1e6,
        "convert 1M steps <= 3 s": median["convert to TransitionDataset/aql"] * scale <= 3.0,
        "write overhead <= 1.5x raw msgpack": result["ratios"]["write overhead vs raw msgpack (aql / raw)"] <= 1.5,
        "read overhead <= 1.5x raw msgpack":
            result["ratios"]["read-to-arrays time vs raw msgpack (aql / raw)"] <= 1.5,
    }
    for path in (raw, plain, zstd, small_raw, small_ours):
        os.remove(path)
    os.rmdir(tmp)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "replay_io.json"), "w") as f:
        json.dump(result, f, indent=2)
    plot(result, os.path.join(out, "replay_io.png"))
    return result


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = result["steps_per_second"]
    groups = ["write", "read to arrays", "iterate steps", "convert to TransitionDataset"]
    fig, axes = plt.subplots(1, len(groups), figsize=(15, 3.8))
    for ax, group in zip(axes, groups):
        names = [n for n in rates if n.startswith(group + "/")]
        labels = [n.split("/", 1)[1] for n in names]
        values = [rates[n] / 1e6 for n in names]
        colors = ["#999999" if "raw" in label else "#1f77b4" for label in labels]
        ax.bar(labels, values, color=colors)
        ax.set_title(group)
        ax.set_ylabel("million steps / s")
        ax.tick_params(axis="x", labelrotation=20)
        for i, v in enumerate(values):
            ax.text(i, v, f"{v:.2f}", ha="center", va="bottom", fontsize=8)
    fig.suptitle(f"replay log I/O, {result['steps']:,} steps ({result['observation']} obs), median of "
                 f"{result['trials']} interleaved trials; grey = plain msgpack")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--iterate-steps", type=int, default=200_000,
                        help="steps for the (slower) per-step iteration comparison")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = parser.parse_args()
    result = run(args.steps, args.trials, args.out, min(args.iterate_steps, args.steps))
    for name, value in result["steps_per_second"].items():
        print(f"{name:<45} {value / 1e6:7.2f} M steps/s   ({result['seconds'][name]['median']:.3f} s)")
    for name, value in result["ratios"].items():
        print(f"{name:<70} {value:5.2f}x")
    for name, ok in result["targets"].items():
        print(f"target {name:<45} {'met' if ok else 'NOT met'}")
    print(f"wrote {args.out}/replay_io.json and replay_io.png")


if __name__ == "__main__":
    main()
