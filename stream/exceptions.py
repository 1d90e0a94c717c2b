"""Errors of the stream workers."""

from __future__ import annotations


class StreamError(Exception):
    """Root of every stream error."""


class SinkWriteError(StreamError):
    """A batch could not be written; the sink retries it and offsets are not committed."""

    def __init__(self, table: str, rows: int, cause: str) -> None:
        super().__init__(f"writing {rows} rows to {table} failed: {cause}")
        self.table = table
        self.rows = rows
        self.cause = cause
