"""The warehouse schema in the real ClickHouse engine (chDB in-process), fresh per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import clickhouse_connect
import pytest
from clickhouse_connect.driver.client import Client

from warehouse.migrate import _apply


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    admin = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path}")
    admin.command("CREATE DATABASE IF NOT EXISTS flowscope")
    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path}", database="flowscope")
    _apply(client)
    yield client
    client.close()
