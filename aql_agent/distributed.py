"""Work spread over Ray: games (`aql eval/record/engine/finetune --workers N [--address ADDR]`), conversion,
data-parallel training and the benchmarks' grids.

Evaluation: games are Ray tasks; a worker process keeps the game kind and the policy, rebuilt from its
weights (numpy arrays put once in Ray's object store), for its next games. The driver hands out runs of game
numbers, shorter as fewer are left, and summarises the results in game order with the game kind's own
`summarise_games`; since game i depends only on `seed + i` (the policy's own draws included), the summary
equals the serial one whatever the number of workers: exactly for a policy that acts on one forward pass, and
to float rounding (~1e-9 relative) for one that ranks sampled proposals in a batched critic pass (BCQ, BEAR,
AQL), whose rounding follows torch's thread count (one in a Ray worker).

Ray is optional (`pip install 'aql-agent[ray]'`): only this module imports it, and only when called. Ray moves
objects between its processes with its own serialisation (pickle), so a Ray cluster is a trusted boundary:
never expose its ports beyond machines you control (docs/scale-out.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

from aql_agent.adapters.games import consecutive_parts
from aql_agent.errors import AqlError


def start_ray(workers: int, address: str | None = None) -> Any:
    """Join the cluster at `address` (`auto`: the one `ray start` runs on this machine), or start a local one
    with `workers` CPUs; returns the `ray` module."""
    try:
        import ray
    except ImportError:
        raise AqlError("--workers (and the benchmarks' --jobs) run on Ray, which is not installed: pip install "
                       "'aql-agent[ray]'") from None
    if ray.is_initialized():
        return ray
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local, loopback-only cluster of our own
    try:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                     object_store_memory=256 * 1024 * 1024)  # weights and recorded parts; more spills to disk
    except (ConnectionError, RuntimeError, ValueError) as error:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
        raise AqlError(f"cannot start or join {where}: {' '.join(str(error).split())[:300]} (start one with "
                       "`ray start --head`, or leave --address out)") from None
    return ray


def check_ray_flags(workers: int | None, address: str | None) -> None:
    """--workers in range, and --address only with --workers: checked where the values enter (the command
    line, the settings), before any slow loading."""
    if workers is not None:
        from aql_agent.errors import require_number

        require_number("--workers", workers, 1, 1024, whole=True)
    elif address is not None:
        raise AqlError("--address names the Ray cluster that --workers run on: give --workers too")


@contextlib.contextmanager
def _own_ctrl_c() -> Iterator[None]:
    """Around Ray Train's and Tune's `fit()`, which install a Ctrl-C handler of their own and leave it installed:
    a later Ctrl-C in this process would go to a finished run's controller instead of raising KeyboardInterrupt."""
    handler = signal.getsignal(signal.SIGINT)
    try:
        yield
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, handler)


def _result(ray: Any, future: Any, what: str) -> Any:
    """A task's or actor call's value; a failure on a worker becomes one AqlError (the worker's own message when
    it raised one)."""
    try:
        return ray.get(future)
    except ray.exceptions.RayError as error:
        cause = error.cause if isinstance(getattr(error, "cause", None), AqlError) else error
        raise AqlError(f"{what} failed on a worker: {' '.join(str(cause).split())[:400]}") from None


#: In a worker process: the game kind and policy of the evaluation it played last, so the next games of the
#: same evaluation (and of later ones with the same weights) skip rebuilding them.
_PLAYING: dict[str, Any] = {}


def _play_games(game: str, settings: dict[str, Any], weights: list[Any], numbers: list[int], seed: int,
                opponent: str | None) -> list[dict[str, Any]]:
    """A task: games `numbers` of an evaluation. Tasks, not actors: Ray keeps a task's worker process (torch
    and the game imported, the policy built) for the next task, where each actor would start a new process;
    `weights` is the policy's object reference in a list, so it is fetched once per process, not per task."""
    import json

    import ray
    import torch

    from aql_agent.adapters.games import game_kind
    from aql_agent.checkpoint import policy_from_weights

    key = json.dumps([weights[0].hex(), game, settings], sort_keys=True, default=str)
    if _PLAYING.get("key") != key:
        torch.set_num_threads(1)  # one CPU per task: threads would only fight over it
        _PLAYING.clear()
        _PLAYING.update(key=key, kind=game_kind(game, settings), policy=policy_from_weights(ray.get(weights[0])))
    return _PLAYING["kind"].play_games(_PLAYING["policy"], numbers, seed, opponent)


def evaluate_parallel(game: str, policy: Any, games: int, seed: int = 0, opponent: str | None = None, *,
                      workers: int = 2, address: str | None = None, settings: dict[str, Any] | None = None,
                      progress: bool = True) -> dict[str, Any]:
    """`game_kind(game).evaluate(policy, games, seed, opponent)`, its games spread over `workers` Ray workers:
    each free worker takes half its share of the games left (guided self-scheduling: long tasks first, so
    few round trips to the driver, then single games, so the workers finish together)."""
    from tqdm import tqdm

    from aql_agent.adapters.games import GameKind, game_kind
    from aql_agent.checkpoint import policy_weights
    from aql_agent.errors import require_number

    require_number("--workers", workers, 1, whole=True)
    require_number("--episodes/--games", games, 1, whole=True)
    kind = game_kind(game, settings)
    if type(kind).play_games is GameKind.play_games:  # a user's kind that only overrides `evaluate`
        raise AqlError(f"{game} evaluates its games in one piece (its kind has no play_games): run without --workers")
    kind.check_opponent(opponent)
    ray = start_ray(workers, address)
    weights = [ray.put(policy_weights(policy))]
    task = ray.remote(num_cpus=1)(_play_games)
    slots = min(workers, games)
    results: list[dict[str, Any]] = [{}] * games
    pending: dict[Any, range] = {}
    next_game = 0
    try:
        with tqdm(total=games, desc=f"{game} on {slots} workers", unit="game", disable=not progress) as bar:
            while next_game < games or pending:
                while next_game < games and len(pending) < slots:  # a share of what is left to each free worker
                    share = range(next_game, next_game + max(1, (games - next_game) // (2 * slots)))
                    pending[task.remote(game, dict(settings or {}), weights, list(share), seed, opponent)] = share
                    next_game = share.stop
                (done,), _ = ray.wait(list(pending), num_returns=1)
                share = pending.pop(done)
                results[share.start:share.stop] = _result(ray, done, f"games {share.start}-{share.stop - 1}")
                bar.update(len(share))
    finally:  # a failed game: the others are not waited for
        for future in pending:
            ray.cancel(future)
    summary = kind.summarise_games(results, opponent)
    summary["workers"] = slots
    return summary


def _record_part(game: str, settings: dict[str, Any], player: str, opponent: str | None, episodes: int, seed: int,
                 side: str | None, options: dict[str, Any], compression: str) -> tuple[str, bytes]:
    """On a worker: record `episodes` episodes from `seed` into a scratch folder; the log's name and bytes
    (bytes, not a path: the worker's disk may be another machine's)."""
    import tempfile

    import torch

    from aql_agent.adapters.games import game_kind

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch:
        path = game_kind(game, settings).record(scratch, player, opponent, episodes=episodes, seed=seed, side=side,
                                                options=options, compression=compression, progress=False)
        with open(path, "rb") as f:
            return os.path.basename(path), f.read()


def record_parallel(game: str, out_dir: str, player: str, opponent: str | None = None, *, episodes: int = 1,
                    seed: int = 0, side: str | None = None, options: dict[str, Any] | None = None,
                    compression: str = "none", overwrite: bool = False, workers: int = 2,
                    address: str | None = None, settings: dict[str, Any] | None = None,
                    progress: bool = True) -> str:
    """`game_kind(game).record(...)` with the episodes split into `workers` consecutive parts recorded on Ray
    and joined, in episode order, into the one log the serial command writes (same name, same steps)."""
    import shutil
    import tempfile

    from tqdm import tqdm

    from aql_agent.adapters.games import game_kind
    from aql_agent.errors import require_number
    from aql_agent.replay import join_logs

    require_number("--workers", workers, 1, whole=True)
    require_number("--episodes", episodes, 1, whole=True)
    if not isinstance(player, str) or player == "human" or opponent == "human":
        raise AqlError("--workers records bots, random players and agents; a human plays in one process")
    kind = game_kind(game, settings)
    kind.check_opponent(opponent)
    if player != "random":
        kind.make_player(player, seed)  # refuse an unknown player before starting workers
    ray = start_ray(workers, address)
    parts = consecutive_parts(episodes, workers)
    task = ray.remote(num_cpus=1)(_record_part)
    futures = [task.remote(game, dict(settings or {}), player, opponent, len(part), seed + part.start, side,
                           dict(options or {}), compression) for part in parts]
    os.makedirs(out_dir, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=".parts-", dir=out_dir)
    try:
        paths = []
        with tqdm(total=len(parts), desc=f"recording {game} on {len(parts)} workers", unit="part",
                  disable=not progress) as bar:
            for i, future in enumerate(futures):
                name, data = _result(ray, future, f"recording part {i}")
                paths.append(os.path.join(scratch, f"{i}-{name}"))
                with open(paths[-1], "wb") as f:
                    f.write(data)
                bar.update(1)
        # part 0 starts at `seed`: its name and header are the serial ones
        target = os.path.join(out_dir, os.path.basename(paths[0]).partition("-")[2])
        if os.path.exists(target) and not overwrite:
            raise AqlError(f"{target} exists; pass --overwrite to replace it or choose another --out or --seed")
        if len(paths) == 1:  # one worker recorded the serial log itself: nothing to join
            os.replace(paths[0], target)
            return target
        return join_logs(paths, target, compression=compression, overwrite=overwrite,
                         recorder={"workers": len(parts)})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _record_round_part(game: str, weights: dict[str, Any], who: dict[str, Any], opponent: str | None,
                       numbers: list[int], seed: int, side: str) -> list[tuple[str, bytes]]:
    """On a worker: games `numbers` of a fine-tuning round (`games.record_exploring_games`), each log's name and
    bytes."""
    import tempfile

    import torch

    from aql_agent.adapters.games import game_kind, record_exploring_games
    from aql_agent.checkpoint import policy_from_weights

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch:
        paths = record_exploring_games(game_kind(game), policy_from_weights(weights), who, opponent, numbers, seed,
                                       side, scratch)
        logs = []
        for path in paths:
            with open(path, "rb") as f:
                logs.append((os.path.basename(path), f.read()))
        return logs


class RoundsOnRay:
    """A multi-agent game's fine-tuning rounds (`aql finetune --workers N`) with each round's games recorded on
    Ray workers: the learner's weights go to the object store once per round, the games are split into
    consecutive parts, and the logs come back as bytes, so the round's log is the one one process records."""

    def __init__(self, game: str, workers: int, address: str | None = None):
        self.game, self.workers = game, workers
        self.ray = start_ray(workers, address)
        self.task = self.ray.remote(num_cpus=1)(_record_round_part)

    def __call__(self, kind: Any, policy: Any, who: dict[str, Any], opponent: str | None, numbers: Any, seed: int,
                 side: str, out_dir: str) -> list[str]:
        from aql_agent.checkpoint import policy_weights

        numbers = list(numbers)
        weights = self.ray.put(policy_weights(policy))
        parts = [numbers[part.start:part.stop] for part in consecutive_parts(len(numbers), self.workers)]
        futures = [self.task.remote(self.game, weights, dict(who), opponent, part, seed, side) for part in parts]
        paths = []
        for i, (part, future) in enumerate(zip(parts, futures)):
            for number, (name, data) in zip(part, _result(self.ray, future, f"fine-tuning games, part {i}")):
                folder = os.path.join(out_dir, f"game-{number:05d}")
                os.makedirs(folder, exist_ok=True)
                paths.append(os.path.join(folder, name))
                with open(paths[-1], "wb") as f:
                    f.write(data)
        return paths


def _this_node(ray: Any) -> Any:
    """A scheduling strategy that keeps a task on the driver's machine (for what reaches it over loopback)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)


def _engine_part(game: str, settings: dict[str, Any], options: dict[str, Any], numbers: list[int],
                 opponent: str | None, side: str, seed: int) -> tuple[list[dict[str, Any]], dict[str, int], list[float],
                                                                  dict[str, Any]]:
    """On a worker: one engine session playing games `numbers`; their results and the client's figures."""
    from aql_agent.adapters.bridge.engine import engine_client
    from aql_agent.adapters.games import game_kind

    kind = game_kind(game, settings)
    client = engine_client(kind.bridge_spec(), f"aql engine ({kind.name}) on a Ray worker", **options)
    client.connect()
    try:
        results = kind.bridge_games(client, numbers, opponent, side, seed)
    finally:
        client.close()
    return results, client.stats, client.latencies, client.welcome


def engines_parallel(kind: Any, settings: dict[str, Any], options: dict[str, Any], games: int,
                     opponent: str | None, side: str, seed: int, workers: int, address: str | None = None
                     ) -> tuple[dict[str, Any], dict[str, int], list[float], dict[str, Any]]:
    """`aql engine --workers N`: the games in N consecutive parts, each played by an engine session on a Ray
    worker against the agent at `options["endpoint"]`; returns the report one engine gives (summarised in game
    order), the sessions' bridge figures added up, their latencies, and the agent's welcome. Workers run on
    this machine when the endpoint is loopback or ipc (only it can reach the agent there)."""
    from aql_agent.adapters.games import GameKind

    if type(kind).bridge_games is GameKind.bridge_games:  # a user's kind that only overrides play_over_bridge
        raise AqlError(f"{kind.name} plays over the bridge in one piece (its kind has no bridge_games): run without "
                       "--workers")
    from aql_agent.adapters.bridge.protocol import is_loopback

    ray = start_ray(workers, address)
    pinned = {"scheduling_strategy": _this_node(ray)} if is_loopback(options["endpoint"]) else {}
    task = ray.remote(num_cpus=1, **pinned)(_engine_part)
    parts = consecutive_parts(games, workers)
    futures = [task.remote(kind.name, dict(settings), dict(options), list(part), opponent, side, seed)
               for part in parts]
    results, stats, latencies, welcome = [], {}, [], {}
    for i, future in enumerate(futures):
        part_results, part_stats, part_latencies, welcome = _result(ray, future, f"engine {i}")
        results += part_results
        latencies += part_latencies
        stats = {key: stats.get(key, 0) + value for key, value in part_stats.items()}
    return {**kind.bridge_report(results, opponent, side), "workers": len(parts)}, stats, latencies, welcome


def _run_engine(command: list[str]) -> tuple[int, str, str]:
    """One `aql engine` process on a worker: its exit code, its report and the tail of its errors."""
    import subprocess

    done = subprocess.run(command, capture_output=True, text=True)
    return done.returncode, done.stdout, done.stderr[-2000:]


class EnginesOnRay:
    """`aql engine` processes on Ray workers (`aql finetune --through-bridge --workers N`), one per command,
    all on this machine's node: they connect to the agent server this process binds on loopback, which a
    worker on another machine cannot reach (engines of your own elsewhere connect to `aql deploy --bind`)."""

    def __init__(self, workers: int, address: str | None = None):
        self.ray = start_ray(workers, address)
        self.task = self.ray.remote(num_cpus=1, scheduling_strategy=_this_node(self.ray))(_run_engine)

    def __call__(self, commands: list[list[str]]) -> EnginesOnRay:
        self.futures = [self.task.remote(command) for command in commands]
        return self

    def finished(self) -> bool:
        done, _ = self.ray.wait(self.futures, num_returns=len(self.futures), timeout=0)
        return len(done) == len(self.futures)

    def stop(self) -> None:
        """Cancel the engines still running (after an interruption)."""
        for future in self.futures:
            self.ray.cancel(future, force=True)

    def reports(self, what: str) -> list[dict[str, Any]]:
        import json

        reports = []
        for i, future in enumerate(self.futures):
            code, output, errors = _result(self.ray, future, f"{what}, engine {i}")
            if code != 0:
                raise AqlError(f"aql engine failed in {what} (engine {i}): {errors}")
            reports.append(json.loads(output))
        return reports


class _EnvWorker:
    """Some envs of a gymnasium env's fine-tuning rounds (`adapters.gym.StepCollector`s), kept across rounds."""

    def __init__(self, env_id: str, seeds: list[int], exploration: float | None):
        import torch

        from aql_agent.adapters.gym import StepCollector

        torch.set_num_threads(1)
        self.collectors = [StepCollector(env_id, seed, exploration) for seed in seeds]

    def play(self, weights: dict[str, Any], steps: list[int]) -> list[Any]:
        from aql_agent.checkpoint import policy_from_weights

        policy = policy_from_weights(weights)
        return [collector.play(policy, part) if part else None for collector, part in zip(self.collectors, steps)]

    def state(self) -> list[dict[str, Any]]:
        return [collector.state() for collector in self.collectors]

    def restore(self, states: list[dict[str, Any]]) -> list[bool]:
        return [collector.restore(state) for collector, state in zip(self.collectors, states)]


class StepsOnRay:
    """A gymnasium env's fine-tuning rounds (`aql finetune --workers N`) with the envs of `collectors` on Ray
    workers, env k on worker k mod N, each kept across rounds: every env plays what it would play in one
    process (its seed, its own random streams, the same weights), so the round is the same."""

    def __init__(self, collectors: Any, workers: int, address: str | None = None):
        from aql_agent.adapters.gym import ENV_SEED_STRIDE

        envs = len(collectors.collectors)
        collectors.close()  # the envs live on the workers
        self.ray = start_ray(workers, address)
        self.envs = envs
        self.groups = [list(range(k, envs, workers)) for k in range(min(workers, envs))]
        actor = self.ray.remote(num_cpus=1)(_EnvWorker)
        self.actors = [actor.remote(collectors.env_id, [collectors.seed + ENV_SEED_STRIDE * k for k in group],
                                    collectors.exploration) for group in self.groups]

    def play(self, policy: Any, steps: int) -> Any:
        from aql_agent.adapters.gym import merge_rounds, split_steps
        from aql_agent.checkpoint import policy_weights

        parts = split_steps(steps, self.envs)
        weights = self.ray.put(policy_weights(policy))
        futures = [actor.play.remote(weights, [parts[k] for k in group]) for actor, group in
                   zip(self.actors, self.groups)]
        rounds: list[Any] = [None] * self.envs
        for group, future in zip(self.groups, futures):
            for k, played in zip(group, _result(self.ray, future, "online play")):
                rounds[k] = played
        return merge_rounds([played for played in rounds if played is not None])

    def state(self) -> list[dict[str, Any]]:
        """Each env's `StepCollector.state`, in env order, gathered from the workers."""
        states: list[Any] = [None] * self.envs
        for group, future in zip(self.groups, [actor.state.remote() for actor in self.actors]):
            for k, state in zip(group, _result(self.ray, future, "online play's state")):
                states[k] = state
        return states

    def restore(self, states: list[dict[str, Any]]) -> bool:
        """Each worker's envs take over their states (`StepCollectors.restore`)."""
        from aql_agent.adapters.gym import require_same_envs

        require_same_envs(states, self.envs)
        futures = [actor.restore.remote([states[k] for k in group]) for actor, group in zip(self.actors, self.groups)]
        replayed = [_result(self.ray, future, "online play's state") for future in futures]
        return all(all(exact) for exact in replayed)

    def close(self) -> None:
        for actor in self.actors:  # an actor holds a CPU until it is killed
            self.ray.kill(actor)


def _convert_part(logs: list[str], agent: str | None) -> tuple[bytes, int, list[str]]:
    """On a worker: one shard's .npz bytes from consecutive logs (bytes: the worker may be another machine,
    though it must see the logs), its rows and sources."""
    import io

    from aql_agent.data import TransitionDataset
    from aql_agent.data.formats import save_npz

    dataset = TransitionDataset.from_log(logs, agent=agent)
    buffer = io.BytesIO()
    save_npz(dataset, buffer)
    return buffer.getvalue(), len(dataset), list(logs)


def convert_parallel(source: str, destination: str, agent: str | None = None, *, workers: int = 2,
                     address: str | None = None, shards: int | None = None, overwrite: bool = False,
                     progress: bool = True) -> str:
    """A folder of replay logs -> a sharded dataset folder (`aql_agent.data.shards`), the logs converted on Ray
    workers, consecutive logs per shard; the shards in order hold exactly the serial conversion's rows."""
    import shutil

    import numpy as np
    from tqdm import tqdm

    from aql_agent.data.dataset import log_paths
    from aql_agent.data.shards import MANIFEST, array_keys, write_manifest
    from aql_agent.errors import require_number

    require_number("--workers", workers, 1, whole=True)
    if destination.lower().endswith((".npz", ".hdf5", ".h5", ".aqlog")):
        raise AqlError(f"--workers writes a folder of .npz shards, not one file: give DST as a folder name, not "
                       f"{destination!r}")
    if os.path.exists(destination):
        if not overwrite:
            raise AqlError(f"{destination} exists (pass --overwrite to replace it)")
        if os.path.isfile(destination) or (os.listdir(destination) and not os.path.exists(
                os.path.join(destination, MANIFEST))):
            raise AqlError(f"{destination} is not a sharded dataset folder: will not replace it")
        shutil.rmtree(destination)
    logs = log_paths(source)
    count = min(len(logs), shards or 4 * workers)  # a few shards per worker: whoever finishes first takes more
    sizes = np.array([os.path.getsize(path) for path in logs], dtype=float)
    edges = np.searchsorted(np.cumsum(sizes), sizes.sum() * np.arange(1, count) / count)  # by bytes, in order
    groups = [list(g) for g in np.split(np.array(logs, dtype=object), np.unique(np.clip(edges, 1, len(logs) - 1)))
              if len(g)]
    ray = start_ray(workers, address)
    task = ray.remote(num_cpus=1)(_convert_part)
    futures = [task.remote([os.path.abspath(path) for path in group], agent) for group in groups]
    os.makedirs(destination)
    entries = []
    try:
        with tqdm(total=len(groups), desc=f"converting on {workers} workers", unit="shard",
                  disable=not progress) as bar:
            for index, future in enumerate(futures):
                data, rows, sources = _result(ray, future, f"converting shard {index}")
                name = f"shard-{index:05d}.npz"
                with open(os.path.join(destination, name), "wb") as f:
                    f.write(data)
                entries.append({"file": name, "rows": rows, "sources": sources})
                bar.update(1)
    except BaseException:
        shutil.rmtree(destination, ignore_errors=True)  # no half-written dataset left behind
        raise
    write_manifest(destination, entries, array_keys(os.path.join(destination, entries[0]["file"])))
    return destination


def run_trials(configs: list[dict[str, Any]], function: Any, *, concurrent: int, storage: str, name: str,
               address: str | None = None, gpus_per_trial: float = 0) -> list[str]:
    """Each config one Ray Tune trial calling `function(config)` (which returns a line saying what it did) in
    this process's working folder, with one CPU (and `gpus_per_trial`), `concurrent` at a time; the benchmark
    grids' runner. Raises once every trial has ended if any failed."""
    start_ray(concurrent, address)
    from ray import tune

    here = os.getcwd()

    def trial(config: dict[str, Any]) -> None:
        os.chdir(here)  # Tune starts a trial in a folder of its own; the grid's paths are relative to ours
        tune.report({"message": function(config["config"])})

    tuner = tune.Tuner(tune.with_resources(trial, {"cpu": 1, "gpu": gpus_per_trial}),
                       param_space={"config": tune.grid_search(configs)},
                       tune_config=tune.TuneConfig(max_concurrent_trials=concurrent),
                       run_config=tune.RunConfig(name=name, storage_path=os.path.abspath(storage), verbose=0))
    messages, failed = [], []
    with _own_ctrl_c():
        results = tuner.fit()
    for result in results:
        if result.error is not None:
            failed.append(result.error)
        messages.append(result.metrics.get("message") or f"failed: {result.error}")
    if failed:
        raise AqlError(f"{len(failed)} of {len(configs)} trials failed; the first: {failed[0]}")
    return messages


@dataclasses.dataclass
class _Outbox:
    """Where the leader replica leaves training's summary for the driver (an actor: the leader may run on
    another machine)."""

    summary: dict[str, Any] | None = None

    def put(self, summary: dict[str, Any]) -> None:
        self.summary = summary

    def get(self) -> dict[str, Any] | None:
        return self.summary


def _train_replica(config: dict[str, Any]) -> None:
    """On a Ray Train worker (torch.distributed already started): one replica of `train`. The leader trains
    into the run folder; the others into a scratch folder of their own, which goes when they finish."""
    import tempfile

    import ray.train
    import torch

    from aql_agent.data_parallel import Replica
    from aql_agent.training import TrainSettings, train

    context = ray.train.get_context()
    torch.set_num_threads(config["threads"])
    settings = TrainSettings(**config["settings"])
    device = settings.device
    if device.startswith("cuda"):  # Ray gives each worker its own GPU
        device = str(ray.train.torch.get_device())
        settings = dataclasses.replace(settings, device=device)
    replica = Replica(context.get_world_rank(), context.get_world_size(), device)
    if replica.leader:
        ray.get(config["outbox"].put.remote(train(settings, replica)))
        return
    with tempfile.TemporaryDirectory(prefix="aql-replica-") as scratch:
        train(dataclasses.replace(settings, out=scratch, resume=False, progress=False, tensorboard=False,
                                  checkpoint_every=settings.steps), replica)


def train_parallel(settings: Any, *, workers: int, address: str | None = None) -> dict[str, Any]:
    """`training.train(settings)` data-parallel on `workers` Ray Train workers (one CPU, or one GPU with
    `settings.device` cuda, each) at the same global batch: the result equals single-process training up to
    float rounding, and the run folder is an ordinary one. The data and the run folder must be on storage every
    worker sees (one machine, or a shared file system)."""
    import tempfile

    from aql_agent.errors import require_number
    from aql_agent.learners import ALGORITHMS

    require_number("--workers", workers, 1, 1024, whole=True)
    learner_class, variant = ALGORITHMS[settings.algo]
    batch_size = learner_class.config_class.from_dict({**variant, **settings.learner}).batch_size
    if batch_size % workers:
        raise AqlError(f"--workers {workers} does not divide the batch size {batch_size}: each worker learns from "
                       f"an equal part of every batch; pick --workers dividing it or --set batch_size=...")
    settings = dataclasses.replace(settings, data=os.path.abspath(settings.data), out=os.path.abspath(settings.out))
    gpu = settings.device.startswith("cuda")
    ray = start_ray(workers, address)
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    outbox = ray.remote(num_cpus=0)(_Outbox).remote()
    with tempfile.TemporaryDirectory(prefix="aql-ray-train-") as storage:
        trainer = TorchTrainer(
            _train_replica,
            train_loop_config={"settings": dataclasses.asdict(settings), "outbox": outbox, "threads": 1},
            torch_config=TorchConfig(backend="nccl" if gpu else "gloo"),
            scaling_config=ScalingConfig(num_workers=workers, use_gpu=gpu, resources_per_worker=(
                {"CPU": 1, "GPU": 1} if gpu else {"CPU": 1})),
            run_config=RunConfig(name="aql-train", storage_path=storage, failure_config=FailureConfig(max_failures=0)))
        try:
            with _own_ctrl_c():
                trainer.fit()
        except Exception as error:  # noqa: BLE001 - Ray wraps a replica's failure in its own exception types
            raise AqlError(f"training on {workers} workers failed: {_worker_message(error)}") from None
    summary = _result(ray, outbox.get.remote(), "collecting the summary")
    ray.kill(outbox)
    summary["workers"] = workers
    return summary


def _worker_message(error: BaseException) -> str:
    """What failed on a worker, in one line: a replica's own AqlError when it raised one (Ray Train keeps each
    rank's exception in `worker_failures`, the leader's first)."""
    failures = getattr(error, "worker_failures", None) or {}
    for _, failure in sorted(failures.items()):
        cause = failure
        while cause is not None and not isinstance(cause, AqlError):
            cause = cause.__cause__
        if cause is not None:
            return str(cause)
    first = next(iter(sorted(failures.items())), (None, error))[1]
    return " ".join(str(first).split())[:400]
