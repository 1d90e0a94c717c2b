"""Connections to the warehouse: every component reaches ClickHouse through one URL."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client


def database_of(url: str) -> str:
    """The database named in a warehouse URL's path (``default`` when none)."""
    path = urlparse(url).path.strip("/")
    return path.split("/")[0] if path else "default"


def connect(url: str, *, database: str | None = None, **options: Any) -> Client:
    """A clickhouse-connect client for ``url`` (``http://user:password@host:port/database``)."""
    parsed = urlparse(url)
    return clickhouse_connect.get_client(
        host=parsed.hostname or "localhost",
        port=parsed.port or (8443 if parsed.scheme == "https" else 8123),
        username=unquote(parsed.username or "default"),
        password=unquote(parsed.password or ""),
        database=database if database is not None else database_of(url),
        secure=parsed.scheme == "https",
        **options,
    )
