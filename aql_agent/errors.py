"""Typed errors: each one says what was wrong and what to do about it."""

from __future__ import annotations

import os


class AqlError(Exception):
    """Base class of every error aql-agent raises on bad input."""


class ReplayLogError(AqlError):
    """A replay log cannot be read or written: names the file and the byte offset where known."""

    def __init__(self, message: str, path: str | os.PathLike | None = None, offset: int | None = None):
        self.path = None if path is None else os.fspath(path)
        self.offset = offset
        where = ""
        if self.path is not None:
            where = self.path + (f" at byte {offset}" if offset is not None else "") + ": "
        super().__init__(where + message)


class ReplayLogWarning(UserWarning):
    """Something was recovered but not everything: a truncated or unfinished log."""


class DatasetError(AqlError):
    """A dataset file or array set is malformed or of an unsupported kind."""


class SpaceError(AqlError):
    """A space cannot be described in the replay format, or a value does not fit its space."""


class MissingFileError(AqlError, FileNotFoundError):
    """An input path does not exist."""


def require_exists(path: str | os.PathLike, what: str) -> None:
    """Raise one clear `MissingFileError` instead of a traceback deep in a reader."""
    if not os.path.exists(path):
        raise MissingFileError(f"{what} not found: {os.fspath(path)} (check the path)")
