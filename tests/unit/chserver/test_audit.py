"""The audit log: batched rows without statement text, and the table's retention."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from chserver.audit import AuditLog, AuditRecord, audit_ddl


def _record(query_id: str) -> AuditRecord:
    return AuditRecord(event_time=datetime(2026, 1, 2, 3, 4, 5, 678900, tzinfo=UTC), query_id=query_id, user="u",
                       role="analyst", query_kind="SELECT", query_duration_ms=3, read_rows=10, read_bytes=80,
                       written_rows=0, written_bytes=0, exception_code=0, http_method="GET", address="127.0.0.1")


def test_records_are_written_in_batches_and_at_close() -> None:
    batches: list[bytes] = []
    log = AuditLog(batches.append, interval_s=3600)
    log.start()
    for i in range(3):
        log.record(_record(f"q{i}"))
    log.close()
    assert len(batches) == 1
    rows = [orjson.loads(line) for line in batches[0].splitlines()]
    assert [row["query_id"] for row in rows] == ["q0", "q1", "q2"]
    assert rows[0]["event_time"] == "2026-01-02 03:04:05.678900"
    assert set(rows[0]) == {"event_time", "query_id", "user", "role", "query_kind", "query_duration_ms", "read_rows",
                            "read_bytes", "written_rows", "written_bytes", "exception_code", "http_method",
                            "address"}


def test_a_failing_write_does_not_raise() -> None:
    def broken(rows: bytes) -> None:
        raise RuntimeError("engine closed")

    log = AuditLog(broken)
    log.record(_record("q"))
    assert log.flush() == 0


def test_the_table_keeps_rows_for_the_retention() -> None:
    ddl = audit_ddl(7)
    assert ddl[0] == "CREATE DATABASE IF NOT EXISTS audit"
    assert "TTL toDateTime(event_time) + toIntervalDay(7)" in ddl[1]
    assert ddl[2] == "ALTER TABLE audit.query_log MODIFY TTL toDateTime(event_time) + toIntervalDay(7)"
