"""The embedded warehouse server as a separate process, used exactly as a ClickHouse server would be:
through clickhouse-connect over HTTP and through raw HTTP requests (what curl sends)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime

import clickhouse_connect
import httpx
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from tests.stack import Stack
from warehouse.client import connect

TABLE_DDL = """
CREATE TABLE statuses (wamid String, status LowCardinality(String), at DateTime('UTC'), code UInt32)
ENGINE = ReplacingMergeTree ORDER BY (wamid, status)
"""
AGG_DDL = """
CREATE TABLE per_status (status LowCardinality(String), messages AggregateFunction(uniqExact, String))
ENGINE = AggregatingMergeTree ORDER BY status
"""
MV_DDL = """
CREATE MATERIALIZED VIEW per_status_mv TO per_status AS
SELECT status, uniqExactState(wamid) AS messages FROM statuses GROUP BY status
"""


def url(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.settings.warehouse_port}/"


def fresh_database(stack: Stack, name: str) -> clickhouse_connect.driver.client.Client:
    admin = connect(stack.settings.warehouse_url, database="default")
    admin.command(f"CREATE DATABASE IF NOT EXISTS {name}")
    client = connect(stack.settings.warehouse_url, database=name)
    for ddl in (TABLE_DDL, AGG_DDL, MV_DDL):
        client.command(ddl)
    return client


def rows(n: int, offset: int = 0) -> list[list[object]]:
    statuses = ("sent", "delivered", "read", "failed")
    return [[f"wamid.{(i + offset) // 4}", statuses[(i + offset) % 4], datetime(2026, 1, 1, 0, 0, i % 60), i % 7]
            for i in range(n)]


def test_queries_with_parameters_formats_and_dataframes(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory("warehouse")
    client = connect(stack.settings.warehouse_url, database="default")
    assert client.command("SELECT 1") == 1
    assert client.query("SELECT number, toString(number) FROM numbers(3)").result_rows == [
        (0, "0"), (1, "1"), (2, "2")
    ]
    result = client.query(
        "SELECT {s:String}, {n:UInt32} + 1, {d:DateTime('UTC')}, {xs:Array(String)}, length({xs:Array(String)})",
        parameters={"s": "it's", "n": 41, "d": datetime(2026, 1, 2, 3, 4, 5), "xs": ["a", "b'c"]},
    )
    assert result.result_rows == [("it's", 42, datetime(2026, 1, 2, 3, 4, 5), ["a", "b'c"], 2)]
    frame = client.query_df("SELECT number AS n, number * 2 AS twice FROM numbers(4)")
    assert frame["twice"].tolist() == [0, 2, 4, 6]
    arrow = client.query_arrow("SELECT number AS n FROM numbers(5)")
    assert arrow.column("n").to_pylist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("compress", ["lz4", "zstd", "gzip", False])
def test_inserts_feed_materialized_views_exactly(stack_factory: Callable[..., Stack], compress: object) -> None:
    stack = stack_factory("warehouse")
    fresh_database(stack, "ins")
    client = connect(stack.settings.warehouse_url, database="ins", compress=compress)
    client.insert("statuses", rows(4000), column_names=["wamid", "status", "at", "code"])
    client.insert("statuses", rows(400), column_names=["wamid", "status", "at", "code"])  # duplicates
    assert client.query("SELECT count() FROM statuses FINAL").result_rows == [(4000,)]
    per_status = client.query("SELECT status, uniqExactMerge(messages) FROM per_status GROUP BY status ORDER BY status")
    assert per_status.result_rows == [("delivered", 1000), ("failed", 1000), ("read", 1000), ("sent", 1000)]


def test_errors_carry_clickhouse_codes(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory("warehouse")
    client = connect(stack.settings.warehouse_url, database="default")
    with pytest.raises(DatabaseError, match="code: 60") as unknown_table:
        client.query("SELECT * FROM no_such_table")
    assert "UNKNOWN_TABLE" in str(unknown_table.value)
    with pytest.raises(DatabaseError, match="code: 62"):
        client.query("SELEC 1")
    with pytest.raises(DatabaseError, match="code: 81"):
        connect(stack.settings.warehouse_url, database="no_such_database").query("SELECT 1")
    with pytest.raises(DatabaseError, match="code: 115"):
        client.query("SELECT 1", settings={"no_such_setting_at_all": 1})


def test_settings_apply_to_one_request_only(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory("warehouse")
    client = connect(stack.settings.warehouse_url, database="default")
    default = client.command("SELECT getSetting('max_threads')")
    assert client.query("SELECT getSetting('max_threads')", settings={"max_threads": 1}).result_rows == [(1,)]
    assert client.command("SELECT getSetting('max_threads')") == default


def test_plain_http_behaves_like_a_clickhouse_server(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory("warehouse")
    base = url(stack)
    assert httpx.get(base + "ping").text == "Ok.\n"
    assert httpx.get(base).text == "Ok.\n"
    one = httpx.get(base, params={"query": "SELECT 1"})
    assert (one.status_code, one.text) == (200, "1\n")
    assert one.headers["X-ClickHouse-Format"] == "TabSeparated"
    assert one.headers["X-ClickHouse-Timezone"] == "UTC"
    json_body = httpx.post(base, content=b"SELECT 1 AS x FORMAT JSON")
    assert json_body.headers["content-type"].startswith("application/json")
    assert json_body.json()["data"] == [{"x": 1}]

    httpx.post(base, content=b"CREATE TABLE curl_rows (a UInt32, b String) ENGINE = MergeTree ORDER BY a")
    inserted = httpx.post(base, params={"query": "INSERT INTO curl_rows FORMAT JSONEachRow"},
                          content=b'{"b":"x","a":2}\n{"a":1,"b":"y"}\n')
    assert inserted.status_code == 200
    inline = httpx.post(base, content=b"INSERT INTO curl_rows FORMAT CSV\n3,z\n")
    assert inline.status_code == 200
    listed = httpx.get(base, params={"query": "SELECT a, b FROM curl_rows ORDER BY a FORMAT CSV"})
    assert listed.text == '1,"y"\n2,"x"\n3,"z"\n'

    bad = httpx.get(base, params={"query": "SELECT * FROM nope"})
    assert bad.status_code == 404
    assert bad.headers["X-ClickHouse-Exception-Code"] == "60"
    assert bad.text.startswith("Code: 60. DB::Exception:") and "(UNKNOWN_TABLE)" in bad.text


def test_ping_answers_during_a_long_query(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory("warehouse")
    base = url(stack)
    done = threading.Event()
    answers: list[int] = []

    def long_query() -> None:
        with httpx.Client(timeout=120) as client:
            query = "SELECT count() FROM numbers(100000000) WHERE sipHash64(number) = 1"
            response = client.get(base, params={"query": query})
            answers.append(response.status_code)
        done.set()

    worker = threading.Thread(target=long_query)
    worker.start()
    pings_while_busy = 0
    with httpx.Client(timeout=5) as ping_client:
        while not done.is_set():
            started = time.monotonic()
            assert ping_client.get(base + "ping").text == "Ok.\n"
            assert time.monotonic() - started < 0.5
            if not done.is_set():
                pings_while_busy += 1
    worker.join()
    assert answers == [200]
    assert pings_while_busy > 3


def test_data_persists_across_restarts_and_the_directory_is_locked(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory("warehouse")
    client = fresh_database(stack, "keep")
    client.insert("statuses", rows(100), column_names=["wamid", "status", "at", "code"])
    second = subprocess.run(
        [sys.executable, "-m", "warehouse.server", "--port", "0", "--data", str(stack.settings.data_dir / "warehouse")],
        capture_output=True, text=True, timeout=60,
    )
    assert second.returncode != 0
    assert "cannot open the warehouse data directory" in second.stderr
    stack.supervisor.stop("warehouse")
    stack.start("warehouse")
    again = connect(stack.settings.warehouse_url, database="keep")
    assert again.query("SELECT count() FROM statuses FINAL").result_rows == [(100,)]
