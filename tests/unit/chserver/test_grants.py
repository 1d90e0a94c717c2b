"""What each role may run: the analyst's settings, the writer's rebuilt INSERT, the admin's protected databases."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from chserver.access import Role
from chserver.exceptions import EngineError
from chserver.grants import Plan, Request, plan, statement_kind
from chserver.statements import build_statement

DATABASES = ("flowscope",)


def _plan(role: Role, sql: str, body: bytes = b"", *, settings: Mapping[str, str] | None = None,
          method: str = "POST", database: str = "default", readonly_setting: str | None = None) -> Plan:
    request = Request(user="u", role=role, method=method, readonly=2 if method == "GET" else 0,
                      readonly_setting=readonly_setting, settings=dict(settings or {}), database=database,
                      in_session=False)
    return plan(build_statement(sql, body, "TSV"), request, databases=DATABASES,
                table_exists=lambda database, table: table != "missing")


def _code(role: Role, sql: str, body: bytes = b"", **options: object) -> int:
    with pytest.raises(EngineError) as refused:
        _plan(role, sql, body, **options)  # type: ignore[arg-type]
    return refused.value.code


def test_the_writers_insert_is_rebuilt_from_quoted_names() -> None:
    rebuilt = _plan(Role.WRITER, "INSERT INTO flowscope.t (`a`, b) SETTINGS async_insert = 1 FORMAT Native",
                    b"\x01")
    assert rebuilt == Plan(readonly=0, settings={"async_insert": "1"},
                           insert_head="INSERT INTO `flowscope`.`t` (`a`, `b`)")
    unqualified = _plan(Role.WRITER, "insert into table t values", b"(1)", database="flowscope")
    assert unqualified.insert_head == "INSERT INTO `flowscope`.`t`"


@pytest.mark.parametrize(
    ("sql", "body", "code"),
    [
        ("INSERT INTO other.t FORMAT TSV", b"1", 497),
        ("INSERT INTO flowscope.missing FORMAT TSV", b"1", 60),
        ("INSERT INTO flowscope.t SELECT 1", b"", 497),
        ("INSERT INTO flowscope.t (* EXCEPT a) FORMAT TSV", b"1", 497),
        ("INSERT INTO flowscope.t SETTINGS max_memory_usage = 1 FORMAT TSV", b"1", 452),
        ("CREATE TABLE flowscope.x (a UInt8) ENGINE = Memory", b"", 497),
        ("SET max_threads = 1", b"", 497),
        ("KILL QUERY WHERE 1", b"", 497),
    ],
)
def test_the_writer_may_only_insert(sql: str, body: bytes, code: int) -> None:
    assert _code(Role.WRITER, sql, body) == code


def test_the_analyst_runs_read_only_with_a_few_settings() -> None:
    assert _plan(Role.ANALYST, "SELECT 1", settings={"max_threads": "1", "readonly": "2"},
                 readonly_setting="2") == Plan(readonly=1, settings={"max_threads": "1"})
    assert _code(Role.ANALYST, "SELECT 1", settings={"max_memory_usage": "1"}) == 164
    assert _code(Role.ANALYST, "SELECT 1", settings={"readonly": "0"}, readonly_setting="0") == 164
    assert _code(Role.ANALYST, "DROP TABLE flowscope.t") == 164
    assert _code(Role.ANALYST, "KILL QUERY WHERE 1") == 497


@pytest.mark.parametrize(("value", "code"), [("0", 0), ("19", 0), (" 10 ", 0), ("-1", 452), ("20", 452), ("x", 72)])
def test_the_analyst_may_only_lower_its_own_threads_priority(value: str, code: int) -> None:
    # os_thread_priority is the nice value of the threads running the query: a reader may yield the CPU (0..19),
    # never take it from other work (below 0).
    if code:
        assert _code(Role.ANALYST, "SELECT 1", settings={"os_thread_priority": value}) == code
    else:
        assert _plan(Role.ANALYST, "SELECT 1", settings={"os_thread_priority": value}) == Plan(
            readonly=1, settings={"os_thread_priority": value})


def test_the_admin_never_writes_system_or_audit() -> None:
    assert _plan(Role.ADMIN, "DROP TABLE flowscope.t") == Plan(readonly=0)
    assert _plan(Role.ADMIN, "SELECT 1", method="GET") == Plan(readonly=2)
    assert _code(Role.ADMIN, "DROP TABLE audit.query_log") == 497
    assert _code(Role.ADMIN, "DROP DATABASE `audit`") == 497
    assert _code(Role.ADMIN, "TRUNCATE TABLE query_log", database="audit") == 497
    assert _code(Role.ADMIN, "DROP TABLE system.one") == 497
    assert _plan(Role.ADMIN, "CREATE TEMPORARY TABLE x (a UInt8)", database="system").readonly == 0


def test_the_audit_kind_is_a_keyword_never_text() -> None:
    kinds = [statement_kind(build_statement(sql, b"", "TSV")) for sql in
             ("WITH 1 AS x SELECT x", "desc t", "INSERT INTO t VALUES (1)", "secretword 1")]
    assert kinds == ["SELECT", "DESCRIBE", "INSERT", "OTHER"]
