"""The embedded warehouse server as a separate process, used exactly as a ClickHouse server would be:
through clickhouse-connect over HTTP and through raw HTTP requests (what curl sends)."""

from __future__ import annotations

import gzip
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError
from clickhouse_connect.driver.external import ExternalData

from embedded.supervisor import free_port
from tests.conftest import WAREHOUSE_SERVE, WarehouseServer, warehouse_serve_env
from warehouse.migrate import load_migrations, migrate

ServerFactory = Callable[..., WarehouseServer]

STATUSES_DDL = """
CREATE TABLE statuses
(
    wamid String,
    status LowCardinality(String),
    at DateTime('UTC'),
    code UInt32,
    details String
)
ENGINE = ReplacingMergeTree ORDER BY (wamid, status)
"""
PER_STATUS_DDL = """
CREATE TABLE per_status (status LowCardinality(String), messages AggregateFunction(uniqExact, String))
ENGINE = AggregatingMergeTree ORDER BY status
"""
PER_STATUS_MV_DDL = """
CREATE MATERIALIZED VIEW per_status_mv TO per_status AS
SELECT status, uniqExactState(wamid) AS messages FROM statuses GROUP BY status
"""
COLUMNS = ["wamid", "status", "at", "code", "details"]
STATUS_NAMES = ("sent", "delivered", "read", "failed")
DETAILS = "x" * 500  # wide rows: clickhouse-connect splits a few thousand of them into several compressed blocks


class HttpxWithAuth:
    """``httpx.get``/``httpx.post`` with a user's basic auth (what curl -u sends)."""

    def __init__(self, auth: tuple[str, str]) -> None:
        self._auth = auth

    def get(self, url: str, **options: Any) -> httpx.Response:
        return httpx.get(url, auth=self._auth, **options)

    def post(self, url: str, **options: Any) -> httpx.Response:
        return httpx.post(url, auth=self._auth, **options)


def status_rows(n: int) -> list[list[object]]:
    """n rows: n // 4 messages with four statuses each."""
    return [[f"wamid.{i // 4:06d}", STATUS_NAMES[i % 4], datetime(2026, 1, 1, 0, i % 60, 0), i % 7, DETAILS]
            for i in range(n)]


def create_status_tables(server: WarehouseServer, database: str) -> Client:
    server.client().command(f"CREATE DATABASE IF NOT EXISTS {database}")
    client = server.client(database=database)
    for ddl in (STATUSES_DDL, PER_STATUS_DDL, PER_STATUS_MV_DDL):
        client.command(ddl)
    return client


def test_queries_dataframes_and_arrow_through_clickhouse_connect(warehouse_server_factory: ServerFactory) -> None:
    client = warehouse_server_factory().client()
    assert (client.server_version, client.server_tz.tzname(None)) == ("26.9.2.1", "UTC")
    assert client.command("SELECT 1") == 1
    assert client.command("SELECT 'a', 2") == ["a", "2"]
    assert client.query("SELECT number, toString(number) FROM numbers(3)").result_rows == [
        (0, "0"), (1, "1"), (2, "2")
    ]
    typed = client.query(
        "SELECT toLowCardinality('lc') AS lc, CAST(NULL, 'Nullable(UInt8)') AS nothing, "
        "toDateTime64('2026-01-02 03:04:05.678', 3, 'UTC') AS at, map('k', 1) AS m, [1, 2] AS xs, "
        "toDecimal64(1.25, 2) AS price"
    )
    assert typed.result_rows == [("lc", None, datetime(2026, 1, 2, 3, 4, 5, 678000), {"k": 1}, [1, 2], Decimal("1.25"))]
    frame = client.query_df("SELECT number AS n, number * 2 AS twice FROM numbers(4)")
    assert (frame["n"].tolist(), frame["twice"].tolist()) == ([0, 1, 2, 3], [0, 2, 4, 6])
    arrow = client.query_arrow("SELECT number AS n, toString(number) AS s FROM numbers(3)")
    assert (arrow.column("n").to_pylist(), arrow.column("s").to_pylist()) == ([0, 1, 2], ["0", "1", "2"])


def test_server_side_parameters(warehouse_server_factory: ServerFactory) -> None:
    client = warehouse_server_factory().client()
    result = client.query(
        "SELECT {s:String}, {n:UInt32} + 1, {d:DateTime}, {xs:Array(String)}, length({xs:Array(String)})",
        parameters={"s": "it's a\ttab \\ slash", "n": 41, "d": datetime(2026, 1, 2, 3, 4, 5), "xs": ["a", "b'c"]},
    )
    assert result.result_rows == [("it's a\ttab \\ slash", 42, datetime(2026, 1, 2, 3, 4, 5), ["a", "b'c"], 2)]
    injection = "x'); DROP TABLE system.one; --"
    assert client.query("SELECT {s:String}", parameters={"s": injection}).result_rows == [(injection,)]
    # Parameters over 4 KB make clickhouse-connect send a multipart form instead of URL parameters.
    many = [f"wamid.{i:06d}" for i in range(2000)]
    counted = client.query("SELECT count() FROM numbers(10) WHERE toString(number) IN {xs:Array(String)}",
                           parameters={"xs": many + ["3", "7"]})
    assert counted.result_rows == [(2,)]
    external = ExternalData(data=b"1\ta\n2\tb\n", file_name="ext", structure=["n UInt32", "s String"])
    assert client.query("SELECT sum(n), groupArray(s) FROM ext", external_data=external).result_rows == [
        (3, ["a", "b"])
    ]


@pytest.mark.parametrize("compress", ["lz4", "zstd", "gzip", False])
def test_inserts_feed_materialized_views_exactly(warehouse_server_factory: ServerFactory, compress: object) -> None:
    server = warehouse_server_factory()
    create_status_tables(server, "ins")
    client = server.client(database="ins", compress=compress)
    client.insert("statuses", status_rows(8000), column_names=COLUMNS)
    client.insert("statuses", status_rows(400), column_names=COLUMNS)  # duplicates of the first 400 rows
    assert client.query("SELECT count() FROM statuses").result_rows == [(8400,)]
    assert client.query("SELECT count(), sum(code) FROM statuses FINAL").result_rows == [
        (8000, sum(i % 7 for i in range(8000)))
    ]
    per_status = client.query("SELECT status, uniqExactMerge(messages) FROM per_status GROUP BY status ORDER BY status")
    assert per_status.result_rows == [("delivered", 2000), ("failed", 2000), ("read", 2000), ("sent", 2000)]


def test_errors_carry_clickhouse_codes(warehouse_server_factory: ServerFactory) -> None:
    server = warehouse_server_factory()
    client = server.client()
    with pytest.raises(DatabaseError, match=r"(?s)code: 60, .*\(UNKNOWN_TABLE\)") as unknown_table:
        client.query("SELECT * FROM no_such_table")
    assert unknown_table.value.code == 60
    with pytest.raises(DatabaseError, match=r"(?s)code: 62, .*\(SYNTAX_ERROR\)") as syntax:
        client.query("SELEC 1")
    assert syntax.value.code == 62
    with pytest.raises(DatabaseError, match="Multi-statements are not allowed"):
        client.command("SELECT 1; SELECT 2")
    with pytest.raises(DatabaseError, match=r"(?s)code: 115, .*\(UNKNOWN_SETTING\)"):
        client.query("SELECT 1", settings={"no_such_setting_at_all": 1})
    with pytest.raises(DatabaseError, match=r"(?s)code: 81, .*Database no_such_database does not exist") as database:
        server.client(database="no_such_database")
    assert database.value.code == 81
    assert client.command("SELECT 1") == 1  # the client is still usable


def test_settings_apply_to_one_request_only(warehouse_server_factory: ServerFactory) -> None:
    server = warehouse_server_factory()
    client = server.client()
    max_threads = client.command("SELECT getSetting('max_threads')")
    assert client.query("SELECT getSetting('max_threads')", settings={"max_threads": 1}).result_rows == [(1,)]
    assert client.command("SELECT getSetting('max_threads')") == max_threads
    assert client.query("SELECT getSetting('max_block_size')", settings={"max_block_size": 1000}).result_rows == [
        (1000,)
    ]
    assert client.command("SELECT getSetting('max_block_size')") == 65409
    # Without a session, requests share pooled engine connections: nothing may leak between them either.
    with httpx.Client(base_url=server.url, auth=server.auth()) as http:
        setting = "SELECT getSetting('max_block_size')"
        assert http.post("/", params={"max_block_size": "3"}, content=setting).text == "3\n"
        assert [http.post("/", content=setting).text for _ in range(5)] == ["65409\n"] * 5
        assert http.post("/", content="SET max_block_size = 5").status_code == 200  # no session: affects nothing
        assert http.post("/", content=setting).text == "65409\n"
        assert http.post("/", params={"database": "system"}, content="SELECT currentDatabase()").text == "system\n"
        assert http.post("/", content="SELECT currentDatabase()").text == "default\n"


def test_sessions_keep_settings_database_and_temporary_tables(warehouse_server_factory: ServerFactory) -> None:
    server = warehouse_server_factory()
    client, other = server.client(), server.client()  # clickhouse-connect gives every client its own session
    client.command("SET max_block_size = 3000")
    client.command("USE system")
    client.command("CREATE TEMPORARY TABLE scratch (n UInt8)")
    client.command("INSERT INTO scratch VALUES (1), (2)")
    assert client.command("SELECT getSetting('max_block_size'), currentDatabase(), (SELECT sum(n) FROM scratch)") == [
        "3000", "system", "3"
    ]
    assert client.query("SELECT getSetting('max_block_size')", settings={"max_block_size": 10}).result_rows == [(10,)]
    assert client.command("SELECT getSetting('max_block_size')") == 3000  # back to the session's value
    assert other.command("SELECT getSetting('max_block_size'), currentDatabase()") == ["65409", "default"]
    with pytest.raises(DatabaseError, match="code: 60"):
        other.command("SELECT * FROM scratch")
    with httpx.Client(base_url=server.url, auth=server.auth()) as http:
        missing = http.post("/", params={"session_id": "nope", "session_check": "1"}, content="SELECT 1")
        assert (missing.status_code, missing.headers["X-ClickHouse-Exception-Code"]) == (500, "372")
        too_long = http.post("/", params={"session_id": "s", "session_timeout": "99999"}, content="SELECT 1")
        assert too_long.headers["X-ClickHouse-Exception-Code"] == "374"


def test_plain_http_behaves_like_a_clickhouse_server(warehouse_server_factory: ServerFactory) -> None:
    server = warehouse_server_factory()
    base = server.url
    assert httpx.get(base + "ping").text == "Ok.\n"  # no credentials needed for these two
    assert httpx.get(base).text == "Ok.\n"
    http = HttpxWithAuth(server.auth())
    one = http.get(base, params={"query": "SELECT 1"})
    assert (one.status_code, one.content) == (200, b"1\n")
    assert (one.headers["X-ClickHouse-Format"], one.headers["X-ClickHouse-Timezone"]) == ("TabSeparated", "UTC")
    assert one.headers["Content-Type"] == "text/tab-separated-values; charset=UTF-8"
    assert one.headers["X-ClickHouse-Query-Id"] and one.headers["X-ClickHouse-Server-Display-Name"]
    as_json = http.post(base, content=b"SELECT 1 AS x FORMAT JSON")
    assert (as_json.headers["Content-Type"], as_json.headers["X-ClickHouse-Format"]) == (
        "application/json; charset=UTF-8", "JSON"
    )
    assert (as_json.json()["meta"], as_json.json()["data"], as_json.json()["rows"]) == (
        [{"name": "x", "type": "UInt8"}], [{"x": 1}], 1
    )
    assert http.post(base, params={"query": "SELECT"}, content=b" 1 + 1").text == "2\n"  # URL query + body
    assert http.get(base, params={"query": "SELECT 2", "default_format": "JSONEachRow"}).text == '{"2":2}\n'
    named = http.get(base, params={"query": "SELECT {n:UInt8} * 2 AS twice", "param_n": "21"})
    assert named.text == "42\n"

    assert http.post(base, content=b"CREATE TABLE rows (a UInt32, b String) ENGINE = MergeTree ORDER BY a").text == ""
    inserted = http.post(base, params={"query": "INSERT INTO rows FORMAT JSONEachRow"},
                          content=b'{"b":"x","a":2}\n{"a":1,"b":"y"}\n')
    assert (inserted.status_code, inserted.text) == (200, "")
    assert '"written_rows":"2"' in inserted.headers["X-ClickHouse-Summary"]
    assert http.post(base, content=b"INSERT INTO rows FORMAT CSV\n3,z\n").status_code == 200
    assert http.post(base, content=b"INSERT INTO rows VALUES (4, 'a;b'), (5, 'c')").status_code == 200
    compressed = http.post(base, params={"query": "INSERT INTO rows FORMAT TabSeparated"},
                            content=gzip.compress(b"6\tgz\n"), headers={"Content-Encoding": "gzip"})
    assert compressed.status_code == 200
    listed = http.get(base, params={"query": "SELECT a, b FROM rows ORDER BY a FORMAT CSV"})
    assert listed.text == '1,"y"\n2,"x"\n3,"z"\n4,"a;b"\n5,"c"\n6,"gz"\n'
    assert listed.headers["Content-Type"] == "text/csv; charset=UTF-8; header=absent"

    zipped = http.get(base, params={"query": "SELECT number FROM numbers(1000)", "enable_http_compression": "1"},
                       headers={"Accept-Encoding": "gzip"})
    assert (zipped.headers["Content-Encoding"], zipped.text) == ("gzip", "".join(f"{i}\n" for i in range(1000)))

    bad = http.get(base, params={"query": "SELECT * FROM nope"})
    assert (bad.status_code, bad.headers["X-ClickHouse-Exception-Code"]) == (404, "60")
    assert bad.text.startswith("Code: 60. DB::Exception: Unknown table expression identifier 'nope'")
    assert bad.text.endswith(". (UNKNOWN_TABLE) (version 26.9.2.1)\n")
    syntax = http.post(base, content=b"SELEC 1")
    assert (syntax.status_code, syntax.headers["X-ClickHouse-Exception-Code"]) == (400, "62")
    readonly = http.get(base, params={"query": "DROP TABLE rows"})
    assert (readonly.status_code, readonly.headers["X-ClickHouse-Exception-Code"]) == (500, "164")
    assert http.get(base, params={"query": "SELECT count() FROM rows"}).text == "6\n"


def test_migrations_apply_through_the_server(warehouse_server_factory: ServerFactory) -> None:
    server = warehouse_server_factory()
    url = server.url_for("admin", "flowscope")
    applied = migrate(url)
    assert [m.version for m in applied] == [m.version for m in load_migrations()]
    assert migrate(url) == []
    client = server.client(database="flowscope")
    engines = dict(client.query("SELECT name, engine FROM system.tables WHERE database = 'flowscope'").result_rows)
    assert engines["message_statuses"] == "ReplacingMergeTree"
    assert engines["message_status_minute"] == "AggregatingMergeTree"
    assert engines["message_status_minute_mv"] == "MaterializedView"


def test_ping_answers_during_a_long_query(warehouse_server_factory: ServerFactory) -> None:
    server = warehouse_server_factory()
    done = threading.Event()
    answers: list[int] = []

    def long_query() -> None:
        try:
            with httpx.Client(timeout=120, auth=server.auth()) as client:
                query = "SELECT count() FROM numbers(60000000) WHERE sipHash64(number) = 1 SETTINGS max_threads = 1"
                answers.append(client.get(server.url, params={"query": query}).status_code)
        finally:
            done.set()

    worker = threading.Thread(target=long_query)
    worker.start()
    pings_while_busy = 0
    slowest = 0.0
    with httpx.Client(timeout=5, auth=server.auth()) as ping_client:
        while not done.is_set():
            started = time.monotonic()
            assert ping_client.get(server.url + "ping").text == "Ok.\n"
            assert ping_client.post(server.url, content=b"SELECT 1").text == "1\n"  # other queries run meanwhile
            slowest = max(slowest, time.monotonic() - started)
            if not done.is_set():
                pings_while_busy += 1
    worker.join()
    assert answers == [200]
    assert pings_while_busy > 3
    assert slowest < 0.5


def test_data_persists_across_restarts_and_the_directory_is_locked(warehouse_server_factory: ServerFactory) -> None:
    server = warehouse_server_factory()
    create_status_tables(server, "keep").insert("statuses", status_rows(100), column_names=COLUMNS)

    started = time.monotonic()
    second = subprocess.run(
        WAREHOUSE_SERVE, env=warehouse_serve_env(server.data_dir, port=free_port()),
        capture_output=True, text=True, timeout=60,
    )
    assert second.returncode == 3
    assert f"cannot open the warehouse data directory {server.data_dir}: it is in use by pid {server.process.pid}" \
        in second.stderr
    assert time.monotonic() - started < 30

    assert server.stop(signal.SIGTERM) == -signal.SIGTERM  # uvicorn re-raises the signal after a clean shutdown
    assert "warehouse engine closed" in server.log()
    again = warehouse_server_factory(server.data_dir).client(database="keep")
    assert again.query("SELECT count() FROM statuses FINAL").result_rows == [(100,)]
    assert again.query("SELECT uniqExactMerge(messages) FROM per_status").result_rows == [(25,)]
