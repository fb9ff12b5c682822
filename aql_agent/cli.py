"""The `aql` command: `aql convert`, `aql inspect`, `aql demo` (more subcommands arrive with later features)."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence

from aql_agent import __version__
from aql_agent.errors import AqlError


def _convert(args: argparse.Namespace) -> int:
    from aql_agent.data.formats import convert
    from aql_agent.inspect import format_summary, summarise

    convert(args.source, args.destination, agent=args.agent, compression=args.compression,
            overwrite=args.overwrite, progress=True)
    print(f"wrote {args.destination}")
    print(format_summary(summarise(args.destination)))
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from aql_agent.inspect import format_summary, summarise

    summary = summarise(args.path)
    print(json.dumps(summary, indent=2, default=str) if args.json else format_summary(summary))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from aql_agent.demo import run_demo

    run_demo(args.out, episodes=args.episodes, seed=args.seed)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aql", description="aql-agent: offline RL for game AI.")
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
    convert.set_defaults(run=_convert)

    inspect = commands.add_parser("inspect", help="summarise a replay log or dataset",
                                  description="Print env, spaces, episodes, steps, returns, outcomes and who "
                                              "recorded it, for a log, a folder of logs, .npz, .hdf5 or Minari.")
    inspect.add_argument("path", metavar="PATH")
    inspect.add_argument("--json", action="store_true", help="print JSON instead of text")
    inspect.set_defaults(run=_inspect)

    demo = commands.add_parser("demo", help="record a small log, convert it and show what it holds")
    demo.add_argument("--out", default="demo-output", help="folder for the demo's files (default: demo-output)")
    demo.add_argument("--episodes", type=int, default=10, help="episodes to record per player (default: 10)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_demo)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"aql: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; bad input ends with one `aql: error: ...` line and exit status 2."""
    args = build_parser().parse_args(argv)
    warnings.showwarning = _show_warning
    try:
        return args.run(args)
    except AqlError as exc:
        print(f"aql: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"aql: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aql: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
