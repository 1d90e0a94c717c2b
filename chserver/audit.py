"""The audit log: one row per request in ``audit.query_log`` (like ``system.query_log``), written off the request path.

A row records who (user, role), what kind of statement (SELECT, INSERT, CREATE, …; AUTH for a failed
authentication), when and how long, rows and bytes read and written, the error code (0 = ok), the
HTTP method and the client address: never the statement text, a parameter value or a setting value.
Rows are queued and written in batches by a thread every second and at shutdown, with the server's
internal admin connection; nobody else may write the ``audit`` database. Rows older than the
retention are dropped by the table's TTL. ``read_rows``/``read_bytes`` are what chDB reports for a query
(the rows and bytes of its result, e.g. 1 for ``SELECT count() …``); ``written_*`` are the rows and bytes
an INSERT wrote.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import orjson

from chserver.access import AUDIT_DATABASE

logger = logging.getLogger(__name__)

AUDIT_TABLE = "query_log"
FLUSH_INTERVAL_S = 1.0
MAX_BATCH = 10_000


def audit_ddl(retention_days: int) -> list[str]:
    """The statements that create the audit database and table (idempotent) and set its retention."""
    table = f"{AUDIT_DATABASE}.{AUDIT_TABLE}"
    ttl = f"toDateTime(event_time) + toIntervalDay({int(retention_days)})"
    return [
        f"CREATE DATABASE IF NOT EXISTS {AUDIT_DATABASE}",
        f"""CREATE TABLE IF NOT EXISTS {table}
(
    event_date Date DEFAULT toDate(event_time),
    event_time DateTime64(6, 'UTC'),
    query_id String,
    user LowCardinality(String),
    role LowCardinality(String),
    query_kind LowCardinality(String),
    query_duration_ms UInt64,
    read_rows UInt64,
    read_bytes UInt64,
    written_rows UInt64,
    written_bytes UInt64,
    exception_code Int32,
    http_method LowCardinality(String),
    address String
)
ENGINE = MergeTree PARTITION BY event_date ORDER BY (event_time, query_id)
TTL {ttl}""",
        f"ALTER TABLE {table} MODIFY TTL {ttl}",
    ]


@dataclass(frozen=True)
class AuditRecord:
    """One request, as the audit log keeps it."""

    event_time: datetime
    query_id: str
    user: str
    role: str
    query_kind: str
    query_duration_ms: int
    read_rows: int
    read_bytes: int
    written_rows: int
    written_bytes: int
    exception_code: int
    http_method: str
    address: str

    def row(self) -> bytes:
        values = asdict(self)
        values["event_time"] = self.event_time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        return orjson.dumps(values) + b"\n"


def now() -> datetime:
    return datetime.now(UTC)


class AuditLog:
    """Queues records and writes them in batches with ``write(JSONEachRow bytes)`` from its own thread."""

    def __init__(self, write: Callable[[bytes], None], *, interval_s: float = FLUSH_INTERVAL_S) -> None:
        self._write = write
        self._interval_s = interval_s
        self._queue: queue.SimpleQueue[AuditRecord] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="warehouse-audit", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def record(self, entry: AuditRecord) -> None:
        """Queue a record (never blocks the request) and log it."""
        self._queue.put(entry)
        logger.info(
            "query user=%s role=%s kind=%s query_id=%s duration_ms=%d read_rows=%d read_bytes=%d written_rows=%d "
            "written_bytes=%d code=%d method=%s address=%s", entry.user, entry.role or "-", entry.query_kind,
            entry.query_id, entry.query_duration_ms, entry.read_rows, entry.read_bytes, entry.written_rows,
            entry.written_bytes, entry.exception_code, entry.http_method, entry.address,
        )

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.flush()

    def flush(self) -> int:
        """Write what is queued; returns how many rows were written."""
        written = 0
        while True:
            batch: list[bytes] = []
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait().row())
                except queue.Empty:
                    break
            if not batch:
                return written
            try:
                self._write(b"".join(batch))
            except Exception:  # the audit log must not take the server down; the log lines remain
                logger.exception("cannot write %d audit rows", len(batch))
                return written
            written += len(batch)

    def close(self) -> None:
        """Stop the thread and write what is left."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.flush()
