"""The README's demo, the whole story on moba-1v1: record -> train -> deploy -> fine-tune -> before/after.

1. record behaviour-tree games into replay logs (what `tools/record` does);
2. train discrete AQL from the logs (`aql train`);
3. deploy it over ZeroMQ (`aql deploy`, its own process) and let `tools/engine` (another process) play it
   against the medium-hard behaviour tree: the "before" win rate;
4. fine-tune it online through the same bridge with the `keep-behaviour` recipe, the engine's games recorded
   by the agent side (`aql finetune --through-bridge`);
5. deploy the fine-tuned checkpoint the same way: the "after" win rate; print the table, write a plot.

`quick=True` is the reduced mode CI runs (every step, tiny budgets). The default budget is chosen from
measured runs (docs/results.md#the-readme-demo): the 32 games of the fine-tuning harness's four bot pairings,
8000 offline updates (about where discrete AQL wins a quarter to a third of its games against bt:medium-hard,
and it loses them all with more offline training), then 100k online decisions (about 20 games) against
bt:medium-hard with the recipe that lifted such agents (`keep-behaviour`: the imitation network frozen, the
threshold loosened), two engine processes at a time. Seven to eight minutes on 2 cores (the "before" games are
played while fine-tuning runs); 20 games per before/after row, and greedy evaluations along fine-tuning for
the plot.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from aql_agent.errors import AqlError


def _budget(default: float, help: str) -> Any:
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class DemoBudget:
    """The demo's sizes; `aql demo --train-steps 10000 ...` overrides any of them."""

    games_per_pairing: int = _budget(8, "games recorded for each of the four behaviour-tree pairings")
    train_steps: int = _budget(8000, "offline updates")
    eval_games: int = _budget(20, "games the engine plays for each of the before and after win rates")
    finetune_steps: int = _budget(100_000, "online decisions while fine-tuning (a game is ~5000 of the agent's)")
    updates_per_step: float = _budget(0.05, "fine-tuning updates per online decision")
    curve_games: int = _budget(6, "greedy games per evaluation along fine-tuning (the plot's curve)")


QUICK = DemoBudget(games_per_pairing=1, train_steps=200, eval_games=1, finetune_steps=1, updates_per_step=0.02,
                   curve_games=1)
#: benchmarks/figure2.py's pairings (and seeds): the demo's data is the data of the fine-tuning runs it follows.
PAIRINGS = (("bt:hard", "bt:medium"), ("bt:hard", "bt:easy"), ("bt:medium", "bt:easy"), ("bt:medium", "bt:medium"))
#: The opponent the offline agent starts below 50% against, and the recipe that lifted such agents above it.
OPPONENT = "bt:medium-hard"
RECIPE = "keep-behaviour"
EXPLORATION = (0.005, 0.0)  # epsilon over legal actions, decaying to greedy over the first half


def _banner(text: str, started: float) -> None:
    """A stage's heading, with the time since the demo started (so a user sees where the minutes go)."""
    minutes, seconds = divmod(int(time.perf_counter() - started), 60)
    print(f"\n=== {text} " + "=" * max(0, 70 - len(text)) + f" [{minutes}:{seconds:02d}]", flush=True)


def deploy_and_play(checkpoint: str, games: int, opponent: str, seed: int, engines: int = 2) -> dict[str, Any]:
    """`aql deploy` the checkpoint in one process, `engines` `tools/engine` processes play `games` against
    `opponent` at once (consecutive parts, each starting on an even game so the sides alternate as one engine's
    do); returns their outcomes added up, with each engine's report."""
    from aql_agent.adapters.games import win_record

    agent = subprocess.Popen([sys.executable, "-m", "aql_agent", "deploy", "--checkpoint", checkpoint, "--bind",
                              "tcp://127.0.0.1:*"], stdout=subprocess.PIPE, text=True)
    try:
        line = agent.stdout.readline()
        if not line:
            raise AqlError(f"aql deploy exited with {agent.wait()} before serving {checkpoint}")
        endpoint = json.loads(line)["endpoint"]
        first = min(games, 2 * -(-games // (2 * engines)))  # games per engine, even
        parts = [(start, min(first, games - start)) for start in range(0, games, first)]
        playing = [subprocess.Popen([sys.executable, "-m", "aql_agent", "engine", "--connect", endpoint, "--games",
                                     str(count), "--opponent", opponent, "--seed", str(seed + start), "--no-progress"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                   for start, count in parts]
        reports = []
        for engine in playing:
            output, errors = engine.communicate()
            if engine.returncode != 0:
                raise AqlError(f"tools/engine failed: {errors[-2000:]}")
            reports.append(json.loads(output))
    finally:
        agent.terminate()
        agent.wait(30)
    bridges = [report["bridge"] for report in reports]
    bridge = {key: sum(b[key] for b in bridges) for key, value in bridges[0].items() if isinstance(value, int)}
    bridge.update({key: [b[key] for b in bridges] for key in ("latency_ms_p50", "latency_ms_p99")})  # per engine
    record = win_record(*(sum(report[key] for report in reports) for key in ("wins", "losses", "draws")))
    return {"opponent": opponent, **record, "bridge": bridge, "engines": reports}


def plot(before: dict, after: dict, evaluations: str, path: str) -> None:
    import csv

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for x, (name, report) in enumerate((("offline", before), ("fine-tuned", after))):
        low, high = report["win_rate_ci95"]
        left.bar(x, report["win_rate"], color=("tab:blue", "tab:green")[x])
        left.errorbar(x, report["win_rate"], [[report["win_rate"] - low], [high - report["win_rate"]]], color="k",
                      capsize=4)
    left.set_xticks([0, 1], ["offline", "fine-tuned"])
    left.set(ylim=(0, 1), ylabel=f"win rate vs {before['opponent']}",
             title=f"over the bridge, {before['games']} games each (95% CI)")
    with open(evaluations, newline="") as f:
        rows = list(csv.DictReader(f))
    steps = [int(r["step"]) for r in rows]
    rates = np.array([float(r["win_rate"]) for r in rows])
    intervals = np.array([[rate - float(r["win_rate_low"]), float(r["win_rate_high"]) - rate]
                          for rate, r in zip(rates, rows)]).T
    right.errorbar(steps, rates, intervals, fmt="o-", capsize=4)
    right.set(xlabel="online decisions", ylabel="win rate, greedy (95% CI)", ylim=(-0.05, 1.05),
              title=f"evaluations along fine-tuning, {rows[0]['games']} games each")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


DEMO_FILES = frozenset({"logs", "offline", "finetuned", "before-after.json", "before-after.png"})


def _clear_earlier_demo(out: str) -> None:
    """Re-running the demo replaces its own earlier files; a folder holding anything else is left alone."""
    if not os.path.isdir(out):
        if os.path.exists(out):
            raise AqlError(f"--out {out} is a file: pass a folder for the demo's files")
        return
    entries = set(os.listdir(out))
    if entries - DEMO_FILES:
        raise AqlError(f"--out {out} holds files the demo did not write ({', '.join(sorted(entries - DEMO_FILES))}): "
                       f"pass another --out")
    if entries:
        print(f"replacing the earlier demo in {out}/", flush=True)
    for name in entries:
        path = os.path.join(out, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        else:
            os.remove(path)


def run_demo(out: str, quick: bool = False, seed: int = 0, opponent: str = OPPONENT,
             budget: DemoBudget | None = None) -> dict[str, Any]:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # these small networks update fastest on one thread; the engines use the other core
    try:
        return _story(out, seed, opponent, budget or (QUICK if quick else DemoBudget()), progress=not quick)
    finally:
        torch.set_num_threads(threads)


def _story(out: str, seed: int, opponent: str, budget: DemoBudget, progress: bool) -> dict[str, Any]:
    from aql_agent.finetune import FinetuneSettings, finetune
    from aql_agent.summary import format_summary, summarise
    from aql_agent.adapters.games import DEFAULT_GAME, game_kind
    from aql_agent.training import TrainSettings, train

    started = time.perf_counter()
    _clear_earlier_demo(out)
    logs = os.path.join(out, "logs")
    _banner(f"1. record behaviour-tree games -> {logs}/ (tools/record)", started)
    for index, (player, other) in enumerate(PAIRINGS):
        game_kind(DEFAULT_GAME).record(logs, player, other, episodes=budget.games_per_pairing,
                                       seed=seed + 1000 * index, overwrite=True, progress=progress)
    print(format_summary(summarise(logs)))

    offline = os.path.join(out, "offline")
    _banner(f"2. train discrete AQL on both sides of every game, {budget.train_steps} updates -> {offline}/", started)
    train(TrainSettings(algo="aql-discrete", data=logs, out=offline, steps=budget.train_steps, seed=seed,
                        agent="all", checkpoint_every=budget.train_steps, log_every=max(1, budget.train_steps // 20),
                        progress=progress))

    tuned = os.path.join(out, "finetuned")
    # The "before" games need only the offline checkpoint: they are played (two processes, mostly waiting on
    # each other) while fine-tuning runs, which saves their ~2 minutes on 2 cores.
    _banner(f"3. deploy it over ZeroMQ; tools/engine plays {budget.eval_games} games vs {opponent} (while 4. runs)",
            started)
    with ThreadPoolExecutor(1) as pool:
        playing = pool.submit(deploy_and_play, offline, budget.eval_games, opponent, seed + 50_000)
        _banner(f"4. fine-tune through the bridge ({RECIPE}): {budget.finetune_steps} online decisions -> {tuned}/",
                started)
        summary = finetune(FinetuneSettings(checkpoint=offline, env=DEFAULT_GAME, out=tuned, recipe=RECIPE,
                                            exploration=EXPLORATION[0], exploration_final=EXPLORATION[1],
                                            steps=budget.finetune_steps, updates_per_step=budget.updates_per_step,
                                            round_games=2, envs=2, opponent=opponent, through_bridge=True,
                                            eval_every=max(1, budget.finetune_steps // 2),
                                            eval_episodes=budget.curve_games, seed=seed, progress=progress))
        print(f"{summary['env_steps']} decisions in {len(os.listdir(os.path.join(tuned, 'online')))} rounds, "
              f"{summary['updates'] - budget.train_steps} updates, batches "
              f"{summary['drawn']['offline']} offline / {summary['drawn']['online']} online rows")
        before = playing.result()
    latency = " / ".join(f"{ms:.2f}" for ms in before["bridge"]["latency_ms_p50"])
    print(f"before: win rate {before['win_rate']:.2f} ({before['wins']}-{before['losses']}-{before['draws']}), "
          f"bridge p50 {latency} ms (per engine)")

    _banner(f"5. deploy the fine-tuned agent the same way: {budget.eval_games} games vs {opponent}", started)
    after = deploy_and_play(tuned, budget.eval_games, opponent, seed=seed + 50_000)

    result = {"opponent": opponent, "budget": dataclasses.asdict(budget), "offline": before, "finetuned": after}
    with open(os.path.join(out, "before-after.json"), "w") as f:
        json.dump(result, f, indent=2)
    figure = os.path.join(out, "before-after.png")
    try:
        plot(before, after, os.path.join(tuned, "eval.csv"), figure)
    except ImportError:
        figure = "(none: pip install matplotlib for it)"
    _banner("before / after (same engine, same seeds, over the bridge)", started)
    print(f"{'agent':<12} {'games':>5} {'wins':>5} {'win rate':>9}  95% interval")
    for name, report in (("offline", before), ("fine-tuned", after)):
        low, high = report["win_rate_ci95"]
        print(f"{name:<12} {report['games']:>5} {report['wins']:>5} {report['win_rate']:>9.2f}  "
              f"[{low:.2f}, {high:.2f}]")
    if opponent == OPPONENT and budget == DemoBudget():
        expected = (f"At this budget (about {budget.finetune_steps // 5000} online games against {opponent}) "
                    f"fine-tuning with {RECIPE} is expected to raise the win rate; {budget.eval_games} games per "
                    f"row give intervals about 0.4 wide, so one run may show more or less than the average gain")
    else:
        expected = "This run's opponent or budget differs from the default's, which the evidence is for"
    print(f"\nplot: {figure}\n{expected}: docs/results.md#the-readme-demo has the default on three seeds and the "
          f"runs it follows.\nMore games: aql eval --checkpoint {tuned} --env {DEFAULT_GAME} --games 40 "
          f"--opponent {opponent}")
    return result
