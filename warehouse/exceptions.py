"""Errors of the warehouse package; engine errors keep the server's ClickHouse code."""

from __future__ import annotations


class WarehouseError(Exception):
    """Root of every warehouse error."""


class WarehouseServerError(WarehouseError):
    """The embedded warehouse server cannot run (e.g. its data directory is locked by another process)."""


class EngineError(WarehouseError):
    """A query failed in the engine; carries ClickHouse's code, message and error name."""

    def __init__(self, code: int, message: str, name: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.name = name
