"""The warehouse client hands callers our errors, with ClickHouse's code kept, never the driver's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from clickhouse_connect.driver import exceptions as driver

from embedded.supervisor import free_port
from tests.conftest import WAREHOUSE_USERS
from warehouse.client import connect
from warehouse.exceptions import QueryError, WarehouseError, WarehouseUnavailableError


def test_a_server_error_keeps_its_clickhouse_code_and_name(warehouse_server_factory: Callable[..., Any]) -> None:
    server = warehouse_server_factory()
    user, password = WAREHOUSE_USERS["admin"]
    client = connect(f"http://{user}:{password}@127.0.0.1:{server.port}/default")
    try:
        assert client.command("SELECT 41 + 1") == 42
        with pytest.raises(QueryError) as unknown_table:
            client.query("SELECT * FROM no_such_table_anywhere")
        assert unknown_table.value.code == 60
        assert unknown_table.value.name == "UNKNOWN_TABLE"
        assert not isinstance(unknown_table.value, driver.Error)
        with pytest.raises(QueryError) as syntax:
            client.command("SELEC 1")
        assert syntax.value.code == 62
        with pytest.raises(QueryError) as bad_insert:
            client.insert("no_such_table_anywhere", [[1]], column_names=["x"])
        assert bad_insert.value.code == 60
    finally:
        client.close()


def test_an_unreachable_warehouse_is_its_own_error() -> None:
    with pytest.raises(WarehouseUnavailableError) as unreachable:
        connect(f"http://test_admin:x@127.0.0.1:{free_port()}/flowscope")
    assert isinstance(unreachable.value, WarehouseError)
    assert "Connection refused" in str(unreachable.value)


def test_a_wrong_password_is_clickhouses_authentication_failure(warehouse_server_factory: Callable[..., Any]) -> None:
    server = warehouse_server_factory()
    with pytest.raises(QueryError) as refused:
        connect(f"http://test_admin:wrong@127.0.0.1:{server.port}/default")
    assert (refused.value.code, refused.value.name) == (516, "AUTHENTICATION_FAILED")
