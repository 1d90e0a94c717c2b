"""Errors of the warehouse package: driver errors are wrapped here, keeping the server's ClickHouse code."""

from __future__ import annotations


class WarehouseError(Exception):
    """Root of every warehouse error."""
