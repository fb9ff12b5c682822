"""The `aql` command: convert, inspect, train, finetune, eval, record, make-dataset, deploy, engine, export, demo."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import threading
import warnings
from collections.abc import Sequence
from typing import NoReturn

from aql_agent import __version__
from aql_agent.adapters.games import DEFAULT_GAME
from aql_agent.demo import OPPONENT as DEMO_OPPONENT, QUICK, DemoBudget
from aql_agent.errors import AqlError, Terminated
from aql_agent.flags import add_settings_flags, settings_from_args


def _convert(args: argparse.Namespace) -> int:
    from aql_agent.data.formats import convert
    from aql_agent.summary import format_summary, summarise

    _check_ray_flags(args)
    if args.workers is not None:
        if args.compression != "none":
            raise AqlError("--workers writes .npz shards; --compression is for replay-log destinations")
        from aql_agent.distributed import convert_parallel

        convert_parallel(args.source, args.destination, agent=args.agent, workers=args.workers,
                         address=args.address, overwrite=args.overwrite)
    else:
        convert(args.source, args.destination, agent=args.agent, compression=args.compression,
                overwrite=args.overwrite, progress=True)
    print(f"wrote {args.destination}")
    print(format_summary(summarise(args.destination)))
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from aql_agent.summary import format_summary, summarise

    summary = summarise(args.path)
    print(json.dumps(summary, indent=2, default=str) if args.json else format_summary(summary))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from aql_agent.demo import run_demo

    from aql_agent.adapters.games import game_kind
    from aql_agent.errors import MAX_SEED, require_number

    budget = QUICK if args.quick else DemoBudget()
    overrides = {field.name: getattr(args, field.name) for field in dataclasses.fields(DemoBudget)
                 if getattr(args, field.name) is not None}
    for name, value in overrides.items():
        require_number(f"--{name.replace('_', '-')}", value, 0, above_low=True)
    require_number("--seed", args.seed, 0, MAX_SEED, whole=True)
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise AqlError(f"--out {args.out} is a file: the demo writes a folder there; pick another --out")
    game_kind(DEFAULT_GAME).check_opponent(args.opponent)
    run_demo(args.out, seed=args.seed, opponent=args.opponent, budget=dataclasses.replace(budget, **overrides))
    return 0


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        from aql_agent.errors import require_number

        require_number("--threads", threads, 1, 1024, whole=True)
        import torch
        torch.set_num_threads(threads)


def _add_threads_flag(command: argparse.ArgumentParser) -> None:
    command.add_argument("--threads", type=int, help="torch threads (default: torch's choice; 1 is fastest for small "
                         "networks)")


def _add_ray_flags(command: argparse.ArgumentParser, workers_help: str) -> None:
    command.add_argument("--workers", type=int, help=workers_help + " (the ray extra)")
    command.add_argument("--address", help="the Ray cluster to run --workers on (auto: the one `ray start` runs "
                         "here; default: a local one)")


def _check_ray_flags(args: argparse.Namespace) -> None:
    from aql_agent.distributed import check_ray_flags

    check_ray_flags(args.workers, args.address)


def _parse_overrides(items: Sequence[str]) -> dict:
    """`KEY=VALUE` pairs; values are read as JSON where they parse (numbers, lists, true/false/null)."""
    overrides = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise AqlError(f"--set takes KEY=VALUE, got {item!r}")
        try:
            overrides[key] = json.loads(text)
        except json.JSONDecodeError:
            overrides[key] = text
    return overrides


def _train(args: argparse.Namespace) -> int:
    from aql_agent.training import TrainSettings, train

    _check_ray_flags(args)
    settings = settings_from_args(TrainSettings, args, learner=_parse_overrides(args.set))
    _set_threads(args.threads)
    if args.workers is not None:
        from aql_agent.distributed import train_parallel

        summary = train_parallel(settings, workers=args.workers, address=args.address)
    else:
        summary = train(settings)
    print(json.dumps({k: v for k, v in summary.items() if k != "evaluation"} | (
        {"evaluation": {k: v for k, v in summary["evaluation"].items() if k != "returns"}}
        if "evaluation" in summary else {}), indent=2))
    return 0


def _finetune(args: argparse.Namespace) -> int:
    from aql_agent.finetune import FinetuneSettings, finetune

    settings = settings_from_args(FinetuneSettings, args, learner=_parse_overrides(args.set))
    _set_threads(args.threads)
    summary = finetune(settings)
    for key in ("first_evaluation", "evaluation"):
        summary[key] = {k: v for k, v in summary[key].items() if k != "returns"}
    print(json.dumps(summary, indent=2))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from aql_agent.adapters.games import game_kind
    from aql_agent.checkpoint import acting_as, load_policy

    from aql_agent.errors import MAX_SEED, require_number

    episodes = args.games if args.games is not None else args.episodes
    require_number("--episodes/--games", episodes, 1, whole=True)
    require_number("--seed", args.seed, 0, MAX_SEED, whole=True)
    kind = game_kind(args.env)
    kind.check_opponent(args.opponent)
    _check_ray_flags(args)
    policy = load_policy(args.checkpoint)
    kind.check_policy(policy, args.checkpoint)
    acting_as(policy, args.act_samples, args.act_with_targets)
    if args.workers is None:
        result = kind.evaluate(policy, episodes, seed=args.seed, opponent=args.opponent,
                               progress=not args.no_progress)
    else:
        from aql_agent.distributed import evaluate_parallel

        result = evaluate_parallel(args.env, policy, episodes, seed=args.seed, opponent=args.opponent,
                                   workers=args.workers, address=args.address, progress=not args.no_progress)
    result["checkpoint"] = args.checkpoint
    result["algo"], result["step"] = policy.info["algo"], policy.info["step"]
    if args.act_samples is not None:
        result["act_samples"] = args.act_samples
    if args.act_with_targets:
        result["act_with_targets"] = True
    print(json.dumps(result, indent=2))
    return 0


def _record(args: argparse.Namespace) -> int:
    from aql_agent.adapters.games import game_kind
    from aql_agent.summary import format_summary, summarise

    from aql_agent.errors import MAX_SEED, require_number

    require_number("--episodes", args.episodes, 1, whole=True)
    require_number("--seed", args.seed, 0, MAX_SEED, whole=True)
    settings = _parse_overrides(args.set)
    kind = game_kind(args.env, settings)
    options = {"hero": args.hero, "opponent_hero": args.opponent_hero, "fps": args.fps}
    _check_ray_flags(args)
    if args.workers is None:
        path = kind.record(args.out, args.player, args.opponent, episodes=args.episodes, seed=args.seed,
                           side=args.side, options=options, compression=args.compression, overwrite=args.overwrite,
                           progress=not args.no_progress)
    else:
        from aql_agent.distributed import record_parallel

        given = {key: value for key, value in options.items() if value is not None}
        path = record_parallel(args.env, args.out, args.player, args.opponent, episodes=args.episodes,
                               seed=args.seed, side=args.side, options=given, compression=args.compression,
                               overwrite=args.overwrite, workers=args.workers, address=args.address,
                               settings=settings, progress=not args.no_progress)

    print(f"wrote {path}")
    print(format_summary(summarise(path)))
    return 0


def _make_dataset(args: argparse.Namespace) -> int:
    from aql_agent.make_dataset import MakeDatasetSettings, make_datasets

    _set_threads(args.threads)
    card = make_datasets(settings_from_args(MakeDatasetSettings, args))
    print(json.dumps({k: card[k] for k in ("env", "random_return", "medium", "expert", "datasets") if k in card},
                     indent=2))
    return 0


def _read_key(path: str | None, what: str) -> bytes | None:
    if path is None:
        return None
    import zmq.auth

    from aql_agent.errors import require_exists

    require_exists(path, what)
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (ValueError, OSError) as error:
        raise AqlError(f"{path} is not a ZeroMQ certificate ({error}); make one with zmq.auth.create_certificates")
    if what == "CurveZMQ secret key" and secret is None:
        raise AqlError(f"{path} holds no secret key: give the agent's .key_secret file")
    return secret if what == "CurveZMQ secret key" else public


def _deploy(args: argparse.Namespace) -> int:
    from aql_agent.adapters.bridge import AgentServer, make_bridge_policy

    from aql_agent.adapters.bridge.protocol import check_endpoint, is_loopback

    from aql_agent.errors import MAX_SEED, require_number

    _set_threads(args.threads)
    require_number("--seed", args.seed, 0, MAX_SEED, whole=True)
    check_endpoint(args.bind, "--bind")
    if not is_loopback(args.bind) and not args.public:
        raise AqlError(f"{args.bind} is not a loopback address: pass --public to serve other machines (and consider "
                       "--curve-secret-key)")
    backend = args.backend
    if backend == "auto":
        from importlib.util import find_spec

        backend = "onnx" if find_spec("onnxruntime") and find_spec("onnxscript") else "torch"
    policy = make_bridge_policy(f"agent:{args.checkpoint}" if args.checkpoint else args.policy, seed=args.seed,
                                backend=backend)
    server = AgentServer(policy, args.bind, record_dir=args.record, session_timeout=args.session_timeout,
                         max_message_bytes=args.max_message_bytes, max_batch=args.max_batch,
                         max_sessions=args.max_sessions,
                         curve_secret_key=_read_key(args.curve_secret_key, "CurveZMQ secret key"))
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    print(json.dumps({"serving": policy.describe(), "endpoint": server.endpoint, "record": args.record}), flush=True)
    try:
        server.serve()
    except KeyboardInterrupt:
        server.close()
    print(json.dumps({"stopped": server.stats}), flush=True)
    return 0


def _export(args: argparse.Namespace) -> int:
    from aql_agent.checkpoint import load_policy
    from aql_agent.export import OnnxPolicy, agreement, export_onnx

    from aql_agent.errors import require_number

    require_number("--check", args.check, 1, whole=True)
    policy = load_policy(args.checkpoint)
    model = export_onnx(policy, args.out)
    exported = OnnxPolicy(model, policy.obs_dim, policy.act_dim, policy.discrete, policy.info)
    report = {"onnx": args.out, "bytes": len(model), "algo": policy.info["algo"],
              "inputs": [i.name for i in exported.session.get_inputs()], "output": "action",
              "check": agreement(policy, exported, args.check, seed=0)}
    print(json.dumps(report, indent=2))
    return 0


def _engine(args: argparse.Namespace) -> int:
    import numpy as np

    from aql_agent.adapters.bridge.engine import engine_client
    from aql_agent.adapters.bridge.protocol import check_endpoint
    from aql_agent.adapters.games import game_kind
    from aql_agent.errors import MAX_SEED, require_number

    _check_ray_flags(args)
    require_number("--games", args.games, 1, whole=True)
    require_number("--timeout-ms", args.timeout_ms, 0, above_low=True)
    require_number("--connect-timeout", args.connect_timeout, 0, above_low=True)
    require_number("--seed", args.seed, 0, MAX_SEED, whole=True)
    check_endpoint(args.connect, "--connect")
    overrides = _parse_overrides(args.set)
    kind = game_kind(args.env, overrides)
    kind.check_side(args.side)
    kind.check_opponent(args.opponent)  # before connecting
    options = {"endpoint": args.connect, "timeout_s": args.timeout_ms / 1000, "connect_timeout_s": args.connect_timeout,
               "curve_server_key": _read_key(args.curve_server_key, "CurveZMQ public key")}
    if args.workers is not None:
        from aql_agent.distributed import engines_parallel

        report, stats, latencies, welcome = engines_parallel(kind, overrides, options, args.games, args.opponent,
                                                             args.side, args.seed, args.workers, args.address)
    else:
        client = engine_client(kind.bridge_spec(), f"aql engine ({kind.name})", **options)
        client.connect()
        try:
            report = kind.play_over_bridge(client, args.games, args.opponent, args.side, args.seed,
                                           progress=not args.no_progress)
        finally:
            client.close()
        stats, latencies, welcome = client.stats, client.latencies, client.welcome
    milliseconds = np.array(latencies) * 1000
    report.update({"endpoint": args.connect, "agent": welcome.get("policy"), "bridge": {
        **stats, "latency_ms_p50": float(np.percentile(milliseconds, 50)) if len(milliseconds) else None,
        "latency_ms_p99": float(np.percentile(milliseconds, 99)) if len(milliseconds) else None}})
    report.pop("returns", None)
    print(json.dumps(report, indent=2))
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one `aql: error:` line like every other bad input (no usage block)."""

    def error(self, message: str) -> NoReturn:
        print(f"aql: error: {' '.join(message.split())} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="aql", description="aql-agent: offline RL for game AI.")
    parser.add_argument("--version", action="version", version=f"aql-agent {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    convert = commands.add_parser(
        "convert", help="convert between replay logs, D4RL .npz/.hdf5 and Minari datasets",
        description="Convert SRC to DST; formats come from the paths: *.aqlog (replay log; SRC may also be a "
                    "folder of them), *.npz and *.hdf5/*.h5 (D4RL keys), a Minari dataset folder (read only).")
    convert.add_argument("source", metavar="SRC")
    convert.add_argument("destination", metavar="DST")
    convert.add_argument("--agent", help="whose transitions to take from a multi-agent log ('all' for every agent)")
    convert.add_argument("--compression", choices=("none", "zstd"), default="none",
                         help="chunk compression when DST is a replay log (default: none)")
    convert.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    _add_ray_flags(convert, "convert SRC's logs on this many Ray workers into DST, a folder of .npz shards with a "
                   "manifest that every command reads as one dataset")
    convert.set_defaults(run=_convert)

    inspect = commands.add_parser("inspect", help="summarise a replay log or dataset",
                                  description="Print env, spaces, episodes, steps, returns, outcomes and who "
                                              "recorded it, for a log, a folder of logs, .npz, .hdf5 or Minari.")
    inspect.add_argument("path", metavar="PATH")
    inspect.add_argument("--json", action="store_true", help="print JSON instead of text")
    inspect.set_defaults(run=_inspect)

    from aql_agent.finetune import RECIPES, FinetuneSettings
    from aql_agent.learners import ALGORITHMS
    from aql_agent.make_dataset import MakeDatasetSettings
    from aql_agent.training import TrainSettings

    train = commands.add_parser(
        "train", help="train an offline learner from a dataset",
        description="Train --algo on --data for --steps updates. Writes OUT/train.json, metrics.csv, "
                    "eval.csv, tensorboard/ and checkpoints/ (latest.json names the newest).")
    add_settings_flags(train, TrainSettings, skip=("learner",), choices={"algo": ALGORITHMS})
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="learner config override, repeatable (e.g. --set epsilon=0.1 --set bf16=true)")
    _add_threads_flag(train)
    _add_ray_flags(train, "train data-parallel on this many Ray Train workers (one CPU, or one GPU with --device "
                   "cuda, each), every one on an equal part of each batch with gradients averaged: the same "
                   "updates as one process, up to float rounding")
    train.set_defaults(run=_train)

    tune = commands.add_parser(
        "finetune", help="fine-tune an offline checkpoint online, mixing its offline data with new play",
        description="Play --env with the checkpoint's learner in rounds, add what it plays to an online buffer, "
                    "and update on batches mixing offline and online rows (--offline-ratio) while the learner's "
                    "offline constraint relaxes linearly (--relax, --anneal-steps). Writes OUT/finetune.json, "
                    "metrics.csv, rounds.csv, eval.csv (its first row: the offline checkpoint), tensorboard/, "
                    "checkpoints/ and online/ (games: every round's games as replay logs).")
    add_settings_flags(tune, FinetuneSettings, skip=("learner",), choices={"recipe": RECIPES})
    tune.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="learner config change for fine-tuning, repeatable (e.g. --set exploration=boltzmann)")
    _add_threads_flag(tune)
    tune.set_defaults(run=_finetune)

    evaluate = commands.add_parser(
        "eval", help="evaluate a checkpoint and print JSON",
        description="In a gymnasium env: returns (and D4RL-normalised scores where known). In a game (moba-1v1, "
                    "connect-four, pettingzoo:MODULE): --games seeded games against --opponent, sides swapped every "
                    "game; wins, losses, draws, the win rate with a 95%% Wilson interval, mean game length (moba-1v1: "
                    "kills and towers too).")
    evaluate.add_argument("--checkpoint", required=True, help="checkpoint folder or run folder (uses the latest)")
    evaluate.add_argument("--env", required=True, help="gymnasium env id (Hopper-v5) or a game (moba-1v1, ...)")
    evaluate.add_argument("--episodes", type=int, default=10, help="episodes (gymnasium) or games (default: 10)")
    evaluate.add_argument("--games", type=int, help="games to play (same as --episodes)")
    evaluate.add_argument("--opponent", help="games: who to play (default: the game's own; moba-1v1: "
                          "bt:easy|medium|hard or random; connect-four: greedy or random)")
    evaluate.add_argument("--seed", type=int, default=0,
                          help="seeds the episodes (games: the first game's seed); `aql train` and `aql finetune` "
                               "evaluate a run of --seed S on 10000 * (S + 1), so --seed 10000 replays seed 0's")
    evaluate.add_argument("--act-samples", type=int,
                          help="bcq, bear, aql: act on the best of this many proposals instead of the number the "
                               "checkpoint was trained with (a choice of acting only; nothing is retrained)")
    evaluate.add_argument("--act-with-targets", action="store_true",
                          help="aql: act with the target (Polyak-averaged) generator and critic instead of the last "
                               "update's; dqn, bcq-discrete, aql-discrete: with the target Q (a choice of acting only; "
                               "docs/results.md#fine-tuning)")
    _add_ray_flags(evaluate, "play the games on this many Ray workers; the result equals the serial one (bcq, bear, "
                             "aql: to float rounding)")
    evaluate.add_argument("--no-progress", action="store_true", help="no progress bar")
    evaluate.set_defaults(run=_evaluate)

    record = commands.add_parser(
        "record", help="record games (human, bots or agents) or gymnasium episodes (random or agents)",
        description="Record games into a replay log in --out. moba-1v1 keys for --player human: move WASD/arrows, "
                    "attack J/Space, skills 1 2 3, heal H, recall B, quit Esc; PettingZoo games (connect-four) ask "
                    "a human for moves at the terminal, q quits (the log keeps every step played).")
    record.add_argument("--env", default=DEFAULT_GAME,
                        help=f"{DEFAULT_GAME} (default), connect-four, pettingzoo:MODULE or a gymnasium id (Hopper-v5)")
    record.add_argument("--player", required=True,
                        help="human, random, agent:CHECKPOINT or a bot of the game (moba-1v1: bt:LEVEL with "
                             "LEVEL easy, medium, medium-hard, hard; connect-four: greedy)")
    record.add_argument("--opponent", help="games: the other side's player (default: the game's own bot)")
    record.add_argument("--side", help="games: the side --player takes (default: the first, moba-1v1's blue)")
    record.add_argument("--hero", help="moba-1v1: --player's hero (ranger, bruiser; default ranger)")
    record.add_argument("--opponent-hero", help="moba-1v1: the opponent's hero (default ranger)")
    record.add_argument("--episodes", type=int, default=1)
    record.add_argument("--seed", type=int, default=0, help="episode i plays seed + i")
    record.add_argument("--out", default="recordings", help="folder for the log (default: recordings)")
    record.add_argument("--fps", type=float,
                        help="moba-1v1 human play: game frames per second (default 15, real time; 0: no waiting)")
    record.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="game setting, e.g. moba-1v1's frame_skip=3, max_frames=20000, zero_sum=false")
    record.add_argument("--compression", default="none", choices=["none", "zstd"])
    record.add_argument("--overwrite", action="store_true", help="replace an existing log of the same name")
    _add_ray_flags(record, "record the episodes (bots, random players and agents) on this many Ray workers: the "
                   "same log as one process writes")
    record.add_argument("--no-progress", action="store_true", help="no progress bar")
    record.set_defaults(run=_record)

    make = commands.add_parser(
        "make-dataset", help="train a SAC behaviour policy, then collect D4RL-style datasets",
        description="D4RL-style random / medium / expert / medium-replay / medium-expert datasets for a "
                    "continuous gymnasium env, as replay logs, .npz and .hdf5, with card.json (see docs/datasets.md).")
    add_settings_flags(make, MakeDatasetSettings)
    _add_threads_flag(make)
    make.set_defaults(run=_make_dataset)

    deploy = commands.add_parser(
        "deploy", help="serve a checkpoint (or a test policy) to game engines over ZeroMQ",
        description="The agent side of the bridge (docs/bridge-protocol.md): binds a ROUTER socket, answers engines' "
                    "handshakes and step requests with batched policy calls, optionally records every game.")
    source = deploy.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="checkpoint or run folder written by aql train")
    source.add_argument("--policy", help="a test policy instead: random, or a game's bot (moba-1v1: bt:LEVEL; "
                        "connect-four: greedy), which plays whichever of its games an engine declares")
    deploy.add_argument("--bind", default="tcp://127.0.0.1:5555", help="endpoint to bind (default: loopback 5555)")
    deploy.add_argument("--public", action="store_true", help="allow binding a non-loopback address")
    deploy.add_argument("--record", help="folder: record every game served into replay logs, outcomes in games.jsonl")
    deploy.add_argument("--session-timeout", type=float, default=10.0,
                        help="seconds of engine silence before its session is closed (default 10)")
    deploy.add_argument("--max-batch", type=int, default=256, help="most step requests answered by one policy call")
    deploy.add_argument("--max-sessions", type=int, default=64,
                        help="engine sessions served at once; further hellos are refused (default 64)")
    deploy.add_argument("--max-message-bytes", type=int, default=1 << 20, help="larger requests are refused")
    deploy.add_argument("--curve-secret-key", help="CurveZMQ: the agent's secret key file (zmq.auth certificate)")
    deploy.add_argument("--seed", type=int, default=0, help="seed of test policies")
    deploy.add_argument("--threads", type=int, help="torch threads")
    deploy.add_argument("--backend", choices=("auto", "torch", "onnx"), default="auto",
                        help="run the checkpoint with torch, or export it to ONNX and run ONNX Runtime (3-4x faster "
                             "at batch 1; needs the serve extra); auto: onnx when installed")
    deploy.set_defaults(run=_deploy)

    engine = commands.add_parser(
        "engine", help="a game run as an external engine: play games of a deployed agent against the game's bot",
        description="Connects to an `aql deploy` endpoint, plays --games of the agent (one side, alternating by "
                    "default) against the engine's own player, prints a win-rate report in JSON (gymnasium ids: "
                    "episodes and returns).")
    engine.add_argument("--env", default=DEFAULT_GAME,
                        help=f"{DEFAULT_GAME} (default), connect-four, pettingzoo:MODULE or a gymnasium id")
    engine.add_argument("--connect", default="tcp://127.0.0.1:5555", help="the agent's endpoint")
    engine.add_argument("--games", type=int, default=10)
    engine.add_argument("--opponent", help="the engine's side (default: the game's own; moba-1v1: "
                        "bt:easy|medium|hard or random, default bt:medium)")
    engine.add_argument("--side", default="alternate",
                        help="the agent's side (default: alternate game by game; moba-1v1: blue or red)")
    engine.add_argument("--seed", type=int, default=0, help="game i plays seed + i")
    engine.add_argument("--timeout-ms", type=float, default=1000.0,
                        help="wait this long for a decision, then play the fallback (none) and reconnect")
    engine.add_argument("--connect-timeout", type=float, default=30.0, metavar="SECONDS",
                        help="how long the first handshake waits for an agent still starting up (default: 30)")
    engine.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="game setting, e.g. moba-1v1's max_frames=6000")
    engine.add_argument("--curve-server-key", help="CurveZMQ: the agent's public key file")
    engine.add_argument("--no-progress", action="store_true")
    _add_ray_flags(engine, "play the games as this many engines on Ray workers of this machine, each its own "
                           "session of the agent; the report equals one engine's (the bridge's figures added up)")
    engine.set_defaults(run=_engine)

    export = commands.add_parser(
        "export", help="export a checkpoint's policy to ONNX (for ONNX Runtime in C++/C#/Java, or aql deploy)",
        description="Write the deterministic policy, preprocessing included, as an ONNX graph with a dynamic batch "
                    "dimension: inputs `observation` [B, obs] float32 (and `action_mask` [B, n] uint8 for discrete "
                    "policies), output `action`. Checks the graph against the checkpoint on --check random inputs.")
    export.add_argument("--checkpoint", required=True, help="checkpoint or run folder")
    export.add_argument("--out", required=True, help="the .onnx file to write")
    export.add_argument("--check", type=int, default=256, help="random observations to compare on (default 256)")
    export.set_defaults(run=_export)

    demo = commands.add_parser(
        "demo", help="record bot games, train discrete AQL, deploy it over ZeroMQ, fine-tune it, compare",
        description="The whole story on moba-1v1 in seven to eight minutes: record behaviour-tree games, train "
                    "discrete AQL from the logs, deploy it over ZeroMQ against the behaviour tree (tools/engine), "
                    "fine-tune it through the bridge, and print the before/after win rates (and a plot).")
    demo.add_argument("--out", default="demo-output", help="folder for the demo's files (default: demo-output)")
    demo.add_argument("--quick", action="store_true", help="tiny budgets, every step (what CI runs)")
    demo.add_argument("--opponent", default=DEMO_OPPONENT,
                      help=f"the engine's behaviour tree, online and in every evaluation (default: {DEMO_OPPONENT})")
    demo.add_argument("--seed", type=int, default=0)
    bigger = demo.add_argument_group("budget (defaults: seven to eight minutes on 2 cores; --quick shrinks them all)")
    for field in dataclasses.fields(DemoBudget):
        bigger.add_argument(f"--{field.name.replace('_', '-')}", type=int if field.type == "int" else float,
                            default=None, metavar="N", help=f"{field.metadata['help']} (default: {field.default})")
    demo.set_defaults(run=_demo)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"aql: warning: {' '.join(str(message).split())}", file=sys.stderr)  # one line, like errors


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; bad input ends with one `aql: error: ...` line and exit status 2."""
    # Spinning OpenMP workers make small-network updates swing 3-60 steps/s on few cores; set before torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = build_parser().parse_args(argv)
    warnings.showwarning = _show_warning
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)  # like Ctrl-C: records, checkpoints and logs are kept
    try:
        return args.run(args)
    except AqlError as exc:
        print(f"aql: error: {' '.join(str(exc).split())}", file=sys.stderr)  # one line, whatever it quotes
        return 2
    except BrokenPipeError:  # `aql inspect LOG | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    except OSError as exc:
        print(f"aql: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    except Terminated:
        print("aql: terminated (SIGTERM); what was finished is kept", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("aql: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
