"""The embedded warehouse: one process owns a chDB data directory and speaks ClickHouse's HTTP interface.

A chDB data directory can be opened by one process only, so every other process (receiver, stream
workers, dashboards, a data person's clickhouse-connect or curl) talks to this server exactly as to a
ClickHouse server: ``GET /ping``, ``GET /?query=``, ``POST /`` with the query in the URL and/or the
body, ``INSERT … FORMAT <fmt>`` with a (compressed) data body, ``param_<name>`` server-side
parameters, any other URL parameter applied as a setting for that request only, ClickHouse's
response headers and its exception format (``X-ClickHouse-Exception-Code``).

chDB runs one query at a time, so queries are serialised on a worker thread; the event loop stays
free (``/ping`` answers during a long query).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import logging
import os
import re
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lz4.frame
import orjson
import uvicorn
import zstandard
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from warehouse.exceptions import EngineError, WarehouseServerError

logger = logging.getLogger(__name__)

SERVER_NAME = "flowscope-chdb"

# URL parameters of the HTTP interface itself; everything else is a setting.
TRANSPORT_PARAMS = frozenset({
    "query", "database", "default_format", "session_id", "session_timeout", "session_check", "query_id",
    "compress", "decompress", "user", "password", "quota_key", "buffer_size", "wait_end_of_query",
    "enable_http_compression", "http_zlib_compression_level", "send_progress_in_http_headers",
    "http_headers_progress_interval_ms", "role", "client_protocol_version", "add_http_cors_header",
    "cancel_http_readonly_queries_on_client_close", "http_wait_end_of_query", "http_response_buffer_size",
    "readonly",
})

# ClickHouse's mapping of exception codes to HTTP statuses (the part of it we can raise).
HTTP_STATUS_BY_CODE = {
    **dict.fromkeys((16, 36, 43, 44, 47, 48, 53, 62, 69, 70, 113, 115, 117, 130, 184, 201, 206, 27, 26, 38, 6, 72,
                     457), 400),
    **dict.fromkeys((46, 60, 81, 83, 90), 404),
    **dict.fromkeys((192, 193, 194, 516), 401),
    **dict.fromkeys((1, 48), 501),
}

CONTENT_TYPES = {
    "TabSeparated": "text/tab-separated-values; charset=UTF-8",
    "TSV": "text/tab-separated-values; charset=UTF-8",
    "TabSeparatedWithNames": "text/tab-separated-values; charset=UTF-8",
    "TabSeparatedWithNamesAndTypes": "text/tab-separated-values; charset=UTF-8",
    "CSV": "text/csv; charset=UTF-8; header=absent",
    "CSVWithNames": "text/csv; charset=UTF-8; header=present",
    "JSON": "application/json; charset=UTF-8",
    "JSONCompact": "application/json; charset=UTF-8",
    "JSONEachRow": "application/x-ndjson; charset=UTF-8",
    "JSONCompactEachRow": "application/x-ndjson; charset=UTF-8",
    "Native": "application/octet-stream",
    "RowBinary": "application/octet-stream",
    "RowBinaryWithNamesAndTypes": "application/octet-stream",
    "Arrow": "application/octet-stream",
    "ArrowStream": "application/octet-stream",
    "Parquet": "application/octet-stream",
}

_INSERT_WITH_FORMAT = re.compile(r"^\s*INSERT\s+INTO\s+(?P<target>.+?)\s+FORMAT\s+(?P<fmt>\w+)[ \t]*\r?\n?",
                                 re.IGNORECASE | re.DOTALL)
_TRAILING_FORMAT = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
_CODE = re.compile(r"Code:\s*(\d+)")
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Statement:
    """What one HTTP request asks the engine to run."""

    sql: str
    output_format: str  # the format the result comes in
    format_in_query: bool
    insert_target: str = ""  # for INSERT … FORMAT with a data body
    insert_format: str = ""
    data: bytes = b""


def split_params(params: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """URL parameters → (transport parameters, settings, server-side query parameters)."""
    transport: dict[str, str] = {}
    settings: dict[str, str] = {}
    query_params: dict[str, str] = {}
    for key, value in params.items():
        if key.startswith("param_"):
            query_params[key[len("param_"):]] = value
        elif key in TRANSPORT_PARAMS:
            transport[key] = value
        else:
            settings[key] = value
    return transport, settings, query_params


def decode_body(body: bytes, encoding: str | None) -> bytes:
    """A request body as sent, decompressed per its Content-Encoding."""
    name = (encoding or "").strip().lower()
    if not name or name == "identity" or not body:
        return body
    try:
        if name == "lz4":
            return bytes(lz4.frame.decompress(body))
        if name == "zstd":
            return bytes(zstandard.ZstdDecompressor().decompressobj().decompress(body))
        if name in {"gzip", "x-gzip"}:
            return gzip.decompress(body)
        if name == "deflate":
            return zlib.decompress(body)
    except Exception as exc:
        raise EngineError(432, f"Cannot decompress request body with {name}: {exc}", "UNKNOWN_CODEC") from exc
    raise EngineError(432, f"Unknown Content-Encoding of the request body: {name}", "UNKNOWN_CODEC")


def encode_body(body: bytes, accept_encoding: str | None) -> tuple[bytes, str | None]:
    """Compress a response with the first encoding the client accepts that we support."""
    offered = [part.split(";")[0].strip().lower() for part in (accept_encoding or "").split(",")]
    for name in offered:
        if name == "lz4":
            return lz4.frame.compress(body), "lz4"
        if name == "zstd":
            return zstandard.ZstdCompressor().compress(body), "zstd"
        if name == "gzip":
            return gzip.compress(body, compresslevel=3), "gzip"
        if name == "deflate":
            return zlib.compress(body, 3), "deflate"
    return body, None


def build_statement(query_param: str, body: bytes, default_format: str) -> Statement:
    """Combine the URL query and the body the way ClickHouse does."""
    if query_param:
        text, data = query_param, body
    else:
        text, data = body.decode("utf-8", errors="replace"), b""
        match = _INSERT_WITH_FORMAT.match(text)
        if match:  # INSERT … FORMAT x\n<data> all in the body
            return Statement(
                sql="", output_format=default_format, format_in_query=False,
                insert_target=match.group("target"), insert_format=match.group("fmt"),
                data=body[len(text[: match.end()].encode()):],
            )
    match = _INSERT_WITH_FORMAT.match(text)
    if match:
        inline = text[match.end():].encode()
        return Statement(
            sql="", output_format=default_format, format_in_query=False,
            insert_target=match.group("target"), insert_format=match.group("fmt"),
            data=inline + data if inline.strip() else data,
        )
    sql = text if not data else f"{text}\n{data.decode('utf-8', errors='replace')}"
    if not sql.strip():
        raise EngineError(62, "Empty query.", "SYNTAX_ERROR")
    trailing = _TRAILING_FORMAT.search(sql)
    if trailing:
        return Statement(sql=sql, output_format=trailing.group(1), format_in_query=True)
    return Statement(sql=sql, output_format=default_format, format_in_query=False)


def parse_engine_error(message: str) -> EngineError:
    """chDB's exception text → code, message and name, as ClickHouse reports them."""
    text = message.strip()
    match = _CODE.search(text)
    code = int(match.group(1)) if match else 1001
    name_match = re.search(r"\(([A-Z_]+)\)\s*$", text)
    name = name_match.group(1) if name_match else "STD_EXCEPTION"
    return EngineError(code, text, name)


def error_response(error: EngineError, version: str, query_id: str) -> Response:
    body = error.message
    if not body.startswith("Code:"):
        body = f"Code: {error.code}. DB::Exception: {body}. ({error.name})"
    body = f"{body} (version {version})\n"
    return PlainTextResponse(
        body,
        status_code=HTTP_STATUS_BY_CODE.get(error.code, 500),
        headers={
            "X-ClickHouse-Exception-Code": str(error.code),
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Server-Display-Name": SERVER_NAME,
        },
    )


class Engine:
    """The chDB session, used by one thread at a time, with per-request database and settings."""

    def __init__(self, data_dir: Path) -> None:
        from chdb import session as chdb_session

        data_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._session = chdb_session.Session(str(data_dir))
        except Exception as exc:
            raise WarehouseServerError(f"cannot open the warehouse data directory {data_dir}: {exc}") from exc
        self._database = "default"
        self._applied: dict[str, str] = {}
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108 - private mkdtemp dir
        self._spool = Path(tempfile.mkdtemp(prefix="flowscope-wh-", dir=shm))
        self.version = self._raw("SELECT version()", "TabSeparated").decode().strip()

    def close(self) -> None:
        with self._lock:
            with contextlib.suppress(Exception):
                self._session.close()
            for leftover in self._spool.glob("*"):
                leftover.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self._spool.rmdir()

    def _query(self, sql: str, fmt: str = "TabSeparated", params: Mapping[str, str] | None = None) -> Any:
        try:
            return self._session.query(sql, fmt, params=dict(params) if params else None)
        except Exception as exc:  # chDB raises ChdbError (a RuntimeError) with ClickHouse's message
            raise parse_engine_error(str(exc)) from None

    def _raw(self, sql: str, fmt: str = "TabSeparated", params: Mapping[str, str] | None = None) -> bytes:
        result = self._query(sql, fmt, params)
        return bytes(result.bytes()) if result is not None else b""

    def run(self, statement: Statement, *, database: str, settings: Mapping[str, str],
            params: Mapping[str, str]) -> tuple[bytes, dict[str, int | float]]:
        with self._lock:
            self._use(database)
            self._apply(settings)
            started = time.perf_counter()
            if statement.insert_target:
                result = self._insert(statement)
                output = b""
            else:
                result = self._query(statement.sql, statement.output_format, params)
                output = bytes(result.bytes()) if result is not None else b""
            summary: dict[str, int | float] = {"elapsed_ns": int((time.perf_counter() - started) * 1e9)}
            if result is not None:
                summary.update(read_rows=result.rows_read(), read_bytes=result.bytes_read(),
                               written_rows=result.rows_written(), written_bytes=result.bytes_written())
            return output, summary

    def _use(self, database: str) -> None:
        if database != self._database:
            if not _SETTING_NAME.match(database):
                raise EngineError(81, f"Database {database} does not exist.", "UNKNOWN_DATABASE")
            self._raw(f"USE {database}")
            self._database = database

    def _apply(self, settings: Mapping[str, str]) -> None:
        """Make exactly ``settings`` differ from the defaults (nothing leaks from an earlier request)."""
        for name in [n for n in self._applied if n not in settings]:
            self._raw(f"SET {name} = DEFAULT")
            del self._applied[name]
        for name, value in settings.items():
            if self._applied.get(name) == value:
                continue
            if not _SETTING_NAME.match(name):
                raise EngineError(115, f"Unknown setting '{name}'.", "UNKNOWN_SETTING")
            self._raw(f"SET {name} = {_setting_literal(value)}")
            self._applied[name] = value

    def _insert(self, statement: Statement) -> Any:
        """INSERT … FORMAT x with a data body: chDB reads the body from a spooled file."""
        path = self._spool / f"{uuid.uuid4().hex}.data"
        path.write_bytes(statement.data)
        try:
            sql = f"INSERT INTO {statement.insert_target} FROM INFILE '{path}' FORMAT {statement.insert_format}"
            return self._query(sql)
        finally:
            path.unlink(missing_ok=True)


def _setting_literal(value: str) -> str:
    """A setting value as ClickHouse's SET accepts it: numbers bare, anything else quoted."""
    if re.fullmatch(r"-?\d+(\.\d+)?", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def create_app(data_dir: Path) -> Starlette:
    """The HTTP interface over an engine opened (and closed) with the app's lifespan."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        engine = await asyncio.to_thread(Engine, data_dir)
        app.state.engine = engine
        logger.info("warehouse engine ClickHouse %s on %s", engine.version, data_dir)
        try:
            yield
        finally:
            await asyncio.to_thread(engine.close)

    async def ping(request: Request) -> Response:
        return PlainTextResponse("Ok.\n")

    async def query(request: Request) -> Response:
        params = dict(request.query_params)
        headers = request.headers
        transport, settings, query_params = split_params(params)
        query_id = transport.get("query_id") or str(uuid.uuid4())
        engine: Engine = request.app.state.engine
        if request.method == "GET" and "query" not in transport:
            return PlainTextResponse("Ok.\n")
        database = transport.get("database") or headers.get("x-clickhouse-database") or "default"
        default_format = transport.get("default_format") or headers.get("x-clickhouse-format") or "TabSeparated"
        try:
            body = decode_body(await request.body(), headers.get("content-encoding"))
            statement = build_statement(transport.get("query", ""), body, default_format)
            output, summary = await asyncio.to_thread(
                engine.run, statement, database=database, settings=settings, params=query_params
            )
        except EngineError as error:
            logger.info("query %s failed: %s", query_id, error.message.splitlines()[0][:300])
            return error_response(error, engine.version, query_id)
        response_headers = {
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Format": statement.output_format,
            "X-ClickHouse-Timezone": "UTC",
            "X-ClickHouse-Server-Display-Name": SERVER_NAME,
            "X-ClickHouse-Summary": orjson.dumps({k: str(v) for k, v in summary.items()}).decode(),
        }
        if transport.get("enable_http_compression") == "1" and output:
            output, encoding = encode_body(output, headers.get("accept-encoding"))
            if encoding:
                response_headers["Content-Encoding"] = encoding
        media_type = CONTENT_TYPES.get(statement.output_format, "text/plain; charset=UTF-8")
        return Response(output, media_type=media_type, headers=response_headers)

    return Starlette(
        routes=[
            Route("/ping", ping, methods=["GET", "HEAD"]),
            Route("/replicas_status", ping, methods=["GET"]),
            Route("/", query, methods=["GET", "POST"]),
        ],
        lifespan=lifespan,
    )


def serve(*, host: str, port: int, data_dir: Path, log_level: str = "info") -> None:
    """Run the embedded warehouse server until SIGINT/SIGTERM."""
    uvicorn.run(create_app(data_dir), host=host, port=port, log_level=log_level, access_log=False,
                proxy_headers=False, lifespan="on")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m warehouse.server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--data", type=Path, required=True, help="chDB data directory")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(host=args.host, port=args.port, data_dir=args.data, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
