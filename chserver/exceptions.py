"""Errors of the embedded ClickHouse-HTTP server; engine errors keep ClickHouse's code."""

from __future__ import annotations


class ServerError(Exception):
    """Root of every embedded-server error."""


class WarehouseServerError(ServerError):
    """The embedded warehouse server cannot run (e.g. its data directory is locked by another process)."""


class EngineError(ServerError):
    """A query failed in the engine; carries ClickHouse's code, message and error name."""

    def __init__(self, code: int, message: str, name: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.name = name
