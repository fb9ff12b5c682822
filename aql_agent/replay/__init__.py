"""Replay logs (format v1): a msgpack record stream in checksummed, optionally zstd-compressed chunks."""

from aql_agent.replay.reader import Episode, LogColumns, ReplayReader, Step, copy_episodes, join_logs, read_header
from aql_agent.replay.writer import ReplayWriter

__all__ = ["Episode", "LogColumns", "ReplayReader", "ReplayWriter", "Step", "copy_episodes", "join_logs", "read_header"]
