"""The HTTP application: ClickHouse's HTTP interface over the engine, and ``serve`` that runs it in one process.

A chDB data directory can be opened by one process only, so every other process (receiver, stream
workers, dashboards, an analyst's clickhouse-connect or curl) talks to this server exactly as to a
ClickHouse server: ``GET /ping``, ``GET /?query=``, ``POST /`` with the query in the URL and/or the
body, ``INSERT … FORMAT <fmt>`` with a (compressed) data body, ``param_<name>`` server-side
parameters, every other URL parameter applied as a setting of that request only, sessions
(``session_id``), multipart requests with external tables, ClickHouse's response headers, HTTP
compression and its exception format (``X-ClickHouse-Exception-Code``, ClickHouse's status codes).
Every query needs a user (access.py); what each role may run is decided in grants.py and isolation.py;
every request is recorded in the audit log (audit.py). ``/ping`` and a bare ``GET /`` need no user.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from pathlib import Path
from types import FrameType

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from chserver.access import AUDIT_DATABASE, AccessConfig, Authenticator, Role, User, credentials
from chserver.audit import AUDIT_TABLE, AuditLog, AuditRecord, audit_ddl, now
from chserver.compression import DEFAULT_ZLIB_LEVEL, choose_response_encoding
from chserver.engine import Engine, ExternalTable, Job, Session
from chserver.errors import error_response
from chserver.exceptions import EngineError, WarehouseServerError
from chserver.lock import ensure_free
from chserver.params import HTTP_SETTINGS, RequestParams, parse_bool, parse_session_timeout, split_params
from chserver.policy import readonly_level
from chserver.protocol import (
    BAD_ARGUMENTS,
    NOT_IMPLEMENTED,
    QUERY_WITH_SAME_ID_IS_ALREADY_RUNNING,
    SESSION_IS_LOCKED,
    SESSION_NOT_FOUND,
    STD_EXCEPTION,
    content_type,
)

logger = logging.getLogger(__name__)

MAX_FORM_PART_BYTES = 256 * 1024 * 1024
SHUTDOWN_GRACE_S = 5  # on SIGTERM, requests get this long to finish …
CANCEL_QUERIES_AFTER_S = 3.0  # … and queries still running after this long are cancelled
STARTUP_FAILURE = 3  # uvicorn's exit status when the app cannot start


def create_app(data_dir: Path, *, access: AccessConfig, threads: int | None = None) -> Starlette:
    """ClickHouse's HTTP interface over a chDB engine opened (and closed) with the app's lifespan."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            engine = await asyncio.to_thread(Engine, data_dir, access, threads=threads)
        except WarehouseServerError as error:
            logger.error("%s", error)
            raise
        for statement in audit_ddl(access.audit_retention_days):
            await asyncio.to_thread(engine.admin_query, statement)
        audit = AuditLog(lambda rows: engine.admin_insert(f"INSERT INTO {AUDIT_DATABASE}.{AUDIT_TABLE}",
                                                          "JSONEachRow", rows))
        audit.start()
        app.state.engine = engine
        app.state.audit = audit
        app.state.authenticator = Authenticator(access)
        app.state.running_queries = set()
        sweeper = asyncio.create_task(_expire_sessions(engine))
        logger.info("warehouse engine ClickHouse %s (timezone %s) on %s, %d query threads, users %s",
                    engine.version, engine.timezone, data_dir, engine.threads,
                    ", ".join(f"{user.name} ({user.role.value})" for user in access.users))
        try:
            yield
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            await asyncio.to_thread(audit.close)
            await asyncio.to_thread(engine.close)
            logger.info("warehouse engine closed")

    return Starlette(
        routes=[
            Route("/ping", _ok, methods=["GET", "HEAD"]),
            Route("/replicas_status", _ok, methods=["GET", "HEAD"]),
            Route("/", _query, methods=["GET", "POST", "HEAD"]),
        ],
        lifespan=lifespan,
    )


async def _expire_sessions(engine: Engine) -> None:
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(1.0)
        for session in engine.expire_sessions():
            await loop.run_in_executor(engine.executor, engine.close_session_handle, session)


async def _ok(request: Request) -> Response:
    return PlainTextResponse("Ok.\n")


async def _query(request: Request) -> Response:
    engine: Engine = request.app.state.engine
    if request.method in {"GET", "HEAD"} and not request.url.query:
        return PlainTextResponse("Ok.\n")
    query_id = request.headers.get("x-clickhouse-query-id", "")
    started, clock = now(), time.monotonic()
    name = ""
    try:
        name, password = credentials(request.headers, dict(request.query_params))
        user: User = request.app.state.authenticator.authenticate(name, password)
    except EngineError as error:  # nothing of the request is read or run
        query_id = request.query_params.get("query_id") or query_id or str(uuid.uuid4())
        _audit(request, started, clock, query_id, name, None, "AUTH", {}, error.code)
        return error_response(error, engine.version, query_id, server_name=engine.server_name)
    job: Job | None = None
    summary: dict[str, int] = {}
    code = 0
    try:
        job, response = await _run(request, engine, user)
        query_id = response.headers["X-ClickHouse-Query-Id"]
        summary = getattr(response, "summary", {})
        return response
    except _Failed as failed:
        job, query_id, code = failed.job, failed.query_id, failed.error.code
        return error_response(failed.error, engine.version, failed.query_id, server_name=engine.server_name,
                              encoding=failed.encoding)
    finally:
        _audit(request, started, clock, query_id, user.name, user, job.kind if job else "OTHER", summary, code)


class _Failed(Exception):
    """A request that failed: the error to answer with, and what the audit log needs."""

    def __init__(self, error: EngineError, query_id: str, encoding: str | None, job: Job | None) -> None:
        super().__init__(error.message)
        self.error, self.query_id, self.encoding, self.job = error, query_id, encoding, job


class _Answer(Response):
    """A query's response, with the summary the audit log records."""

    summary: dict[str, int]


def _audit(request: Request, started: datetime, clock: float, query_id: str, name: str, user: User | None,
           kind: str, summary: Mapping[str, int], code: int) -> None:
    """Record a request (the user name as presented, even when authentication failed; never its text)."""
    request.app.state.audit.record(AuditRecord(
        event_time=started, query_id=query_id, user=name[:128], role=user.role.value if user else "",
        query_kind=kind, query_duration_ms=int((time.monotonic() - clock) * 1000),
        read_rows=summary.get("read_rows", 0), read_bytes=summary.get("read_bytes", 0),
        written_rows=summary.get("written_rows", 0), written_bytes=summary.get("written_bytes", 0),
        exception_code=code, http_method=request.method, address=request.client.host if request.client else "",
    ))


async def _run(request: Request, engine: Engine, user: User) -> tuple[Job | None, Response]:
    query_id = request.headers.get("x-clickhouse-query-id", "")
    encoding: str | None = None
    running: set[str] = request.app.state.running_queries
    session: Session | None = None
    close_session = False
    job: Job | None = None
    try:
        job, params = await _job(request, user)
        query_id = params.transport.get("query_id") or query_id or str(uuid.uuid4())
        encoding = job.response_encoding
        close_session = parse_bool(params.transport.get("close_session"))
        if query_id in running:
            raise EngineError(QUERY_WITH_SAME_ID_IS_ALREADY_RUNNING, f"Query with id = {query_id} is already running.",
                              "QUERY_WITH_SAME_ID_IS_ALREADY_RUNNING")
        session = job.session = _claim_session(engine, params, user)
        running.add(query_id)
        try:
            outcome = await asyncio.get_running_loop().run_in_executor(engine.executor, engine.execute, job)
        finally:
            running.discard(query_id)
    except EngineError as error:
        logger.debug("query %s of %s failed: code %d", query_id, user.name, error.code)
        raise _Failed(error, query_id or str(uuid.uuid4()), encoding, job) from None
    except Exception as exc:  # a bug here must still answer like ClickHouse, not drop the connection
        logger.exception("query %s failed unexpectedly", query_id)
        failure = EngineError(STD_EXCEPTION, f"Code: {STD_EXCEPTION}. DB::Exception: {exc}. (STD_EXCEPTION)",
                              "STD_EXCEPTION")
        raise _Failed(failure, query_id or str(uuid.uuid4()), encoding, job) from None
    finally:
        if session is not None:
            await _release_session(engine, session, close=close_session)
    response_headers = {
        "X-ClickHouse-Query-Id": query_id,
        "X-ClickHouse-Format": outcome.output_format,
        "X-ClickHouse-Timezone": params.settings.get("session_timezone") or engine.timezone,
        "X-ClickHouse-Server-Display-Name": engine.server_name,
        "X-ClickHouse-Summary": orjson.dumps({k: str(v) for k, v in outcome.summary.items()}).decode(),
    }
    if outcome.encoding:
        response_headers["Content-Encoding"] = outcome.encoding
    if parse_bool(params.settings.get("add_http_cors_header")) and request.headers.get("origin"):
        response_headers["Access-Control-Allow-Origin"] = "*"
    response = _Answer(outcome.body, media_type=content_type(outcome.output_format), headers=response_headers)
    response.summary = outcome.summary
    return job, response


async def _release_session(engine: Engine, session: Session, *, close: bool) -> None:
    session.busy = False
    session.last_used = time.monotonic()
    key = (session.user, session.session_id)
    if close and engine.sessions.get(key) is session:
        del engine.sessions[key]
        await asyncio.get_running_loop().run_in_executor(engine.executor, engine.close_session_handle, session)


async def _job(request: Request, user: User) -> tuple[Job, RequestParams]:
    """Read a request into a Job (the body stays raw: the engine thread decompresses and scans it)."""
    headers = request.headers
    items = list(request.query_params.multi_items())
    external: list[ExternalTable] = []
    body = b""
    multipart = headers.get("content-type", "").startswith("multipart/form-data")
    if multipart:
        files: list[tuple[str, UploadFile]] = []
        try:
            form = await request.form(max_files=1000, max_fields=10000, max_part_size=MAX_FORM_PART_BYTES)
        except AssertionError as exc:  # starlette without python-multipart
            raise EngineError(NOT_IMPLEMENTED, f"multipart requests need python-multipart: {exc}",
                              "NOT_IMPLEMENTED") from exc
        for key, value in form.multi_items():
            if isinstance(value, str):
                items.append((key, value))
            else:
                files.append((key, value))
        params = split_params(items, external_data=True)
        for name, upload in files:
            external.append(await _external_table(name, upload, params.transport))
    else:
        body = await request.body()
        params = split_params(items)
    transport, settings = params.transport, params.settings
    if parse_bool(transport.get("compress")):
        raise EngineError(NOT_IMPLEMENTED, "compress=1 (ClickHouse's own compression of results) is not supported "
                          "by the embedded warehouse; use enable_http_compression=1", "NOT_IMPLEMENTED")
    readonly = readonly_level(method=request.method, setting=settings.get("readonly", "0"))
    if settings.get("readonly") is not None and user.role is Role.ADMIN and settings["readonly"].strip() == "0" \
            and request.method in {"GET", "HEAD"}:
        readonly = 2  # a GET stays read-only, as in ClickHouse
    compression = None
    if parse_bool(settings.get("enable_http_compression")):
        compression = choose_response_encoding(headers.get("accept-encoding"))
    level_setting = settings.get("http_zlib_compression_level", "")
    engine_settings = {k: v for k, v in settings.items() if k not in HTTP_SETTINGS}
    job = Job(
        method=request.method,
        query=params.query,
        body=body,
        content_encoding=headers.get("content-encoding"),
        native_compressed=parse_bool(transport.get("decompress")),
        default_format=headers.get("x-clickhouse-format") or transport.get("default_format") or "TabSeparated",
        database=headers.get("x-clickhouse-database") or transport.get("database") or None,
        settings=engine_settings,
        query_params=params.query_params,
        readonly=readonly,
        user=user.name,
        role=user.role,
        readonly_setting=settings.get("readonly"),
        external=external,
        response_encoding=compression,
        compression_level=int(level_setting) if level_setting.lstrip("-").isdigit() else DEFAULT_ZLIB_LEVEL,
    )
    return job, params


async def _external_table(name: str, upload: UploadFile, transport: Mapping[str, str]) -> ExternalTable:
    structure = transport.get(f"{name}_structure")
    types = transport.get(f"{name}_types")
    if not structure and types:
        structure = ", ".join(f"_{i} {t.strip()}" for i, t in enumerate(types.split(","), start=1))
    if not structure:
        raise EngineError(BAD_ARGUMENTS, f"Neither structure nor types have not been provided for external table "
                          f"{name}. Use fields {name}_structure or {name}_types to do so.", "BAD_ARGUMENTS")
    return ExternalTable(name, structure, transport.get(f"{name}_format", "TabSeparated"), await upload.read())


def _claim_session(engine: Engine, params: RequestParams, user: User) -> Session | None:
    """The request's session, marked busy (ClickHouse refuses concurrent use of one session).

    Sessions are per user, as in ClickHouse: another user's session of the same id is another session.
    """
    session_id = params.transport.get("session_id")
    if not session_id:
        return None
    timeout = parse_session_timeout(params.transport.get("session_timeout"))
    session = engine.sessions.get((user.name, session_id))
    if session is None:
        if parse_bool(params.transport.get("session_check")):
            raise EngineError(SESSION_NOT_FOUND, f"Session {session_id} not found", "SESSION_NOT_FOUND")
        readonly = 0 if user.role is Role.ADMIN else 1
        session = engine.sessions[(user.name, session_id)] = Session(session_id, user.name, readonly)
    if session.busy:
        raise EngineError(SESSION_IS_LOCKED, f"Session {session_id} is locked by a concurrent client.",
                          "SESSION_IS_LOCKED")
    session.busy = True
    session.timeout_s = timeout
    return session


class _Server(uvicorn.Server):
    """uvicorn's server; on SIGINT/SIGTERM it also cancels queries still running shortly before its deadline."""

    def __init__(self, config: uvicorn.Config, app: Starlette) -> None:
        super().__init__(config)
        self._app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        engine = getattr(self._app.state, "engine", None)
        if not self.should_exit and isinstance(engine, Engine):
            timer = threading.Timer(CANCEL_QUERIES_AFTER_S, engine.cancel_running)
            timer.daemon = True
            timer.start()
        super().handle_exit(sig, frame)


def serve(*, host: str, port: int, data_dir: Path, access: AccessConfig | None, log_level: str = "info",
          threads: int | None = None) -> None:
    """Run the embedded warehouse server (one process) until SIGINT/SIGTERM.

    The process's time zone is UTC, so ``timezone()`` and ``X-ClickHouse-Timezone`` are UTC as on our servers.
    Raises SystemExit(3) when the server cannot start (no users configured, the data directory in use).
    """
    if not isinstance(access, AccessConfig):
        logger.error("the warehouse server needs its users (an AccessConfig): it never serves anonymous requests")
        raise SystemExit(STARTUP_FAILURE)
    try:
        ensure_free(data_dir)
    except WarehouseServerError as error:
        logger.error("%s", error)
        raise SystemExit(STARTUP_FAILURE) from error
    os.environ["TZ"] = "UTC"
    time.tzset()
    app = create_app(data_dir, access=access, threads=threads)
    config = uvicorn.Config(
        app, host=host, port=port, log_level=log_level, access_log=False, proxy_headers=False, lifespan="on",
        timeout_keep_alive=30, timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
    )
    server = _Server(config, app)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        raise SystemExit(STARTUP_FAILURE)
