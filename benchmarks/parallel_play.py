"""Evaluation and recording games per second: serial, and on Ray with 1 and 2 workers, side by side in one run.

    python benchmarks/parallel_play.py --games 40 --rounds 3    # moba-1v1, a discrete agent against bt:medium

A discrete BC agent is trained from a few recorded bot games (a real checkpoint, so the policy's cost is in
the figures), then evaluated three ways on the same games (same seeds): `kind.evaluate` in this process,
and `aql_agent.distributed.evaluate_parallel` on a local Ray with 1 and 2 workers. The results must be equal.
Times are wall-clock. `ray.init` is timed apart, and so is the workers' cold start (a game on each new
worker process: imports, the policy rebuilt from its weights), which a worker pays once: games are Ray tasks,
and a worker process keeps torch, the game and the policy for the next ones. This machine's game times wander
by tens of percent from minute to minute, so the three ways run interleaved in `--rounds` rounds (serial,
1 worker, 2 workers, then again) and each figure is a mean with its spread over rounds; the 1-worker overhead
is also given per round against that round's serial run; then `--pairs` back-to-back pairs of short evaluations
(serial and 1 worker, order alternating) give the overhead with the drift cancelled. Writes
benchmarks/results/parallel_play.json and .png.
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


def paired_overhead(kind, policy, game: str, opponent: str, games: int, pairs: int) -> dict:
    """The 1-worker overhead measured in `pairs` back-to-back pairs of short evaluations (in this process, then
    on one warm worker, the order swapped every pair): each pair's ratio sees the same state of the machine, so
    its drift cancels out of the paired figures far better than out of minutes-long rounds."""
    import statistics

    from aql_agent.distributed import evaluate_parallel

    ratios = []
    for pair in range(pairs):
        times = {}
        for way in (("serial", "worker") if pair % 2 == 0 else ("worker", "serial")):
            started = time.perf_counter()
            if way == "serial":
                kind.evaluate(policy, games, seed=pair * games, opponent=opponent)
            else:
                evaluate_parallel(game, policy, games, seed=pair * games, opponent=opponent, workers=1, progress=False)
            times[way] = time.perf_counter() - started
        ratios.append(times["worker"] / times["serial"] - 1)
    ordered = sorted(ratios)
    return {"pairs": pairs, "games_per_evaluation": games, "overheads": ratios,
            "median": statistics.median(ratios), "mean": statistics.fmean(ratios),
            "std": statistics.stdev(ratios) if pairs > 1 else 0.0,
            "middle_half": [ordered[pairs // 4], ordered[(3 * pairs) // 4]]}


def mean_std(values: list[float]) -> dict:
    import numpy as np

    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            "values": values}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--game", default="moba-1v1")
    parser.add_argument("--opponent", default="bt:medium")
    parser.add_argument("--games", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions of the three ways")
    parser.add_argument("--record-games", type=int, default=4, help="bot games the agent is trained from")
    parser.add_argument("--train-steps", type=int, default=500)
    parser.add_argument("--record-bench", type=int, default=16, help="bot-vs-bot games recorded per timing")
    parser.add_argument("--pairs", type=int, default=12, help="paired short evaluations timing the 1-worker overhead")
    parser.add_argument("--pair-games", type=int, default=6, help="games per evaluation of a pair")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "parallel_play"), help="output stem")
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_num_threads(1)
    kind = game_kind(args.game)
    ways = ["serial", "ray, 1 worker", "ray, 2 workers"]
    with tempfile.TemporaryDirectory() as work:
        log = kind.record(work, args.opponent, episodes=args.record_games, seed=1000, progress=False)
        assert aql(["train", "--algo", "bc-discrete", "--data", log, "--agent", "all", "--out",
                    os.path.join(work, "run"), "--steps", str(args.train_steps), "--no-progress",
                    "--no-tensorboard"]) == 0
        policy = load_policy(os.path.join(work, "run"))
        os.environ.setdefault("RAY_TMPDIR", os.path.join(work, "ray"))
        from aql_agent.distributed import evaluate_parallel, record_parallel, start_ray

        started = time.perf_counter()
        ray = start_ray(2)
        ray_start = time.perf_counter() - started
        started = time.perf_counter()
        serial = kind.evaluate(policy, 1, seed=0, opponent=args.opponent)  # warm: imports, first game
        first_game_here = time.perf_counter() - started
        started = time.perf_counter()
        evaluate_parallel(args.game, policy, 2, seed=0, opponent=args.opponent, workers=2, progress=False)
        first_games_on_workers = time.perf_counter() - started  # both worker processes start and play a game
        evaluation = {way: [] for way in ways}
        recording = {way: [] for way in ways}
        for round_ in range(args.rounds):
            for way in ways:
                workers = ways.index(way)
                started = time.perf_counter()
                if workers == 0:
                    serial = kind.evaluate(policy, args.games, seed=0, opponent=args.opponent)
                    result = dict(serial)
                else:
                    result = evaluate_parallel(args.game, policy, args.games, seed=0, opponent=args.opponent,
                                               workers=workers, progress=False)
                    assert result.pop("workers") == workers and result == serial, "parallel play changed the result"
                evaluation[way].append(time.perf_counter() - started)
                started = time.perf_counter()
                target = os.path.join(work, f"record-{round_}-{workers}")
                if workers == 0:
                    kind.record(target, args.opponent, "bt:easy", episodes=args.record_bench, seed=0, progress=False)
                else:
                    record_parallel(args.game, target, args.opponent, "bt:easy", episodes=args.record_bench, seed=0,
                                    workers=workers, progress=False)
                recording[way].append(time.perf_counter() - started)
            print(f"round {round_}: evaluation {[round(evaluation[w][-1], 1) for w in ways]} s, recording "
                  f"{[round(recording[w][-1], 1) for w in ways]} s", flush=True)
        pairs = paired_overhead(kind, policy, args.game, args.opponent, args.pair_games, args.pairs)
        ray.shutdown()

    def summarise(times: dict[str, list[float]], games: int) -> dict:
        out = {}
        for way in ways:
            out[way] = {"seconds": mean_std(times[way]),
                        "games_per_second": mean_std([games / t for t in times[way]]),
                        "speed_vs_serial": mean_std([s / t for s, t in zip(times["serial"], times[way])])}
        out["ray, 1 worker"]["overhead_vs_serial"] = mean_std(
            [t / s - 1 for s, t in zip(times["serial"], times["ray, 1 worker"])])
        return out

    report = {"game": args.game, "opponent": args.opponent, "games": args.games, "rounds": args.rounds,
              "cpus": os.cpu_count(), "ray_init_seconds": ray_start, "win_rate": serial["win_rate"],
              "cold_start": {"first_game_in_process_seconds": first_game_here,
                             "first_game_on_each_of_2_new_workers_seconds": first_games_on_workers},
              "evaluation": summarise(evaluation, args.games),
              "recording": {"games": args.record_bench, "players": f"{args.opponent} vs bt:easy",
                            **summarise(recording, args.record_bench)},
              "paired_overhead": pairs}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(report, f, indent=1)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 3))
    for ax, (part, colour, label) in zip(axes, (
            ("evaluation", "tab:green", f"evaluation: {args.game} games/s ({args.games} games vs {args.opponent}; "
                                        "same results)"),
            ("recording", "tab:purple", f"recording: games/s ({args.record_bench} games, {args.opponent} vs bt:easy; "
                                        "same log)"))):
        rates = [report[part][way]["games_per_second"] for way in ways]
        ax.barh(ways, [r["mean"] for r in rates], xerr=[r["std"] for r in rates], color=colour)
        ax.set_xlabel(label + f", mean +/- std of {args.rounds} rounds")
    fig.tight_layout()
    fig.savefig(args.out + ".png", dpi=110)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
