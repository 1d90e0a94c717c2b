"""The warehouse server's access model against the real server process: who may run what, in every shape.

For each role a table of statements that must run and statements that must be refused with ClickHouse's
exact code, sent as GET and POST, in lower case, behind comments, multi-line, compressed, as multipart
and in sessions; after every refusal nothing changed (row counts, tables, files). The audit log records
every request without its text.
"""

from __future__ import annotations

import gzip
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import lz4.frame
import pytest
import zstandard
from clickhouse_connect.driver.exceptions import DatabaseError

from embedded.supervisor import free_port
from tests.conftest import WAREHOUSE_DIR_NAME, WAREHOUSE_SERVE, WAREHOUSE_USERS, WarehouseServer, warehouse_serve_env
from warehouse.client import connect

AUDIT_WAIT_S = 15.0
EVENTS_ROWS = 3


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WarehouseServer]:
    """One server for the module, with flowscope.events (3 rows) and other.t (a table outside flowscope)."""
    root = tmp_path_factory.mktemp("security")
    directory = root / "data" / WAREHOUSE_DIR_NAME
    port = free_port()
    log_path = root / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(WAREHOUSE_SERVE, stdout=log, stderr=subprocess.STDOUT,
                                   cwd=Path(__file__).resolve().parents[2],
                                   env=warehouse_serve_env(directory, port=port))
    started = WarehouseServer(process, port, directory, log_path)
    try:
        started.wait_ready()
        for sql in ("CREATE DATABASE flowscope", "CREATE DATABASE other",
                    "CREATE TABLE flowscope.events (id UInt32, s String) ENGINE = MergeTree ORDER BY id",
                    "CREATE TABLE other.t (id UInt32) ENGINE = MergeTree ORDER BY id",
                    "INSERT INTO flowscope.events VALUES (1, 'a'), (2, 'b'), (3, 'c')"):
            assert run(started, "admin", sql).status_code == 200, sql
        yield started
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def spill(tmp_path: Path) -> Path:
    """A directory statements try to write files into; it must stay empty."""
    return tmp_path


def run(server: WarehouseServer, role: str | None, sql: str, *, method: str = "POST", in_url: bool = False,
        params: dict[str, str] | None = None, headers: dict[str, str] | None = None, body: bytes | None = None,
        **options: Any) -> httpx.Response:
    """Send ``sql`` as ``role`` (basic auth; None = no credentials), in the body or the URL."""
    query = dict(params or {})
    content = body
    if method == "GET" or in_url:
        query["query"] = sql
    elif content is None:
        content = sql.encode()
    auth = WAREHOUSE_USERS[role] if role else None
    return httpx.request(method, server.url, params=query, content=content, headers=headers, auth=auth,
                         timeout=30, **options)


def code_of(response: httpx.Response) -> int:
    return int(response.headers.get("X-ClickHouse-Exception-Code", "0"))


def scalar(server: WarehouseServer, sql: str, role: str = "admin", **options: Any) -> str:
    response = run(server, role, sql, **options)
    assert response.status_code == 200, response.text
    return response.text.strip()


def snapshot(server: WarehouseServer) -> tuple[str, str]:
    """What a refused statement must not change: the events rows and the tables outside system/audit."""
    rows = scalar(server, "SELECT count(), sum(id), groupArray(s) FROM flowscope.events")
    tables = scalar(server, "SELECT groupArray(database || '.' || name) FROM (SELECT database, name FROM "
                            "system.tables WHERE database NOT IN ('system', 'audit', 'INFORMATION_SCHEMA', "
                            "'information_schema') ORDER BY database, name)")
    return rows, tables


# Shapes a statement can be sent in (name → request options); each keeps the statement's meaning.
def _shapes(sql: str) -> dict[str, dict[str, Any]]:
    return {
        "post": {},
        "get": {"method": "GET"},
        "post-url": {"in_url": True},
        "lower": {"body": sql.lower().encode()},
        "block-comment": {"body": f"/* hello */ {sql}".encode()},
        "line-comment": {"body": f"-- hello\n{sql}".encode()},
        "multi-line": {"body": sql.replace(" ", "\n\t", 3).encode()},
        "gzip": {"body": gzip.compress(sql.encode()), "headers": {"Content-Encoding": "gzip"}},
        "zstd": {"body": zstandard.ZstdCompressor().compress(sql.encode()), "headers": {"Content-Encoding": "zstd"}},
        "lz4": {"body": lz4.frame.compress(sql.encode()), "headers": {"Content-Encoding": "lz4"}},
        "session": {"params": {"session_id": f"s-{uuid.uuid4()}"}},
        "readonly-0-url": {"params": {"readonly": "0"}},
    }


SHAPES = list(_shapes("x"))

# Statements that reach the host: refused for every role (code per statement; {spill} is a temporary directory).
HOST_ACCESS = [
    ("SELECT * FROM file('/etc/passwd', 'LineAsString')", 497),
    ("SELECT file('/proc/self/environ')", 497),
    ("SELECT `file`('/etc/passwd')", 497),
    ("SELECT * FROM FILE('/etc/passwd', 'LineAsString')", 497),
    ("SELECT * FROM file /* hidden */ ('/etc/passwd', 'LineAsString')", 497),
    ("WITH (SELECT count() FROM file('/etc/passwd', 'LineAsString')) AS n SELECT n", 497),
    ("(SELECT * FROM file('/etc/passwd', 'LineAsString'))", 497),
    ("SELECT * FROM url('http://127.0.0.1:9/', 'LineAsString')", 497),
    ("DESCRIBE TABLE url('http://127.0.0.1:9/', 'CSV')", 497),
    ("SELECT * FROM remote('127.0.0.1', system.one)", 497),
    ("SELECT * FROM s3('http://127.0.0.1:9/bucket/key.csv')", 497),
    ("SELECT * FROM executable('id', 'TSV', 'x String')", 497),
    ("SELECT * FROM mysql('127.0.0.1:9', 'db', 't', 'u', 'p')", 497),
    ("SELECT * FROM postgresql('127.0.0.1:9', 'db', 't', 'u', 'p')", 497),
    ("SELECT * FROM input('a String')", 497),
    ("SELECT * FROM python('x')", 497),
    ("INSERT INTO FUNCTION file('{spill}/a.tsv', 'TSV', 'a String') VALUES ('x')", 497),
    ("INSERT INTO FUNCTION file('{spill}/b.tsv', 'TSV', 'a String') SELECT 'x'", 497),
    ("INSERT INTO TABLE FUNCTION url('http://127.0.0.1:9/', 'CSV', 'a String') SELECT 'x'", 497),
    ("INSERT INTO flowscope.events SELECT 9, line FROM file('/etc/passwd', 'LineAsString')", 497),
    ("CREATE TABLE flowscope.f (a String) ENGINE = File(TSV, '{spill}/f.tsv')", 497),
    ("CREATE TABLE flowscope.u (a String) ENGINE = URL('http://127.0.0.1:9/', CSV)", 497),
    ("CREATE TABLE flowscope.k (a String) ENGINE = Kafka SETTINGS kafka_broker_list = '127.0.0.1:9'", 497),
    ("CREATE TABLE flowscope.d (a String) ENGINE = MergeTree ORDER BY a SETTINGS disk = disk(type = local, "
     "path = '{spill}/')", 497),
    ("CREATE DATABASE fs ENGINE = Filesystem('/etc')", 497),
    ("CREATE DICTIONARY flowscope.dict (k UInt64, v String) PRIMARY KEY k "
     "SOURCE(FILE(path '/etc/passwd' format 'TSV')) LAYOUT(FLAT()) LIFETIME(0)", 497),
    ("ATTACH TABLE flowscope.att FROM '{spill}' (a String) ENGINE = MergeTree ORDER BY a", 497),
    ("BACKUP TABLE flowscope.events TO File('{spill}/backup.zip')", 497),
    ("SYSTEM SHUTDOWN", 497),
    ("SYSTEM RELOAD CONFIG", 497),
    ("SELECT 1 INTO OUTFILE '{spill}/out.tsv'", 358),
    ("SELECT * FROM system.one SETTINGS format_schema = '/etc/passwd'", 452),
]


@pytest.mark.parametrize("role", ["admin", "writer", "analyst"])
@pytest.mark.parametrize(("sql", "code"), HOST_ACCESS, ids=[f"host{i}" for i in range(len(HOST_ACCESS))])
def test_nobody_reaches_the_host(server: WarehouseServer, spill: Path, role: str, sql: str, code: int) -> None:
    statement = sql.format(spill=spill)
    before = snapshot(server)
    for shape, options in _shapes(statement).items():
        response = run(server, role, statement, **options)
        assert code_of(response) == code, (shape, response.text)
        assert response.status_code == (403 if code == 497 else 500), (shape, response.text)
    assert snapshot(server) == before
    assert list(spill.iterdir()) == []


# --- authentication ------------------------------------------------------------------------------------------
def _no_user(name: str) -> str:
    return (f"Code: 516. DB::Exception: {name}: Authentication failed: password is incorrect, or there is no user "
            "with such name. (AUTHENTICATION_FAILED) (version 26.9.2.1)\n")


def test_a_wrong_or_missing_credential_runs_nothing(server: WarehouseServer) -> None:
    admin, password = WAREHOUSE_USERS["admin"]
    before = snapshot(server)
    write = "INSERT INTO flowscope.events VALUES (100, 'forged')"
    attempts: list[tuple[dict[str, Any], str]] = [
        ({}, _no_user("default")),
        ({"auth": (admin, "wrong")}, _no_user(admin)),
        ({"auth": ("nobody", password)}, _no_user("nobody")),
        ({"auth": ("default", "")}, _no_user("default")),
        ({"headers": {"X-ClickHouse-User": admin, "X-ClickHouse-Key": "wrong"}}, _no_user(admin)),
        ({"headers": {"X-ClickHouse-User": admin}}, _no_user(admin)),
        ({"params": {"user": admin, "password": "wrong"}}, _no_user(admin)),
        ({"params": {"user": admin}}, _no_user(admin)),
        ({"params": {"password": password}}, _no_user("default")),
        ({"headers": {"Authorization": "Bearer abc"}},
         "Code: 516. DB::Exception: Invalid authentication: 'Bearer' HTTP Authorization scheme is not supported. "
         "(AUTHENTICATION_FAILED) (version 26.9.2.1)\n"),
        ({"auth": (admin, password), "params": {"user": admin, "password": password}},
         "Code: 516. DB::Exception: Invalid authentication: it is not allowed to use Authorization HTTP header and "
         "authentication via parameters simultaneously. (AUTHENTICATION_FAILED) (version 26.9.2.1)\n"),
        ({"auth": (admin, password), "headers": {"X-ClickHouse-User": admin, "X-ClickHouse-Key": password}},
         "Code: 516. DB::Exception: Invalid authentication: it is not allowed to use X-ClickHouse HTTP headers and "
         "Authorization HTTP header simultaneously. (AUTHENTICATION_FAILED) (version 26.9.2.1)\n"),
    ]
    for options, text in attempts:
        for method, in_url in (("POST", False), ("POST", True), ("GET", True)):
            response = httpx.request(method, server.url, timeout=30, **_merge(options, write, in_url=in_url))
            assert (response.status_code, code_of(response), response.text) == (403, 516, text), options
    # A form body is not a credential source: user/password fields of a multipart request are ignored.
    form = httpx.post(server.url, data={"user": admin, "password": password, "query": write},
                      files={"ext": ("ext", b"1\n")}, params={"ext_structure": "a UInt8"}, timeout=30)
    assert (form.status_code, code_of(form)) == (403, 516)
    assert snapshot(server) == before


def _merge(options: dict[str, Any], sql: str, *, in_url: bool) -> dict[str, Any]:
    merged = {key: dict(value) if isinstance(value, dict) else value for key, value in options.items()}
    if in_url:
        merged.setdefault("params", {})["query"] = sql
    else:
        merged["content"] = sql.encode()
    return merged


def test_every_credential_channel_authenticates(server: WarehouseServer) -> None:
    user, password = WAREHOUSE_USERS["analyst"]
    ways: list[dict[str, Any]] = [
        {"auth": (user, password)},
        {"headers": {"X-ClickHouse-User": user, "X-ClickHouse-Key": password}},
        {"params": {"user": user, "password": password}},
    ]
    for options in ways:
        response = httpx.post(server.url, timeout=30, **_merge(options, "SELECT currentUser() != '', 1", in_url=False))
        assert (response.status_code, response.text) == (200, "1\t1\n")
    assert httpx.get(server.url + "ping").text == "Ok.\n"
    assert httpx.get(server.url).text == "Ok.\n"


# --- the analyst: read-only inside the engine ------------------------------------------------------------------
ANALYST_READS = [
    ("SELECT count() FROM flowscope.events", "3"),
    ("SELECT count() > 0 FROM system.tables WHERE database = 'flowscope'", "1"),
    ("SELECT count() > 0 FROM system.columns WHERE table = 'events'", "1"),
    ("SELECT count() >= 0 FROM system.parts", "1"),
    ("SELECT count() > 0 FROM system.processes", "1"),
    ("SELECT count() > 0 FROM system.settings", "1"),
    ("SELECT * FROM system.one", "0"),
    ("SELECT sum(number) FROM numbers(4)", "6"),
    ("SELECT count() >= 0 FROM audit.query_log", "1"),
    ("SHOW TABLES FROM flowscope", "events"),
    ("EXISTS TABLE flowscope.events", "1"),
]


@pytest.mark.parametrize(("sql", "expected"), ANALYST_READS)
def test_the_analyst_reads_our_data_the_system_tables_and_the_audit_log(server: WarehouseServer, sql: str,
                                                                        expected: str) -> None:
    for method in ("GET", "POST"):
        assert scalar(server, sql, "analyst", method=method) == expected


READONLY_PROBE = "SELECT getSetting('readonly')"


@pytest.mark.parametrize("role", ["analyst", "writer"])
def test_read_only_is_the_engines_whatever_the_request_says(server: WarehouseServer, role: str) -> None:
    session = f"s-{uuid.uuid4()}"
    asks: list[dict[str, Any]] = [
        {}, {"method": "GET"}, {"params": {"readonly": "1"}}, {"params": {"readonly": "2"}},
        {"params": {"max_threads": "1"}}, {"params": {"max_threads": "1", "readonly": "2"}},
        {"params": {"session_id": session}}, {"params": {"session_id": session, "max_execution_time": "30"}},
        {"body": f"/* readonly = 0 */ {READONLY_PROBE}".encode()},
        {"params": {"ext_structure": "a UInt8"}, "files": {"ext": ("ext", b"1\n")}},
    ]
    for options in asks:
        if "files" in options:
            response = httpx.post(server.url, params={**options["params"], "query": READONLY_PROBE},
                                  files=options["files"], auth=WAREHOUSE_USERS[role], timeout=30)
            assert (response.status_code, response.text) == (200, "1\n")
            continue
        assert scalar(server, READONLY_PROBE, role, **options) == "1", options
    threads = scalar(server, "SELECT getSetting('max_threads'), getSetting('readonly')", role,
                     params={"max_threads": "1"})
    assert threads == "1\t1"  # the allowed setting applies, and readonly is still 1


ANALYST_REFUSED = [
    ("INSERT INTO flowscope.events VALUES (100, 'x')", 164),
    ("INSERT INTO flowscope.events SELECT 100, 'x'", 164),
    ("CREATE TABLE flowscope.t (a UInt8) ENGINE = Memory", 164),
    ("ALTER TABLE flowscope.events DELETE WHERE 1", 164),
    ("ALTER TABLE flowscope.events ADD COLUMN z UInt8", 164),
    ("DROP TABLE flowscope.events", 164),
    ("TRUNCATE TABLE flowscope.events", 164),
    ("RENAME TABLE flowscope.events TO flowscope.gone", 164),
    ("OPTIMIZE TABLE flowscope.events FINAL", 164),
    ("SYSTEM FLUSH LOGS", 164),
    ("SET readonly = 0", 164),
    ("SET max_threads = 1", 164),
    ("SELECT count() FROM flowscope.events SETTINGS readonly = 0", 164),
    ("SELECT count() FROM flowscope.events SETTINGS max_threads = 1", 164),
    ("CREATE TEMPORARY TABLE scratch (a UInt8)", 164),
    ("KILL QUERY WHERE 1", 497),
    ("KILL QUERY WHERE query_id = 'x' SYNC", 497),
]


@pytest.mark.parametrize(("sql", "code"), ANALYST_REFUSED, ids=[s[:40] for s, _ in ANALYST_REFUSED])
def test_the_analyst_changes_nothing(server: WarehouseServer, sql: str, code: int) -> None:
    before = snapshot(server)
    for shape, options in _shapes(sql).items():
        response = run(server, "analyst", sql, **options)
        assert code_of(response) == code, (shape, response.text)
    assert snapshot(server) == before


def test_settings_beyond_the_allow_list_are_refused_to_the_analyst(server: WarehouseServer) -> None:
    refused = {"readonly": "0", "max_memory_usage": "1", "allow_ddl": "1", "output_format_schema": "/tmp/x",
               "additional_table_filters": "{}"}
    for name, value in refused.items():
        response = run(server, "analyst", "SELECT 1", params={name: value})
        assert code_of(response) == (452 if name == "output_format_schema" else 164), name
        if name != "output_format_schema":
            assert f"Cannot modify '{name}' setting in readonly mode. (READONLY)" in response.text
    allowed = {"max_threads": "2", "max_execution_time": "10", "receive_timeout": "10", "max_result_rows": "5",
               "result_overflow_mode": "break", "output_format_json_quote_64bit_integers": "0",
               "date_time_output_format": "iso"}
    assert scalar(server, "SELECT 1", "analyst", params=allowed) == "1"


def test_the_analyst_may_lower_its_queries_priority_never_raise_it(server: WarehouseServer) -> None:
    # os_thread_priority: the nice value of the engine threads running the query (the dashboards run what a page
    # draws below its top at 10). Within 0..19 it is the query's own; below 0 it would take the CPU from others.
    assert scalar(server, "SELECT getSetting('os_thread_priority'), getSetting('readonly')", "analyst",
                  params={"os_thread_priority": "10"}) == "10\t1"
    for value, code in (("-1", 452), ("20", 452), ("high", 72)):
        response = run(server, "analyst", "SELECT 1", params={"os_thread_priority": value})
        assert code_of(response) == code, value
    # Through clickhouse-connect, as the dashboards set it: the driver would refuse it as read-only by itself.
    below = connect(server.url_for("analyst", "flowscope"), settings={"os_thread_priority": 10})
    assert below.command("SELECT getSetting('os_thread_priority')") == 10
    assert below.query("SELECT count() FROM events").result_rows == [(3,)]


def test_the_engine_refuses_what_the_scanner_lets_through(server: WarehouseServer) -> None:
    # A SELECT with a SETTINGS clause passes the keyword scan; readonly = 1 in the engine refuses it.
    response = run(server, "analyst", "SELECT 1 SETTINGS readonly = 0")
    assert code_of(response) == 164
    assert "Cannot modify 'readonly' setting in readonly mode" in response.text


# --- the writer: INSERT into flowscope's tables, nothing else -------------------------------------------------
def test_the_writer_inserts_into_our_tables(server: WarehouseServer) -> None:
    start = int(scalar(server, "SELECT count() FROM flowscope.events"))
    inserts: list[tuple[str, bytes, dict[str, str]]] = [
        ("INSERT INTO flowscope.events FORMAT JSONEachRow", b'{"id":1000,"s":"w"}\n', {}),
        ("INSERT INTO events (id, s) FORMAT CSV", b"1001,w\n", {"database": "flowscope"}),
        ("INSERT INTO `flowscope`.`events` (`id`) SETTINGS async_insert = 0 FORMAT TSV", b"1002\n", {}),
        ("insert into flowscope.events values", b"(1003, 'w')", {}),
    ]
    for head, data, params in inserts:
        response = run(server, "writer", head, in_url=True, params=params, body=data)
        assert response.status_code == 200, response.text
    client = server.client("writer", compress="lz4")
    client.insert("flowscope.events", [[1004, "w"], [1005, "w"]], column_names=["id", "s"])
    assert client.command("SELECT count() FROM flowscope.events WHERE id >= 1000") == 6
    assert int(scalar(server, "SELECT count() FROM flowscope.events")) == start + 6
    assert run(server, "admin", "DELETE FROM flowscope.events WHERE id >= 1000").status_code == 200


WRITER_REFUSED = [
    ("CREATE TABLE flowscope.t (a UInt8) ENGINE = Memory", 497, b""),
    ("DROP TABLE flowscope.events", 497, b""),
    ("ALTER TABLE flowscope.events DELETE WHERE 1", 497, b""),
    ("TRUNCATE TABLE flowscope.events", 497, b""),
    ("OPTIMIZE TABLE flowscope.events", 497, b""),
    ("SET max_threads = 1", 497, b""),
    ("SYSTEM FLUSH LOGS", 497, b""),
    ("KILL QUERY WHERE 1", 497, b""),
    ("INSERT INTO flowscope.events SELECT 100, 'x'", 497, b""),
    ("INSERT INTO other.t FORMAT TSV", 497, b"1\n"),
    ("INSERT INTO audit.query_log FORMAT JSONEachRow", 497, b"{}\n"),
    ("INSERT INTO system.one FORMAT TSV", 497, b"1\n"),
    ("INSERT INTO flowscope.missing FORMAT TSV", 60, b"1\n"),
    ("INSERT INTO flowscope.events (id) SETTINGS max_memory_usage = 1 FORMAT TSV", 452, b"1\n"),
    ("INSERT INTO flowscope.events (id) SETTINGS input_format_values_interpret_expressions = 1 FORMAT Values",
     452, b"(1)"),
    ("INSERT INTO flowscope.events (* EXCEPT s) FORMAT TSV", 497, b"1\n"),
]


@pytest.mark.parametrize(("sql", "code", "data"), WRITER_REFUSED, ids=[s[:40] for s, _, _ in WRITER_REFUSED])
def test_the_writer_does_nothing_else(server: WarehouseServer, sql: str, code: int, data: bytes) -> None:
    before = snapshot(server)
    if data:  # the statement in the URL, the rows in the body (as clickhouse-connect and curl send them)
        session = {"session_id": f"s-{uuid.uuid4()}"}
        variants: dict[str, tuple[str, dict[str, Any]]] = {
            "url": (sql, {"in_url": True, "body": data}),
            "lower": (sql.lower(), {"in_url": True, "body": data}),
            "comment": (f"/* hello */ {sql}", {"in_url": True, "body": data}),
            "multi-line": (sql.replace(" ", "\n", 3), {"in_url": True, "body": data}),
            "session": (sql, {"in_url": True, "body": data, "params": session}),
            "gzip": (sql, {"in_url": True, "body": gzip.compress(data), "headers": {"Content-Encoding": "gzip"}}),
            "body": (sql, {"body": sql.encode() + b"\n" + data}),
        }
    else:
        variants = {shape: (sql, options) for shape, options in _shapes(sql).items()
                    if shape not in {"get", "readonly-0-url"}}
    for shape, (statement, options) in variants.items():
        response = run(server, "writer", statement, **options)
        assert code_of(response) == code, (shape, response.text)
    assert snapshot(server) == before


def test_the_writers_values_are_data_never_expressions(server: WarehouseServer) -> None:
    before = snapshot(server)
    for role in ("writer", "admin"):
        response = run(server, role, "INSERT INTO flowscope.events VALUES", in_url=True,
                       body=b"(7, file('/etc/passwd'))")
        assert code_of(response) == 344, response.text  # SUPPORT_IS_DISABLED: interpreting expressions
    assert snapshot(server) == before


# --- the admin --------------------------------------------------------------------------------------------------
def test_the_admin_runs_ddl_but_never_writes_system_or_audit(server: WarehouseServer) -> None:
    for sql in ("CREATE TABLE flowscope.admin_t (a UInt8) ENGINE = MergeTree ORDER BY a",
                "INSERT INTO flowscope.admin_t VALUES (1)", "ALTER TABLE flowscope.admin_t ADD COLUMN b UInt8",
                "DROP TABLE flowscope.admin_t", "KILL QUERY WHERE query_id = 'nothing-runs-with-this-id'"):
        assert run(server, "admin", sql).status_code == 200, sql
    before = snapshot(server)
    audit_rows = scalar(server, "SELECT count() FROM audit.query_log WHERE user = 'forged'")
    for sql, params in [
        ("INSERT INTO audit.query_log (user) VALUES ('forged')", {}),
        ("ALTER TABLE audit.query_log DELETE WHERE 1", {}),
        ("DROP TABLE audit.query_log", {}),
        ("DROP DATABASE audit", {}),
        ("TRUNCATE TABLE query_log", {"database": "audit"}),
        ("DROP TABLE system.one", {}),
        ("CREATE TABLE system.x (a UInt8) ENGINE = Memory", {}),
    ]:
        response = run(server, "admin", sql, params=params)
        assert code_of(response) == 497, (sql, response.text)
    session = {"session_id": f"s-{uuid.uuid4()}"}
    assert run(server, "admin", "USE audit", params=session).status_code == 200
    assert code_of(run(server, "admin", "TRUNCATE TABLE query_log", params=session)) == 497
    assert scalar(server, "SELECT count() FROM audit.query_log WHERE user = 'forged'") == audit_rows
    assert snapshot(server) == before
    assert scalar(server, "SELECT count() FROM system.one") == "1"


# --- the audit log ----------------------------------------------------------------------------------------------
def _audit_rows(server: WarehouseServer, query_id: str) -> list[list[str]]:
    deadline = time.monotonic() + AUDIT_WAIT_S
    sql = ("SELECT user, role, query_kind, read_rows, written_rows, exception_code, http_method, address "
           "FROM audit.query_log WHERE query_id = {q:String}")
    while time.monotonic() < deadline:
        text = scalar(server, sql, "analyst", params={"param_q": query_id})
        if text:
            return [line.split("\t") for line in text.splitlines()]
        time.sleep(0.2)
    raise AssertionError(f"no audit row for {query_id} after {AUDIT_WAIT_S} s")


def test_the_audit_log_records_who_did_what_never_the_text(server: WarehouseServer) -> None:
    secret, parameter = f"secret-{uuid.uuid4()}", f"param-{uuid.uuid4()}"
    analyst, writer, admin = (WAREHOUSE_USERS[role][0] for role in ("analyst", "writer", "admin"))
    ids = {name: f"{name}-{uuid.uuid4()}" for name in ("read", "insert", "refused", "auth", "ddl")}
    read = run(server, "analyst", f"SELECT number, '{secret}', {{p:String}} FROM numbers(10)",
               params={"query_id": ids["read"], "param_p": parameter})
    assert read.status_code == 200
    inserted = run(server, "writer", "INSERT INTO flowscope.events FORMAT TSV", in_url=True,
                   body=f"2000\t{secret}\n".encode(), params={"query_id": ids["insert"]})
    assert inserted.status_code == 200
    refused = run(server, "analyst", f"DROP TABLE flowscope.events /* {secret} */", params={"query_id": ids["refused"]})
    assert code_of(refused) == 164
    failed = httpx.post(server.url, params={"query_id": ids["auth"]}, content=f"SELECT '{secret}'".encode(),
                        auth=(analyst, secret))
    assert code_of(failed) == 516
    ddl = run(server, "admin", "CREATE TABLE flowscope.audited (a UInt8) ENGINE = Memory",
              params={"query_id": ids["ddl"]})
    assert ddl.status_code == 200
    assert _audit_rows(server, ids["read"]) == [[analyst, "analyst", "SELECT", "10", "0", "0", "POST", "127.0.0.1"]]
    assert _audit_rows(server, ids["insert"]) == [[writer, "writer", "INSERT", "0", "1", "0", "POST", "127.0.0.1"]]
    assert _audit_rows(server, ids["refused"]) == [[analyst, "analyst", "DROP", "0", "0", "164", "POST",
                                                    "127.0.0.1"]]
    assert _audit_rows(server, ids["auth"]) == [[analyst, "", "AUTH", "0", "0", "516", "POST", "127.0.0.1"]]
    assert _audit_rows(server, ids["ddl"]) == [[admin, "admin", "CREATE", "0", "0", "0", "POST", "127.0.0.1"]]
    everything = scalar(server, "SELECT * FROM audit.query_log FORMAT TSV", "analyst")
    assert secret not in everything and parameter not in everything
    log = server.log()
    assert f"query_id={ids['read']}" in log
    assert secret not in log and parameter not in log
    ttl = scalar(server, "SELECT create_table_query FROM system.tables WHERE database = 'audit' AND name = "
                         "'query_log'")
    assert "TTL toDateTime(event_time) + toIntervalDay(30)" in ttl
    assert run(server, "admin", "DELETE FROM flowscope.events WHERE id = 2000").status_code == 200
    assert run(server, "admin", "DROP TABLE flowscope.audited").status_code == 200


def test_sessions_belong_to_their_user(server: WarehouseServer) -> None:
    session = {"session_id": f"s-{uuid.uuid4()}"}
    assert run(server, "admin", "CREATE TEMPORARY TABLE mine (a UInt8)", params=session).status_code == 200
    assert run(server, "admin", "INSERT INTO mine VALUES (7)", params=session).status_code == 200
    assert scalar(server, "SELECT sum(a) FROM mine", "admin", params=session) == "7"
    other = run(server, "analyst", "SELECT sum(a) FROM mine", params=session)
    assert code_of(other) == 60  # the analyst's session of the same id is another, empty session


def test_the_server_refuses_to_start_without_users(tmp_path: Path) -> None:
    from chserver.app import serve

    with pytest.raises(SystemExit) as refused:
        serve(host="127.0.0.1", port=free_port(), data_dir=tmp_path / "w", access=None)
    assert refused.value.code == 3



def test_a_data_person_reads_with_clickhouse_connect_as_the_analyst(server: WarehouseServer) -> None:
    client = server.client("analyst", database="flowscope", compress="zstd")
    assert client.command("SELECT getSetting('readonly')") == 1
    assert client.query("SELECT count() FROM events").result_rows == [(3,)]
    assert client.query_df("SELECT id FROM events ORDER BY id")["id"].tolist() == [1, 2, 3]
    assert client.query("SELECT name FROM system.tables WHERE database = 'flowscope'").result_rows == [("events",)]
    with pytest.raises(DatabaseError, match="code: 164"):
        client.command("DROP TABLE events")
