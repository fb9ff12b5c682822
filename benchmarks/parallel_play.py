"""Evaluation and recording games per second: serial, and on Ray with 1 and 2 workers, side by side in one run.

    python benchmarks/parallel_play.py --games 24          # moba-1v1, a discrete agent against bt:medium

A discrete BC agent is trained from a few recorded bot games (a real checkpoint, so the policy's cost is in
the figures), then evaluated three ways on the same games (same seeds): `kind.evaluate` in this process,
and `aql_agent.distributed.evaluate_parallel` on a local Ray with 1 and 2 workers. The results must be equal;
the times are wall-clock, with and without Ray's start-up (`ray.init`, then the actors' own imports and policy
load, which each call pays; each is run twice, since Ray's own daemons are still starting during the first
round). Writes benchmarks/results/parallel_play.json and .png.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from aql_agent.adapters.games import game_kind  # noqa: E402
from aql_agent.checkpoint import load_policy  # noqa: E402
from aql_agent.cli import main as aql  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--game", default="moba-1v1")
    parser.add_argument("--opponent", default="bt:medium")
    parser.add_argument("--games", type=int, default=24)
    parser.add_argument("--record-games", type=int, default=4, help="bot games the agent is trained from")
    parser.add_argument("--train-steps", type=int, default=500)
    parser.add_argument("--record-bench", type=int, default=16, help="bot-vs-bot games recorded per timing")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "parallel_play"), help="output stem")
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_num_threads(1)
    kind = game_kind(args.game)
    with tempfile.TemporaryDirectory() as work:
        log = kind.record(work, args.opponent, episodes=args.record_games, seed=1000, progress=False)
        assert aql(["train", "--algo", "bc-discrete", "--data", log, "--agent", "all", "--out",
                    os.path.join(work, "run"), "--steps", str(args.train_steps), "--no-progress",
                    "--no-tensorboard"]) == 0
        policy = load_policy(os.path.join(work, "run"))
        started = time.perf_counter()
        serial = kind.evaluate(policy, args.games, seed=0, opponent=args.opponent)
        runs = {"serial": {"seconds": time.perf_counter() - started, "result": serial}}
        os.environ.setdefault("RAY_TMPDIR", os.path.join(work, "ray"))
        from aql_agent.distributed import evaluate_parallel, start_ray

        started = time.perf_counter()
        ray = start_ray(2)
        ray_start = time.perf_counter() - started
        for round_ in (1, 2):  # Ray's own daemons are still starting during the first round
            for workers in (1, 2):
                started = time.perf_counter()
                result = evaluate_parallel(args.game, policy, args.games, seed=0, opponent=args.opponent,
                                           workers=workers, progress=False)
                seconds = time.perf_counter() - started
                assert result.pop("workers") == workers and result == serial, "parallel play changed the result"
                runs[f"ray, {workers} worker{'s' * (workers > 1)}, round {round_}"] = {"seconds": seconds,
                                                                                      "result": result}
        record_runs = {}
        started = time.perf_counter()
        kind.record(os.path.join(work, "serial"), args.opponent, "bt:easy", episodes=args.record_bench, seed=0,
                    progress=False)
        record_runs["serial"] = time.perf_counter() - started
        from aql_agent.distributed import record_parallel

        for workers in (1, 2):
            started = time.perf_counter()
            record_parallel(args.game, os.path.join(work, f"ray-{workers}"), args.opponent, "bt:easy",
                            episodes=args.record_bench, seed=0, workers=workers, progress=False)
            record_runs[f"ray, {workers} worker{'s' * (workers > 1)}"] = time.perf_counter() - started
        ray.shutdown()
    report = {"game": args.game, "opponent": args.opponent, "games": args.games, "cpus": os.cpu_count(),
              "ray_init_seconds": ray_start, "win_rate": serial["win_rate"],
              "runs": {name: {"seconds": run["seconds"], "games_per_second": args.games / run["seconds"]}
                       for name, run in runs.items()},
              "recording": {"games": args.record_bench, "players": f"{args.opponent} vs bt:easy",
                            "runs": {name: {"seconds": seconds, "games_per_second": args.record_bench / seconds,
                                            "speed_vs_serial": record_runs["serial"] / seconds}
                                     for name, seconds in record_runs.items()}}}
    base = report["runs"]["serial"]["seconds"]
    for run in report["runs"].values():
        run["speed_vs_serial"] = base / run["seconds"]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(report, f, indent=1)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 3))
    names = list(report["runs"])
    ax.barh(names, [report["runs"][n]["games_per_second"] for n in names], color="tab:green")
    ax.set_xlabel(f"evaluation: {args.game} games/s ({args.games} games vs {args.opponent}; same results)")
    names = list(report["recording"]["runs"])
    ax2.barh(names, [report["recording"]["runs"][n]["games_per_second"] for n in names], color="tab:purple")
    ax2.set_xlabel(f"recording: games/s ({args.record_bench} games, {args.opponent} vs bt:easy; same log)")
    fig.tight_layout()
    fig.savefig(args.out + ".png", dpi=110)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
