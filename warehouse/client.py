"""Connections to the warehouse: every component reaches ClickHouse through one URL, and gets our errors back."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast
from urllib.parse import unquote, urlparse

import clickhouse_connect
from clickhouse_connect.driver import exceptions as driver
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.httpclient import HttpClient

from warehouse.exceptions import QueryError, WarehouseError, WarehouseUnavailableError

F = TypeVar("F", bound=Callable[..., Any])

# Settings our warehouses let a read-only user change, within bounds: the embedded server's reader settings
# (chserver.grants) and the production analyst's profile (changeable_in_readonly, deploy/clickhouse/users.d). The
# driver would refuse them before sending, from system.settings, where the embedded server's read-only connections
# list every setting as read-only; the server still refuses a value out of its bounds.
CHANGEABLE_IN_READONLY = frozenset({"os_thread_priority"})


def database_of(url: str) -> str:
    """The database named in a warehouse URL's path (``default`` when none)."""
    path = urlparse(url).path.strip("/")
    return path.split("/")[0] if path else "default"


def translate(exc: Exception) -> WarehouseError:
    """Our error for a driver or transport error: unreachable, or the server's answer with its code kept."""
    if isinstance(exc, WarehouseError):
        return exc
    code = getattr(exc, "code", None)
    if isinstance(exc, driver.OperationalError | OSError) and not code:
        return WarehouseUnavailableError(str(exc))
    return QueryError(str(exc), code=int(code or 0), name=str(getattr(exc, "name", None) or ""))


def _wrapped(method: F) -> F:
    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except (driver.Error, OSError) as exc:
            raise translate(exc) from exc

    return cast(F, call)


class WarehouseClient(HttpClient):
    """clickhouse-connect's HTTP client whose calls raise :class:`WarehouseError` subclasses, never driver errors."""

    query = _wrapped(HttpClient.query)
    command = _wrapped(HttpClient.command)
    insert = _wrapped(HttpClient.insert)
    raw_query = _wrapped(HttpClient.raw_query)
    raw_insert = _wrapped(HttpClient.raw_insert)
    query_df = _wrapped(HttpClient.query_df)
    query_np = _wrapped(HttpClient.query_np)
    query_arrow = _wrapped(HttpClient.query_arrow)
    ping = _wrapped(HttpClient.ping)


def connect(url: str, *, database: str | None = None, settings: Mapping[str, Any] | None = None,
            **options: Any) -> Client:
    """A client for ``url`` (``http://user:password@host:port/database``); its errors are :class:`WarehouseError`.
    ``settings`` go with every query (a read-only user's only among those its server allows it)."""
    parsed = urlparse(url)
    try:
        client = clickhouse_connect.get_client(
            host=parsed.hostname or "localhost",
            port=parsed.port or (8443 if parsed.scheme == "https" else 8123),
            username=unquote(parsed.username or "default"),
            password=unquote(parsed.password or ""),
            database=database if database is not None else database_of(url),
            secure=parsed.scheme == "https",
            **options,
        )
    except (driver.Error, OSError) as exc:
        raise translate(exc) from exc
    if isinstance(client, HttpClient):
        client.__class__ = WarehouseClient  # same state, every call's errors translated
    for name in CHANGEABLE_IN_READONLY:
        listed = client.server_settings.get(name)
        if listed is not None and listed.readonly:
            client.server_settings[name] = listed._replace(readonly=0)
    try:
        for name, value in (settings or {}).items():
            client.set_client_setting(name, value)
    except driver.Error as exc:
        raise translate(exc) from exc
    return client
