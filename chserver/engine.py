"""The chDB engine: connection handles, sessions, and the jobs it runs on its thread pool.

The engine runs queries on a thread pool, each on its own chDB connection ("handle"): handles of
one engine run concurrently and each keeps its own current database and settings, like a
ClickHouse session. Requests without a session borrow a pooled handle; a session owns one until it
expires. The event loop never runs a query, so ``/ping`` answers during long queries.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from chserver.access import AccessConfig, Role
from chserver.compression import DEFAULT_ZLIB_LEVEL, decode_body, decompress_native_blocks, encode_body
from chserver.errors import parse_engine_error
from chserver.exceptions import EngineError, WarehouseServerError
from chserver.grants import Plan, Request, plan, statement_kind
from chserver.isolation import check_format_name, check_isolation, denied_names
from chserver.lock import open_failure
from chserver.params import DEFAULT_SESSION_TIMEOUT_S
from chserver.policy import check_output_format
from chserver.protocol import NOT_IMPLEMENTED, SYNTAX_ERROR, UNKNOWN_SETTING
from chserver.sqlscan import quote_identifier, set_assignments, setting_literal, tokenize, use_target
from chserver.statements import Statement, build_statement

logger = logging.getLogger(__name__)

# What every engine connection starts with, so it behaves like a ClickHouse server rather than clickhouse-local,
# and never evaluates expressions found in inserted data (``VALUES (file('/etc/passwd'))``).
SERVER_PROFILE: Mapping[str, str] = {
    "implicit_select": "0",
    "input_format_values_interpret_expressions": "0",
    "input_format_values_deduce_templates_of_expressions": "0",
    # An insert into a raw table feeds several materialized views (statuses feed eight): run them side by side.
    # The production server's profile says the same (deploy/clickhouse/users.d/flowscope.xml).
    "parallel_view_processing": "1",
}
TABLE_CACHE_S = 2.0  # how long the writer's "this table exists" answer is reused

_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Handle:
    """One chDB connection with its own current database and settings; used by one thread at a time."""

    def __init__(self, connection: Any, baseline: Mapping[str, str]) -> None:
        self.connection = connection
        self._baseline = baseline  # setting → literal every fresh handle has (SERVER_PROFILE, chDB's own)
        self.database = "default"
        self.state: dict[str, str] = {}  # setting → literal in effect, for settings we changed
        self.session_values: dict[str, str] = {}  # session handles: what SET statements set
        self.session_database = "default"

    def query(self, sql: str, fmt: str = "TabSeparated", params: Mapping[str, str] | None = None) -> Any:
        try:
            return self.connection.query(sql, fmt, params=dict(params) if params else None)
        except Exception as exc:  # chDB raises ChdbError/RuntimeError carrying ClickHouse's message
            raise parse_engine_error(str(exc)) from None

    def insert(self, head: str, fmt: str, data: bytes) -> Any:
        try:
            inserter = self.connection.send_insert(head, fmt)
        except Exception as exc:
            raise parse_engine_error(str(exc)) from None
        try:
            if data:
                inserter.append(data)
            return inserter.finish()
        except Exception as exc:
            with contextlib.suppress(Exception):
                inserter.cancel()
            raise parse_engine_error(str(exc)) from None

    def prepare(self, database: str, settings: Mapping[str, str]) -> None:
        """Make the handle's database and settings exactly what this request asks for."""
        desired = {**self.session_values, **{name: setting_literal(value) for name, value in settings.items()}}
        for name in [n for n in self.state if n not in desired]:
            self.query(f"SET {name} = {self._baseline.get(name, 'DEFAULT')}")
            del self.state[name]
        for name, literal in desired.items():
            if self.state.get(name) == literal:
                continue
            if not _SETTING_NAME.match(name):
                raise EngineError(UNKNOWN_SETTING, f"Unknown setting '{name}'", "UNKNOWN_SETTING")
            self.query(f"SET {name} = {literal}")
            self.state[name] = literal
        if database != self.database:
            self.query(f"USE {quote_identifier(database)}")
            self.database = database

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.connection.close()


@dataclass
class Session:
    """A ClickHouse HTTP session: a handle kept (with its settings, database, temporary tables) across requests."""

    session_id: str
    user: str = ""
    readonly: int = 0  # the session handle's engine readonly level (1 for every user but the admin)
    timeout_s: int = DEFAULT_SESSION_TIMEOUT_S
    handle: Handle | None = None
    busy: bool = False
    last_used: float = field(default_factory=time.monotonic)

    def expired(self, now: float) -> bool:
        return not self.busy and now - self.last_used > self.timeout_s


@dataclass(frozen=True)
class ExternalTable:
    """A file of a multipart request, queried as a temporary table (ClickHouse's "external data")."""

    name: str
    structure: str
    fmt: str
    data: bytes


@dataclass
class Job:
    """One request, ready for the engine thread."""

    method: str
    query: str
    body: bytes
    user: str = ""
    role: Role = Role.ANALYST
    readonly_setting: str | None = None  # the request's readonly setting, as sent
    content_encoding: str | None = None
    native_compressed: bool = False
    default_format: str = "TabSeparated"
    database: str | None = None
    settings: dict[str, str] = field(default_factory=dict)
    query_params: dict[str, str] = field(default_factory=dict)
    readonly: int = 0
    external: list[ExternalTable] = field(default_factory=list)
    response_encoding: str | None = None
    compression_level: int = DEFAULT_ZLIB_LEVEL
    session: Session | None = None
    kind: str = "OTHER"  # set by the engine: the statement kind the audit log records


@dataclass(frozen=True)
class Outcome:
    """What the engine thread hands back: the (compressed) body and the response metadata."""

    body: bytes
    output_format: str
    encoding: str | None
    summary: dict[str, int]


class Engine:
    """The chDB engine on a data directory, with a thread pool and a pool of connection handles."""

    def __init__(self, data_dir: Path, access: AccessConfig, *, threads: int | None = None) -> None:
        import chdb

        self._chdb = chdb
        data_dir.mkdir(parents=True, exist_ok=True)
        self._path = str(data_dir.resolve())
        try:
            admin = chdb.connect(self._path)
        except Exception as exc:
            raise WarehouseServerError(open_failure(data_dir, exc)) from exc
        self._admin = Handle(admin, {})
        for name, value in SERVER_PROFILE.items():
            self._admin.query(f"SET {name} = {setting_literal(value)}")
        rows = self._admin.query("SELECT name, value FROM system.settings WHERE changed", "JSONEachRow").bytes()
        self._baseline: dict[str, str] = {
            row["name"]: setting_literal(row["value"]) for row in map(orjson.loads, rows.splitlines())
        }
        info = self._admin.query("SELECT version(), timezone()", "TabSeparated").bytes().decode().split("\t")
        self.version, self.timezone = info[0].strip(), info[1].strip()
        self.access = access
        listed = self._admin.query("SELECT 'f', name FROM system.table_functions UNION ALL "
                                   "SELECT 'e', name FROM system.table_engines").bytes().decode().splitlines()
        pairs = [line.split("\t", 1) for line in listed if "\t" in line]
        self.denied = denied_names([n for k, n in pairs if k == "f"], [n for k, n in pairs if k == "e"])
        self._tables: dict[tuple[str, str], float] = {}
        self.server_name = socket.gethostname()
        self.threads = threads or min(32, (os.cpu_count() or 1) + 4)
        self.executor = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="warehouse-query")
        self.sessions: dict[tuple[str, str], Session] = {}  # (user, session_id) → session; only the event loop
        self._idle: dict[int, list[Handle]] = {0: [], 1: [], 2: []}  # pooled handles per readonly level
        self._lock = threading.Lock()
        self._running = 0
        self._closed = False
        self._admin_lock = threading.Lock()
        self._admin_closed = False

    # handles -----------------------------------------------------------------------------------
    def _new_handle(self, readonly: int = 0) -> Handle:
        with self._lock:
            connection = self._chdb.connect(self._path)
        handle = Handle(connection, self._baseline)
        for name, value in SERVER_PROFILE.items():
            handle.query(f"SET {name} = {setting_literal(value)}")
        if readonly:
            handle.query(f"SET readonly = {readonly}")
        return handle

    def _borrow(self, readonly: int) -> Handle:
        with self._lock:
            if self._idle[readonly]:
                return self._idle[readonly].pop()
        return self._new_handle(readonly)

    def _give_back(self, handle: Handle, readonly: int, *, discard: bool) -> None:
        with self._lock:
            if not discard and not self._closed and len(self._idle[readonly]) < self.threads:
                self._idle[readonly].append(handle)
                return
        handle.close()

    def close_session_handle(self, session: Session) -> None:
        if session.handle is not None:
            session.handle.close()
            session.handle = None

    def _fresh_handle(self, readonly: int, database: str, settings: Mapping[str, str],
                      external: list[ExternalTable]) -> Handle:
        """A connection for one request: its settings and external tables first, then ``readonly``."""
        handle = self._new_handle()
        try:
            handle.prepare(database, settings)
            self._load_external(handle, external)
            handle.query(f"SET readonly = {readonly}")
        except BaseException:
            handle.close()
            raise
        return handle

    def _load_external(self, handle: Handle, external: list[ExternalTable]) -> None:
        for table in external:
            check_isolation(f"({table.structure})", user="", denied=self.denied)
            if ";" in table.structure:
                raise EngineError(SYNTAX_ERROR, f"Invalid structure of external table {table.name}", "SYNTAX_ERROR")
            check_format_name(table.fmt)
            handle.query(f"CREATE TEMPORARY TABLE {quote_identifier(table.name)} ({table.structure}) "
                         "ENGINE = Memory")
            handle.insert(f"INSERT INTO {quote_identifier(table.name)}", table.fmt, table.data)

    def table_exists(self, database: str, table: str) -> bool:
        """Whether a table exists (asked with the internal connection; a yes is reused for a moment)."""
        now = time.monotonic()
        if self._tables.get((database, table), 0.0) > now:
            return True
        rows = self.admin_query("SELECT count() FROM system.tables WHERE database = {d:String} AND name = {t:String}",
                                {"d": database, "t": table})
        exists = rows.strip() == b"1"
        if exists:
            self._tables[(database, table)] = now + TABLE_CACHE_S
        return exists

    def admin_query(self, sql: str, params: Mapping[str, str] | None = None) -> bytes:
        """Run a statement of the server itself on its internal (admin) connection."""
        with self._admin_lock:
            if self._admin_closed:
                raise WarehouseServerError("the warehouse engine is closed")
            result = self._admin.query(sql, "TabSeparated", params)
            return bytes(result.bytes()) if result is not None else b""

    def admin_insert(self, head: str, fmt: str, data: bytes) -> None:
        """Insert rows of the server itself (the audit log) on its internal connection."""
        with self._admin_lock:
            if self._admin_closed:
                raise WarehouseServerError("the warehouse engine is closed")
            self._admin.insert(head, fmt, data)

    # running -------------------------------------------------------------------------------------
    def execute(self, job: Job) -> Outcome:
        """Run one request on a handle (in an engine thread)."""
        with self._lock:
            self._running += 1
        try:
            return self._execute(job)
        finally:
            with self._lock:
                self._running -= 1

    def _plan(self, job: Job, statement: Statement) -> Plan:
        job.kind = statement_kind(statement)
        check_isolation(statement.sql, user=job.user, denied=self.denied)
        session = job.session
        request = Request(
            user=job.user, role=job.role, method=job.method, readonly=job.readonly,
            readonly_setting=job.readonly_setting, settings=job.settings,
            database=job.database or (session.handle.session_database if session and session.handle else "default"),
            in_session=session is not None,
        )
        decided = plan(statement, request, databases=self.access.databases, table_exists=self.table_exists)
        check_output_format(statement)
        return decided

    def _execute(self, job: Job) -> Outcome:
        body = decode_body(job.body, job.content_encoding)
        if job.native_compressed:
            body = decompress_native_blocks(body)
        statement = build_statement(job.query, body, job.default_format)
        decided = self._plan(job, statement)
        session = job.session if not decided.insert_head else None
        level = decided.readonly
        fresh = level > 0 and bool(decided.settings or job.external)
        if session is not None and session.handle is None:
            session.handle = self._new_handle(session.readonly)
        if session is not None and session.handle is not None:
            database = job.database or session.handle.session_database
            fresh = fresh and session.readonly > 0
            handle = self._fresh_handle(level, database, decided.settings, job.external) if fresh else session.handle
        else:
            database = job.database or "default"
            handle = self._fresh_handle(level, database, decided.settings, job.external) if fresh \
                else self._borrow(level)
        discard = fresh
        loaded: list[str] = [] if fresh else [table.name for table in job.external]
        try:
            if not fresh:
                handle.prepare(database, decided.settings)
                self._load_external(handle, job.external)
            started = time.perf_counter_ns()
            if decided.insert_head:
                output, summary = self._insert(handle, decided.insert_head, statement)
            elif statement.is_insert_with_data:
                output, summary = self._insert(handle, statement.sql, statement)
            else:
                result = handle.query(statement.sql, statement.output_format, job.query_params)
                output = bytes(result.bytes()) if result is not None else b""
                summary = {} if result is None else {
                    "read_rows": int(result.rows_read()), "read_bytes": int(result.bytes_read()),
                    "written_rows": int(result.rows_written()), "written_bytes": int(result.bytes_written()),
                }
            summary["elapsed_ns"] = time.perf_counter_ns() - started
            if session is not None and not fresh:
                self._track_session_state(handle, statement)
            elif session is None:  # a pooled handle must come back as it was lent: SET/USE/temporary tables leak
                discard = discard or statement.keyword in {"SET", "USE"} or _creates_temporary(statement)
        finally:
            for name in loaded:
                try:
                    handle.query(f"DROP TEMPORARY TABLE IF EXISTS {quote_identifier(name)}")
                except EngineError:
                    discard = True
            if fresh:
                handle.close()
            elif session is None:
                self._give_back(handle, level, discard=discard)
        encoding = job.response_encoding if output else None
        if encoding:
            output = encode_body(output, encoding, job.compression_level)
        return Outcome(output, statement.output_format, encoding, summary)

    def _insert(self, handle: Handle, head: str, statement: Statement) -> tuple[bytes, dict[str, int]]:
        head_tokens = [t.text.upper() for t in tokenize(head) if t.kind == "word"]
        if "SELECT" in head_tokens:
            raise EngineError(NOT_IMPLEMENTED, "INSERT … SELECT with inline data (input()) is not supported by the "
                              "embedded warehouse", "NOT_IMPLEMENTED")
        check_format_name(statement.insert_format)
        result = handle.insert(head, statement.insert_format, statement.data)
        return b"", {"read_rows": 0, "read_bytes": 0, "written_rows": int(result.rows_written),
                     "written_bytes": int(result.bytes_written)}

    @staticmethod
    def _track_session_state(handle: Handle, statement: Statement) -> None:
        """Keep track of what SET/USE changed on a session's handle."""
        if statement.keyword == "SET":
            for name, literal in set_assignments(statement.sql):
                if not name.startswith("param_"):
                    handle.session_values[name] = literal
                    handle.state[name] = literal
        elif statement.keyword == "USE":
            target = use_target(statement.sql)
            if target:
                handle.session_database = handle.database = target

    # lifecycle -----------------------------------------------------------------------------------
    def expire_sessions(self, now: float | None = None) -> list[Session]:
        """Forget idle sessions past their timeout (event loop); the caller closes their handles."""
        moment = time.monotonic() if now is None else now
        expired = [s for s in self.sessions.values() if s.expired(moment)]
        for session in expired:
            del self.sessions[(session.user, session.session_id)]
        return expired

    def cancel_running(self) -> None:
        """Cancel every running query (thread-safe); their requests fail with QUERY_WAS_CANCELLED."""
        with self._lock:
            running = self._running
        if not running:
            return
        with self._admin_lock:
            if self._admin_closed:
                return
            logger.info("cancelling %d running queries", running)
            try:
                self._admin.query("KILL QUERY WHERE query NOT ILIKE 'KILL QUERY%' ASYNC")
            except EngineError as error:
                logger.warning("cannot cancel running queries: %s", error.message)

    def close(self) -> None:
        """Cancel running queries, wait for the engine threads, close every handle (blocking)."""
        with self._lock:
            self._closed = True
        self.cancel_running()
        self.executor.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            idle = [handle for pool in self._idle.values() for handle in pool]
            self._idle = {level: [] for level in self._idle}
        for handle in idle:
            handle.close()
        for session in list(self.sessions.values()):
            self.close_session_handle(session)
        self.sessions.clear()
        with self._admin_lock:
            self._admin_closed = True
            self._admin.close()


def _creates_temporary(statement: Statement) -> bool:
    return statement.keyword in {"CREATE", "DROP"} and "TEMPORARY" in statement.sql[:64].upper()
