"""moba-1v1 speed on one core: raw env with random legal actions, and whole bot-vs-bot games.

    python benchmarks/moba_speed.py            # writes benchmarks/results/moba_speed.{json,png}

Side by side in one run, interleaved trials:
- `pettingzoo.test.performance_benchmark` (AEC turns per second, random legal actions from the flat mask) on
  moba-1v1 (through `FlatActions` and PettingZoo's `parallel_to_aec`) and on PettingZoo's own
  knights_archers_zombies_v11 (4 agents, a 27x5 float observation: the built-in env nearest in size);
- the raw ParallelEnv in a plain loop, random legal value per head: agent-steps per second (2 per step);
- behaviour-tree games to the end (hard vs hard runs to the 20000-frame cap): seconds per game, frames/s.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import re
import statistics
import time

import numpy as np
from bot_traits import write_results


def pettingzoo_turns_per_second(make_env) -> float:
    from pettingzoo.test import performance_benchmark

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        performance_benchmark(make_env())
    return float(re.search(r"([\d.]+) turns per second", out.getvalue()).group(1))


def raw_agent_steps_per_second(seconds: float, frame_skip: int) -> dict[str, float]:
    from aql_agent.adapters import moba

    env = moba.parallel_env(seed=0, frame_skip=frame_skip)
    rng = random.Random(0)
    observations, _ = env.reset()
    steps, in_env = 0, 0.0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        actions = {agent: [rng.choice([i for i, legal in enumerate(mask.tolist()) if legal] or [0])
                           for mask in observations[agent]["action_mask"]] for agent in env.agents}
        t0 = time.perf_counter()
        observations, *_ = env.step(actions)
        if not env.agents:
            observations, _ = env.reset()
        in_env += time.perf_counter() - t0
        steps += 1
    elapsed = time.perf_counter() - start
    return {"agent_steps_per_s": 2 * steps / elapsed, "agent_steps_per_s_env_only": 2 * steps / in_env}


def bot_game(strong: str, weak: str, seed: int) -> dict[str, float]:
    from aql_agent.adapters import moba
    from aql_agent.adapters.moba.bt import BehaviourTreeBot
    from aql_agent.adapters.moba.play import play_game

    env = moba.parallel_env()
    bots = {"blue": BehaviourTreeBot(strong, seed=seed), "red": BehaviourTreeBot(weak, seed=seed + 1)}
    start = time.perf_counter()
    result = play_game(env, bots, seed=seed)
    seconds = time.perf_counter() - start
    return {"frames": result.frames, "seconds": seconds, "frames_per_s": result.frames / seconds}


def plot(summary: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    turns, raw = summary["pettingzoo_performance_benchmark_turns_per_s"], summary["raw_parallel_env_agent_steps_per_s"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    bars = {"moba\nPZ bench": turns["moba-1v1 (FlatActions, AEC)"],
            "KAZ v11\nPZ bench": turns["knights_archers_zombies_v11"],
            "moba raw\nskip 3": raw["frame_skip=3"], "moba raw\nskip 1": raw["frame_skip=1"]}
    left.bar(list(bars), list(bars.values()), color=["tab:blue", "tab:grey", "tab:blue", "tab:blue"])
    left.axhline(20000, color="tab:red", lw=1, ls="--", label="target 20k")
    left.set(ylabel="agent steps per second (random legal)", title="env steps, one core")
    left.legend()
    games = summary["bt_games"]
    right.bar(["hard vs hard", "medium vs easy"], [g["seconds_per_20k_frames"] for g in games.values()])
    right.axhline(2.0, color="tab:red", lw=1, ls="--", label="target 2 s")
    right.set(ylabel="seconds per 20k frames", title="behaviour-tree games")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="per raw-env trial (PettingZoo's is fixed at 5)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "moba_speed"))
    args = parser.parse_args()

    from pettingzoo.butterfly import knights_archers_zombies_v11
    from pettingzoo.utils.conversions import parallel_to_aec

    from aql_agent.adapters import moba

    trials: dict[str, list] = {k: [] for k in ("pz_moba", "pz_kaz", "raw_skip3", "raw_skip1", "bt_hard_vs_hard",
                                               "bt_medium_vs_easy")}
    for trial in range(args.trials):
        trials["pz_moba"].append(pettingzoo_turns_per_second(
            lambda: parallel_to_aec(moba.FlatActions(moba.parallel_env(seed=trial)))))
        trials["pz_kaz"].append(pettingzoo_turns_per_second(knights_archers_zombies_v11.env))
        trials["raw_skip3"].append(raw_agent_steps_per_second(args.seconds, frame_skip=3))
        trials["raw_skip1"].append(raw_agent_steps_per_second(args.seconds, frame_skip=1))
        trials["bt_hard_vs_hard"].append(bot_game("hard", "hard", seed=trial))
        trials["bt_medium_vs_easy"].append(bot_game("medium", "easy", seed=trial))
        print(f"trial {trial}: " + ", ".join(f"{k} {v[-1]}" for k, v in trials.items()), flush=True)

    def median(values: list, key: str | None = None) -> float:
        return statistics.median(v[key] if key else v for v in values)

    summary = {
        "pettingzoo_performance_benchmark_turns_per_s": {"moba-1v1 (FlatActions, AEC)": median(trials["pz_moba"]),
                                                         "knights_archers_zombies_v11": median(trials["pz_kaz"])},
        "moba_vs_kaz_turns_ratio": median(trials["pz_moba"]) / median(trials["pz_kaz"]),
        "raw_parallel_env_agent_steps_per_s": {
            "frame_skip=3": median(trials["raw_skip3"], "agent_steps_per_s"),
            "frame_skip=3, env time only": median(trials["raw_skip3"], "agent_steps_per_s_env_only"),
            "frame_skip=1": median(trials["raw_skip1"], "agent_steps_per_s"),
        },
        "bt_games": {name: {"frames": median(trials[name], "frames"), "seconds": median(trials[name], "seconds"),
                            "frames_per_s": median(trials[name], "frames_per_s"),
                            "seconds_per_20k_frames": 20000 / median(trials[name], "frames_per_s")}
                     for name in ("bt_hard_vs_hard", "bt_medium_vs_easy")},
        "trials": trials, "threads": 1, "numpy": np.__version__,
    }
    write_results(summary, args.out, plot)
    print(json.dumps({k: v for k, v in summary.items() if k != "trials"}, indent=2))


if __name__ == "__main__":
    main()
