"""Errors of the warehouse package: driver errors are wrapped here, keeping the server's ClickHouse code."""

from __future__ import annotations


class WarehouseError(Exception):
    """Root of every warehouse error."""


class WarehouseUnavailableError(WarehouseError):
    """The warehouse could not be reached (connection refused, reset or timed out); worth retrying."""


class QueryError(WarehouseError):
    """The warehouse answered with an error; ``code`` and ``name`` are ClickHouse's (0 and "" when unknown)."""

    def __init__(self, message: str, *, code: int = 0, name: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.name = name
