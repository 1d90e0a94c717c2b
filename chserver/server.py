"""The embedded warehouse: one process owns a chDB data directory and speaks ClickHouse's HTTP interface.

A chDB data directory can be opened by one process only, so every other process (receiver, stream
workers, dashboards, an analyst's clickhouse-connect or curl) talks to this server exactly as to a
ClickHouse server: ``GET /ping``, ``GET /?query=``, ``POST /`` with the query in the URL and/or the
body, ``INSERT … FORMAT <fmt>`` with a (compressed) data body, ``param_<name>`` server-side
parameters, every other URL parameter applied as a setting of that request only, sessions
(``session_id``), multipart requests with external tables, ClickHouse's response headers, HTTP
compression and its exception format (``X-ClickHouse-Exception-Code``, ClickHouse's status codes).

The engine runs queries on a thread pool, each on its own chDB connection ("handle"): handles of
one engine run concurrently and each keeps its own current database and settings, like a
ClickHouse session. Requests without a session borrow a pooled handle; a session owns one until it
expires. The event loop never runs a query, so ``/ping`` answers during long queries.
"""

from __future__ import annotations

import argparse
import asyncio
import bz2
import contextlib
import fcntl
import gzip
import logging
import lzma
import os
import re
import socket
import struct
import threading
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import lz4.block
import lz4.frame
import orjson
import uvicorn
import zstandard
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from chserver.exceptions import EngineError, WarehouseServerError

logger = logging.getLogger(__name__)

# --- ClickHouse error codes this module raises itself ------------------------------------------
BAD_ARGUMENTS = 36
NOT_IMPLEMENTED = 48
SYNTAX_ERROR = 62
UNKNOWN_TYPE_OF_QUERY = 78
UNKNOWN_SETTING = 115
READONLY = 164
QUERY_WITH_SAME_ID_IS_ALREADY_RUNNING = 216
CANNOT_DECOMPRESS = 271
INTO_OUTFILE_NOT_ALLOWED = 358
SESSION_NOT_FOUND = 372
SESSION_IS_LOCKED = 373
INVALID_SESSION_TIMEOUT = 374
UNKNOWN_CODEC = 432
STD_EXCEPTION = 1001

# URL parameters ClickHouse's HTTP handler reserves (HTTPHandler.cpp); every other one is a setting.
RESERVED_PARAMS = frozenset({
    "query", "compress", "decompress", "user", "password", "quota_key", "query_id", "stacktrace", "role",
    "buffer_size", "wait_end_of_query", "session_id", "session_timeout", "session_check",
    "client_protocol_version", "close_session", "database", "default_format",
})

# Settings that steer the HTTP layer: this server honours them itself; the engine never sees them.
HTTP_SETTINGS = frozenset({
    "enable_http_compression", "http_zlib_compression_level", "send_progress_in_http_headers",
    "http_headers_progress_interval_ms", "add_http_cors_header", "cancel_http_readonly_queries_on_client_close",
    "http_response_buffer_size", "http_wait_end_of_query", "http_write_exception_in_output_format",
    "http_native_compression_disable_checksumming_on_decompress", "http_max_request_param_data_size",
    "readonly",
})

DEFAULT_SESSION_TIMEOUT_S = 60
MAX_SESSION_TIMEOUT_S = 3600
DEFAULT_ZLIB_LEVEL = 3
MAX_FORM_PART_BYTES = 256 * 1024 * 1024
SHUTDOWN_GRACE_S = 5  # on SIGTERM, requests get this long to finish …
CANCEL_QUERIES_AFTER_S = 3.0  # … and queries still running after this long are cancelled
STARTUP_FAILURE = 3  # uvicorn's exit status when the app cannot start

# What every engine connection starts with, so it behaves like a ClickHouse server rather than clickhouse-local.
SERVER_PROFILE: Mapping[str, str] = {"implicit_select": "0"}

# Formats chDB's Python layer turns into Python objects: never an HTTP format.
_PYTHON_ONLY_FORMATS = frozenset({"dataframe", "arrowtable", "datastore", "debug"})

# Statements allowed when the request is read-only (a GET, or readonly=1|2).
_READ_KEYWORDS = frozenset({"SELECT", "WITH", "SHOW", "DESC", "DESCRIBE", "EXISTS", "EXPLAIN", "SET", "USE", "FROM"})

# ClickHouse's exceptionCodeToHTTPStatus (src/Server/HTTP/exceptionCodeToHTTPStatus.cpp).
HTTP_STATUS_BY_CODE: Mapping[int, int] = {
    194: 401,  # REQUIRED_PASSWORD
    **dict.fromkeys((192, 193, 516, 512, 497), 403),  # UNKNOWN_USER, WRONG_PASSWORD, AUTHENTICATION_FAILED, ...
    **dict.fromkeys(
        (36, 427, 6, 25, 26, 38, 41, 72, 441, 675, 676, 27, 376, 15, 44, 37, 123, 8, 167, 168, 223, 62, 117, 53, 321),
        400,
    ),
    **dict.fromkeys((60, 46, 47, 50, 56, 81, 115, 152, 63, 73, 336, 78, 511), 404),
    229: 413,  # QUERY_IS_TOO_LARGE
    48: 501,  # NOT_IMPLEMENTED
    **dict.fromkeys((209, 76, 439), 503),  # SOCKET_TIMEOUT, CANNOT_OPEN_FILE, CANNOT_SCHEDULE_TASK
    381: 411,  # HTTP_LENGTH_REQUIRED
    159: 408,  # TIMEOUT_EXCEEDED
    779: 415,  # UNSUPPORTED_MEDIA_TYPE
}

_TSV = "text/tab-separated-values; charset=UTF-8"
_JSON = "application/json; charset=UTF-8"
_NDJSON = "application/x-ndjson; charset=UTF-8"
_BINARY = "application/octet-stream"
CONTENT_TYPES: Mapping[str, str] = {
    **{name.lower(): _TSV for name in (
        "TabSeparated", "TSV", "TabSeparatedRaw", "TSVRaw", "TabSeparatedWithNames", "TSVWithNames",
        "TabSeparatedWithNamesAndTypes", "TSVWithNamesAndTypes", "TabSeparatedRawWithNames",
        "TabSeparatedRawWithNamesAndTypes", "TSVRawWithNames", "TSVRawWithNamesAndTypes")},
    "csv": "text/csv; charset=UTF-8; header=absent",
    "csvwithnames": "text/csv; charset=UTF-8; header=present",
    "csvwithnamesandtypes": "text/csv; charset=UTF-8; header=present",
    **{name.lower(): _JSON for name in (
        "JSON", "JSONStrings", "JSONCompact", "JSONCompactStrings", "JSONColumns", "JSONCompactColumns",
        "JSONColumnsWithMetadata", "JSONObjectEachRow", "PrettyJSONEachRow", "PrettyNDJSON")},
    **{name.lower(): _NDJSON for name in (
        "JSONEachRow", "JSONLines", "NDJSON", "JSONStringsEachRow", "JSONCompactEachRow",
        "JSONCompactStringsEachRow", "JSONEachRowWithProgress", "JSONCompactEachRowWithNames",
        "JSONCompactEachRowWithNamesAndTypes")},
    **{name.lower(): _BINARY for name in (
        "Native", "RowBinary", "RowBinaryWithNames", "RowBinaryWithNamesAndTypes", "Arrow", "ArrowStream",
        "Parquet", "ORC", "Avro", "MsgPack", "Protobuf", "ProtobufSingle", "CapnProto", "BSONEachRow", "Npy")},
    "xml": "application/xml; charset=UTF-8",
    "markdown": "text/markdown; charset=UTF-8",
}


def content_type(fmt: str) -> str:
    """The Content-Type ClickHouse sends for a result in ``fmt``."""
    return CONTENT_TYPES.get(fmt.lower(), "text/plain; charset=UTF-8")


def http_status(code: int) -> int:
    """The HTTP status ClickHouse answers an exception code with."""
    return HTTP_STATUS_BY_CODE.get(code, 500)


# --- URL parameters ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestParams:
    """A request's URL (and form) parameters, split the way ClickHouse's HTTP handler splits them."""

    transport: dict[str, str]  # reserved parameters (query, database, session_id, …)
    settings: dict[str, str]  # everything else: settings of this request (HTTP-layer ones included)
    query_params: dict[str, str]  # param_<name> → value for {name:Type} placeholders
    query: str = ""  # the query parameter(s)


def split_params(items: Iterable[tuple[str, str]], *, external_data: bool = False) -> RequestParams:
    """Parameters → transport, settings and server-side query parameters.

    Like ClickHouse: the first ``param_x`` wins, the last setting wins, empty names are skipped,
    multipart requests concatenate every ``query`` field and reserve ``<table>_format|_types|_structure``.
    """
    transport: dict[str, str] = {}
    settings: dict[str, str] = {}
    query_params: dict[str, str] = {}
    queries: list[str] = []
    for key, value in items:
        if not key:
            continue
        if key == "query":
            queries.append(value)
        elif key in RESERVED_PARAMS:
            transport.setdefault(key, value)
        elif key.startswith("param_"):
            query_params.setdefault(key[len("param_"):], value)
        elif external_data and key.endswith(("_format", "_types", "_structure")):
            transport[key] = value
        else:
            settings[key] = value
    query = "".join(queries) if external_data else (queries[0] if queries else "")
    if queries:
        transport["query"] = query
    return RequestParams(transport, settings, query_params, query)


def parse_session_timeout(value: str | None) -> int:
    """``session_timeout`` in seconds, validated like ClickHouse (default 60, at most 3600)."""
    if value is None:
        return DEFAULT_SESSION_TIMEOUT_S
    if not value.isdigit():
        raise EngineError(INVALID_SESSION_TIMEOUT, f"Invalid session timeout: '{value}'", "INVALID_SESSION_TIMEOUT")
    timeout = int(value)
    if timeout > MAX_SESSION_TIMEOUT_S:
        raise EngineError(
            INVALID_SESSION_TIMEOUT,
            f"Session timeout '{value}' is larger than max_session_timeout: {MAX_SESSION_TIMEOUT_S}. "
            "Maximum session timeout could be modified in configuration file.",
            "INVALID_SESSION_TIMEOUT",
        )
    return timeout


def parse_bool(value: str | None) -> bool:
    """A ClickHouse boolean parameter (``1``/``true``)."""
    return (value or "").strip().lower() in {"1", "true"}


# --- bodies ----------------------------------------------------------------------------------------

_DECOMPRESSION_NAMES = {
    "": "", "none": "", "auto": "", "identity": "",
    "gzip": "gzip", "gz": "gzip", "x-gzip": "gzip", "deflate": "deflate", "zstd": "zstd", "zst": "zstd",
    "lz4": "lz4", "xz": "xz", "lzma": "xz", "bz2": "bz2",
}


def decode_body(body: bytes, content_encoding: str | None) -> bytes:
    """A request body decompressed per its Content-Encoding (concatenated lz4/zstd frames included)."""
    name = (content_encoding or "").strip().lower()
    method = _DECOMPRESSION_NAMES.get(name)
    if method is None:
        raise EngineError(
            NOT_IMPLEMENTED,
            f"Unknown compression method '{content_encoding}'. Only 'auto', 'none', 'gzip', 'deflate', 'br', "
            "'xz', 'zstd', 'lz4', 'bz2', 'snappy' are supported as compression methods",
            "NOT_IMPLEMENTED",
        )
    if not method or not body:
        return body
    try:
        if method == "lz4":
            return _lz4_frames(body)
        if method == "zstd":
            return _zstd_frames(body)
        if method == "gzip":
            return gzip.decompress(body)
        if method == "deflate":
            try:
                return zlib.decompress(body)
            except zlib.error:
                return zlib.decompress(body, -zlib.MAX_WBITS)  # raw deflate, as some clients send it
        if method == "xz":
            return lzma.decompress(body)
        return bz2.decompress(body)
    except EngineError:
        raise
    except Exception as exc:
        raise EngineError(CANNOT_DECOMPRESS, f"Cannot decompress the {name} request body: {exc}",
                          "CANNOT_DECOMPRESS") from exc


def _lz4_frames(data: bytes) -> bytes:
    parts: list[bytes] = []
    rest = data
    while rest:
        decompressor = lz4.frame.LZ4FrameDecompressor()
        parts.append(decompressor.decompress(rest))
        if not decompressor.eof:
            raise EngineError(CANNOT_DECOMPRESS, "Unexpected end of the lz4 request body", "CANNOT_DECOMPRESS")
        rest = decompressor.unused_data
    return b"".join(parts)


def _zstd_frames(data: bytes) -> bytes:
    parts: list[bytes] = []
    rest = data
    while rest:
        decompressor = zstandard.ZstdDecompressor().decompressobj()
        parts.append(decompressor.decompress(rest))
        if not decompressor.eof:
            raise EngineError(CANNOT_DECOMPRESS, "Unexpected end of the zstd request body", "CANNOT_DECOMPRESS")
        rest = decompressor.unused_data
    return b"".join(parts)


_NATIVE_BLOCK_HEADER = struct.Struct("<16sBII")  # checksum, method, compressed size (incl. 9 bytes), raw size


def decompress_native_blocks(body: bytes) -> bytes:
    """A body in ClickHouse's own compressed format (``decompress=1``). Checksums are not verified."""
    view = memoryview(body)
    parts: list[bytes] = []
    offset = 0
    while offset < len(view):
        if len(view) - offset < _NATIVE_BLOCK_HEADER.size:
            raise EngineError(CANNOT_DECOMPRESS, "Truncated compressed block header", "CANNOT_DECOMPRESS")
        _checksum, method, compressed_size, raw_size = _NATIVE_BLOCK_HEADER.unpack_from(view, offset)
        start = offset + _NATIVE_BLOCK_HEADER.size
        end = offset + 16 + compressed_size
        if compressed_size < 9 or end > len(view):
            raise EngineError(CANNOT_DECOMPRESS, "Truncated compressed block", "CANNOT_DECOMPRESS")
        payload = bytes(view[start:end])
        try:
            if method == 0x02:
                parts.append(payload)
            elif method == 0x82:
                parts.append(lz4.block.decompress(payload, uncompressed_size=raw_size))
            elif method == 0x90:
                parts.append(zstandard.ZstdDecompressor().decompress(payload, max_output_size=raw_size))
            else:
                raise EngineError(UNKNOWN_CODEC, f"Unknown codec family code: {method}", "UNKNOWN_CODEC")
        except EngineError:
            raise
        except Exception as exc:
            raise EngineError(CANNOT_DECOMPRESS, f"Cannot decompress block: {exc}", "CANNOT_DECOMPRESS") from exc
        offset = end
    return b"".join(parts)


# ClickHouse's preference when the client accepts several (chooseHTTPCompressionMethod); no brotli/snappy here.
_RESPONSE_ENCODINGS = ("zstd", "lz4", "gzip", "deflate", "xz", "bz2")


def choose_response_encoding(accept_encoding: str | None) -> str | None:
    """The encoding ClickHouse would pick from an Accept-Encoding header (``None``: send as is)."""
    offered = {part.split(";")[0].strip().lower() for part in (accept_encoding or "").split(",")}
    for name in _RESPONSE_ENCODINGS:
        if name in offered:
            return name
    return None


def encode_body(body: bytes, encoding: str, level: int = DEFAULT_ZLIB_LEVEL) -> bytes:
    """Compress a response body as ``Content-Encoding: <encoding>`` (lz4 is an lz4 frame)."""
    if encoding == "zstd":
        return zstandard.ZstdCompressor(level=min(max(level, 1), 22)).compress(body)
    if encoding == "lz4":
        return bytes(lz4.frame.compress(body))
    if encoding == "gzip":
        return gzip.compress(body, compresslevel=min(max(level, 1), 9), mtime=0)
    if encoding == "deflate":
        return zlib.compress(body, min(max(level, 1), 9))
    if encoding == "xz":
        return lzma.compress(body)
    if encoding == "bz2":
        return bz2.compress(body)
    raise ValueError(f"unsupported response encoding {encoding!r}")


# --- SQL scanning ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    kind: str  # "word", "quoted" (string, quoted identifier, heredoc) or "punct"
    start: int
    end: int
    text: str


_SPACE = frozenset(" \t\n\r\f\v")
_HEREDOC = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
_OPEN = frozenset("([{")
_CLOSE = frozenset(")]}")


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_" or ch == "$" or ord(ch) >= 0x80


def _tokens(text: str, pos: int = 0) -> Iterator[_Token]:
    """ClickHouse SQL tokens, skipping whitespace and comments; strings and quoted names are one token."""
    n = len(text)
    while pos < n:
        ch = text[pos]
        if ch in _SPACE:
            pos += 1
        elif (ch == "-" and text.startswith("--", pos)) or (ch == "#" and pos + 1 < n and text[pos + 1] in " !"):
            newline = text.find("\n", pos)
            pos = n if newline < 0 else newline + 1
        elif ch == "/" and text.startswith("/*", pos):
            depth, i = 1, pos + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            pos = i
        elif ch in "'\"`":
            i = pos + 1
            while i < n:
                c = text[i]
                if c == "\\":
                    i += 2
                    continue
                if c == ch:
                    if i + 1 < n and text[i + 1] == ch:
                        i += 2
                        continue
                    break
                i += 1
            end = min(i + 1, n)
            yield _Token("quoted", pos, end, text[pos:end])
            pos = end
        elif ch == "$" and (heredoc := _HEREDOC.match(text, pos)):
            close = text.find(heredoc.group(0), heredoc.end())
            end = n if close < 0 else close + len(heredoc.group(0))
            yield _Token("quoted", pos, end, text[pos:end])
            pos = end
        elif _is_word_char(ch):
            i = pos + 1
            while i < n and _is_word_char(text[i]):
                i += 1
            yield _Token("word", pos, i, text[pos:i])
            pos = i
        else:
            yield _Token("punct", pos, pos + 1, ch)
            pos += 1


@dataclass(frozen=True)
class SqlShape:
    """What the server needs to know about the first statement of a request, without parsing it."""

    keyword: str = ""  # first keyword, upper-case ("" for no statement)
    end: int = 0  # where the first statement ends (its ';' or the end of the text)
    multi: bool = False  # another statement follows
    output_format: str = ""  # a trailing FORMAT clause of a query
    data_format: str = ""  # INSERT … FORMAT <name> | VALUES: the format of the inline data
    head_end: int = -1  # INSERT with inline data: where the statement before FORMAT/VALUES ends
    data_start: int = -1  # INSERT with inline data: where the data begins
    into_outfile: bool = False
    from_infile: bool = False
    empty: bool = False  # nothing but blanks and comments before the end of the statement


def _data_start(text: str, pos: int) -> int:
    """Inline data starts after the first newline following FORMAT <name>, or after the blanks otherwise."""
    n = len(text)
    while pos < n and text[pos] in " \t\f":
        pos += 1
    if pos < n and text[pos] == "\r":
        pos += 1
    if pos < n and text[pos] == "\n":
        pos += 1
    return pos


def scan_sql(text: str) -> SqlShape:
    """Find the first statement's keyword, end, FORMAT clause and (for INSERT) where inline data starts.

    Inline data is never tokenized: the scan stops at ``FORMAT <name>`` / ``VALUES`` of an INSERT.
    """
    tokens = _tokens(text)
    keyword = ""
    depth = 0
    previous = ""  # previous top-level word, upper-case
    saw_select = False
    into_outfile = from_infile = False
    pending_format: str | None = None  # FORMAT <name> seen; confirmed if the statement ends or SETTINGS follows
    output_format = ""
    end = len(text)
    multi = False
    empty = True
    for token in tokens:
        if not (token.kind == "punct" and token.text == ";"):
            empty = False
        if pending_format is not None:
            ends = token.kind == "punct" and token.text == ";"
            if ends or (token.kind == "word" and token.text.upper() == "SETTINGS"):
                output_format = pending_format
            pending_format = None
        if token.kind == "punct":
            if token.text == ";":
                end = token.start
                multi = any(not (t.kind == "punct" and t.text == ";") for t in _tokens(text, token.end))
                break
            if token.text in _OPEN:
                depth += 1
            elif token.text in _CLOSE:
                depth = max(depth - 1, 0)
            continue
        if token.kind != "word":
            continue
        upper = token.text.upper()
        if not keyword:
            keyword = upper
        if depth:
            continue
        if upper == "OUTFILE" and previous == "INTO":
            into_outfile = True
        if upper == "INFILE" and previous == "FROM":
            from_infile = True
        if keyword == "INSERT":
            if upper in {"SELECT", "WITH"}:
                saw_select = True
            elif not saw_select and upper == "VALUES":
                return SqlShape(keyword, len(text), False, "", "Values", token.start, token.end,
                                into_outfile, from_infile)
            elif not saw_select and upper == "FORMAT":
                name = next(tokens, None)
                if name is not None and name.kind == "word":
                    return SqlShape(keyword, len(text), False, "", name.text, token.start,
                                    _data_start(text, name.end), into_outfile, from_infile)
        elif upper == "FORMAT":
            name = next(tokens, None)
            if name is not None and name.kind == "word":
                pending_format = name.text
                previous = name.text.upper()
                continue
        previous = upper
    if pending_format is not None:
        output_format = pending_format
    return SqlShape(keyword, end, multi, output_format, into_outfile=into_outfile, from_infile=from_infile,
                    empty=empty)


def set_assignments(sql: str) -> list[tuple[str, str]]:
    """``SET a = 1, b = 'x'`` → [("a", "1"), ("b", "'x'")]; [] for anything else (SET ROLE, …)."""
    tokens = list(_tokens(sql))
    if not tokens or tokens[0].text.upper() != "SET":
        return []
    pairs: list[tuple[str, str]] = []
    i = 1
    while i < len(tokens):
        if i + 2 >= len(tokens) or tokens[i].kind != "word" or tokens[i + 1].text != "=":
            return []
        depth, j = 0, i + 2
        while j < len(tokens):
            token = tokens[j]
            if token.kind == "punct":
                if token.text in _OPEN:
                    depth += 1
                elif token.text in _CLOSE:
                    depth -= 1
                elif token.text in ",;" and depth == 0:
                    break
            j += 1
        if j == i + 2:
            return []
        pairs.append((tokens[i].text, sql[tokens[i + 2].start:tokens[j - 1].end].strip()))
        if j >= len(tokens) or tokens[j].text == ";":
            break
        i = j + 1
    return pairs


def use_target(sql: str) -> str | None:
    """The database a ``USE db`` statement switches to."""
    tokens = list(_tokens(sql))
    if len(tokens) < 2 or tokens[0].text.upper() != "USE":
        return None
    return unquote_identifier(tokens[1].text)


def unquote_identifier(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "`\"":
        body = text[1:-1]
        return re.sub(r"\\(.)", r"\1", body).replace(text[0] * 2, text[0])
    return text


def quote_identifier(name: str) -> str:
    """A back-quoted ClickHouse identifier."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def setting_literal(value: str) -> str:
    """A setting value as an SQL literal for SET; ClickHouse converts quoted values to the setting's type."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# --- statements ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    """What one HTTP request asks the engine to run."""

    keyword: str
    sql: str  # the statement (for INSERT with inline data: the part before FORMAT/VALUES)
    output_format: str  # the format the result comes in
    format_in_query: bool = False
    insert_format: str = ""  # INSERT with inline data: its format (the data is ``data``)
    data: bytes = b""
    into_outfile: bool = False
    from_infile: bool = False

    @property
    def is_insert_with_data(self) -> bool:
        return bool(self.insert_format)


_SCAN_PREFIX = 64 * 1024


def _shape(raw: bytes) -> SqlShape:
    """Scan bytes (as latin-1, so offsets are byte offsets); most inserts only need a short prefix scanned."""
    if len(raw) > _SCAN_PREFIX:
        shape = scan_sql(raw[:_SCAN_PREFIX].decode("latin-1"))
        if shape.data_start >= 0 and shape.data_start < _SCAN_PREFIX:
            return shape
    return scan_sql(raw.decode("latin-1"))


def build_statement(query_param: str, body: bytes, default_format: str) -> Statement:
    """The statement ClickHouse would run: the URL query, a newline, then the body.

    For ``INSERT … FORMAT <name>`` (or ``VALUES``) the rest after the format name is the data.
    """
    if query_param:
        head = (query_param + "\n").encode()
        shape = scan_sql(head.decode("latin-1"))
        if shape.data_start >= 0:
            tail = head[shape.data_start:]
            return _insert(shape, head, tail + body if tail else body)
        raw = head + body if body else head
    else:
        raw = body
    if not raw.strip():
        raise EngineError(SYNTAX_ERROR, "Empty query", "SYNTAX_ERROR")
    shape = _shape(raw)
    if shape.data_start >= 0:
        return _insert(shape, raw, raw[shape.data_start:])
    if shape.empty:
        raise EngineError(SYNTAX_ERROR, "Empty query", "SYNTAX_ERROR")
    if shape.multi:
        rest = raw[shape.end:].decode("utf-8", errors="replace").strip()
        raise EngineError(
            SYNTAX_ERROR,
            f"Syntax error (Multi-statements are not allowed): failed at position {shape.end + 1} (end of query): "
            f"{rest[:100]}. ",
            "SYNTAX_ERROR",
        )
    sql = raw[:shape.end].decode("utf-8", errors="replace").strip()
    if not sql:
        raise EngineError(SYNTAX_ERROR, "Empty query", "SYNTAX_ERROR")
    return Statement(
        keyword=shape.keyword, sql=sql, output_format=shape.output_format or default_format,
        format_in_query=bool(shape.output_format), into_outfile=shape.into_outfile, from_infile=shape.from_infile,
    )


def _insert(shape: SqlShape, raw: bytes, data: bytes) -> Statement:
    return Statement(
        keyword=shape.keyword, sql=raw[:shape.head_end].decode("utf-8", errors="replace").strip(),
        output_format="TabSeparated", insert_format=shape.data_format, data=data,
        into_outfile=shape.into_outfile, from_infile=shape.from_infile,
    )


def check_allowed(statement: Statement, *, readonly: int, method: str) -> None:
    """Refuse what ClickHouse's HTTP interface refuses: writes in read-only requests, server-side files."""
    if readonly and statement.keyword not in _READ_KEYWORDS:
        message = "Cannot execute query in readonly mode"
        if method in {"GET", "HEAD"}:
            message += (". For queries over HTTP, method GET implies readonly. "
                        "You should use method POST for modifying queries")
        raise EngineError(READONLY, message, "READONLY")
    if readonly == 1 and statement.keyword == "SET":
        raise EngineError(READONLY, "Cannot modify settings in readonly mode", "READONLY")
    if statement.into_outfile:
        raise EngineError(INTO_OUTFILE_NOT_ALLOWED, "INTO OUTFILE is not allowed", "INTO_OUTFILE_NOT_ALLOWED")
    if statement.from_infile:
        raise EngineError(UNKNOWN_TYPE_OF_QUERY, "Query has infile and was send directly to server",
                          "UNKNOWN_TYPE_OF_QUERY")


# --- errors ----------------------------------------------------------------------------------------

_CODE = re.compile(r"Code:\s*(\d+)\.\s*")
_REPEATED_PREFIX = re.compile(r"^(Code: \d+\. DB::Exception: )(?:Code: \d+\. DB::Exception: )+")
_VERSION = re.compile(r"\s*\(version [^()]*(?:\([^()]*\)[^()]*)*\)")
_TRAILING_NAME = re.compile(r"\(([A-Z][A-Z0-9_]+)\)\s*$")
_DOUBLED_NAME = re.compile(r"\s*\(([A-Z][A-Z0-9_]+)\)\.?\s*\(\1\)\s*$")


def parse_engine_error(message: str) -> EngineError:
    """chDB's exception text → ClickHouse's code, message (``Code: N. DB::Exception: …. (NAME)``) and name."""
    text = message.strip()
    match = _CODE.search(text)
    if match is None:
        text = text.rstrip(".")
        return EngineError(STD_EXCEPTION, f"Code: {STD_EXCEPTION}. DB::Exception: {text}. (STD_EXCEPTION)",
                           "STD_EXCEPTION")
    text = text[match.start():]  # drop wrappers such as "Streaming insert finish failed: "
    text = _REPEATED_PREFIX.sub(r"\1", text)
    text = _VERSION.sub("", text)
    text = _DOUBLED_NAME.sub(r" (\1)", text)
    name_match = _TRAILING_NAME.search(text)
    name = name_match.group(1) if name_match else "UNKNOWN_EXCEPTION"
    return EngineError(int(match.group(1)), text, name)


def exception_text(error: EngineError, version: str) -> str:
    """The body of an error response: ``Code: N. DB::Exception: …. (NAME) (version X)``."""
    body = error.message.strip()
    if not body.startswith("Code:"):
        body = f"Code: {error.code}. DB::Exception: {body.rstrip('.')}. ({error.name})"
    return f"{body} (version {version})\n"


def error_response(error: EngineError, version: str, query_id: str, *, server_name: str = "",
                   encoding: str | None = None) -> Response:
    """An exception as ClickHouse reports it: status per code, ``X-ClickHouse-Exception-Code``, text body."""
    body = exception_text(error, version).encode()
    headers = {
        "X-ClickHouse-Exception-Code": str(error.code),
        "X-ClickHouse-Query-Id": query_id,
        "X-ClickHouse-Server-Display-Name": server_name or socket.gethostname(),
    }
    if encoding:
        body = encode_body(body, encoding)
        headers["Content-Encoding"] = encoding
    return Response(body, status_code=http_status(error.code), media_type="text/plain; charset=UTF-8",
                    headers=headers)


# --- the engine ------------------------------------------------------------------------------------


class _Handle:
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
class _Session:
    """A ClickHouse HTTP session: a handle kept (with its settings, database, temporary tables) across requests."""

    session_id: str
    timeout_s: int = DEFAULT_SESSION_TIMEOUT_S
    handle: _Handle | None = None
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
    session: _Session | None = None


@dataclass(frozen=True)
class Outcome:
    """What the engine thread hands back: the (compressed) body and the response metadata."""

    body: bytes
    output_format: str
    encoding: str | None
    summary: dict[str, int]


class Engine:
    """The chDB engine on a data directory, with a thread pool and a pool of connection handles."""

    def __init__(self, data_dir: Path, *, threads: int | None = None) -> None:
        import chdb

        self._chdb = chdb
        data_dir.mkdir(parents=True, exist_ok=True)
        self._path = str(data_dir.resolve())
        try:
            admin = chdb.connect(self._path)
        except Exception as exc:
            raise WarehouseServerError(_open_failure(data_dir, exc)) from exc
        self._admin = _Handle(admin, {})
        for name, value in SERVER_PROFILE.items():
            self._admin.query(f"SET {name} = {setting_literal(value)}")
        rows = self._admin.query("SELECT name, value FROM system.settings WHERE changed", "JSONEachRow").bytes()
        self._baseline: dict[str, str] = {
            row["name"]: setting_literal(row["value"]) for row in map(orjson.loads, rows.splitlines())
        }
        info = self._admin.query("SELECT version(), timezone()", "TabSeparated").bytes().decode().split("\t")
        self.version, self.timezone = info[0].strip(), info[1].strip()
        self.server_name = socket.gethostname()
        self.threads = threads or min(32, (os.cpu_count() or 1) + 4)
        self.executor = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="warehouse-query")
        self.sessions: dict[str, _Session] = {}  # touched only by the event loop
        self._idle: list[_Handle] = []
        self._lock = threading.Lock()
        self._running = 0
        self._closed = False
        self._admin_lock = threading.Lock()
        self._admin_closed = False

    # handles -----------------------------------------------------------------------------------
    def _new_handle(self) -> _Handle:
        with self._lock:
            connection = self._chdb.connect(self._path)
        handle = _Handle(connection, self._baseline)
        for name, value in SERVER_PROFILE.items():
            handle.query(f"SET {name} = {setting_literal(value)}")
        return handle

    def _borrow(self) -> _Handle:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self._new_handle()

    def _give_back(self, handle: _Handle, *, discard: bool) -> None:
        with self._lock:
            if not discard and not self._closed and len(self._idle) < self.threads:
                self._idle.append(handle)
                return
        handle.close()

    def close_session_handle(self, session: _Session) -> None:
        if session.handle is not None:
            session.handle.close()
            session.handle = None

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

    def _execute(self, job: Job) -> Outcome:
        body = decode_body(job.body, job.content_encoding)
        if job.native_compressed:
            body = decompress_native_blocks(body)
        statement = build_statement(job.query, body, job.default_format)
        check_allowed(statement, readonly=job.readonly, method=job.method)
        if statement.output_format.lower() in _PYTHON_ONLY_FORMATS:
            raise EngineError(73, f"Unknown format {statement.output_format}", "UNKNOWN_FORMAT")
        session = job.session
        if session is not None:
            if session.handle is None:
                session.handle = self._new_handle()
            handle = session.handle
            database = job.database or handle.session_database
        else:
            handle = self._borrow()
            database = job.database or "default"
        discard = False
        loaded: list[str] = []
        try:
            handle.prepare(database, job.settings)
            for table in job.external:
                handle.query(f"CREATE TEMPORARY TABLE {quote_identifier(table.name)} ({table.structure}) "
                             "ENGINE = Memory")
                loaded.append(table.name)
                handle.insert(f"INSERT INTO {quote_identifier(table.name)}", table.fmt, table.data)
            started = time.perf_counter_ns()
            if statement.is_insert_with_data:
                output, summary = self._insert(handle, statement)
            else:
                result = handle.query(statement.sql, statement.output_format, job.query_params)
                output = bytes(result.bytes()) if result is not None else b""
                summary = {} if result is None else {
                    "read_rows": int(result.rows_read()), "read_bytes": int(result.bytes_read()),
                    "written_rows": int(result.rows_written()), "written_bytes": int(result.bytes_written()),
                }
            summary["elapsed_ns"] = time.perf_counter_ns() - started
            if session is not None:
                self._track_session_state(handle, statement)
            else:  # a pooled handle must come back as it was lent: SET/USE/temporary tables would leak
                discard = statement.keyword in {"SET", "USE"} or _creates_temporary(statement)
        finally:
            for name in loaded:
                try:
                    handle.query(f"DROP TEMPORARY TABLE IF EXISTS {quote_identifier(name)}")
                except EngineError:
                    discard = True
            if session is None:
                self._give_back(handle, discard=discard)
        encoding = job.response_encoding if output else None
        if encoding:
            output = encode_body(output, encoding, job.compression_level)
        return Outcome(output, statement.output_format, encoding, summary)

    def _insert(self, handle: _Handle, statement: Statement) -> tuple[bytes, dict[str, int]]:
        head_tokens = [t.text.upper() for t in _tokens(statement.sql) if t.kind == "word"]
        if "SELECT" in head_tokens:
            raise EngineError(NOT_IMPLEMENTED, "INSERT … SELECT with inline data (input()) is not supported by the "
                              "embedded warehouse", "NOT_IMPLEMENTED")
        result = handle.insert(statement.sql, statement.insert_format, statement.data)
        return b"", {"read_rows": 0, "read_bytes": 0, "written_rows": int(result.rows_written),
                     "written_bytes": int(result.bytes_written)}

    @staticmethod
    def _track_session_state(handle: _Handle, statement: Statement) -> None:
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
    def expire_sessions(self, now: float | None = None) -> list[_Session]:
        """Forget idle sessions past their timeout (event loop); the caller closes their handles."""
        moment = time.monotonic() if now is None else now
        expired = [s for s in self.sessions.values() if s.expired(moment)]
        for session in expired:
            del self.sessions[session.session_id]
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
            idle, self._idle = self._idle, []
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


def data_dir_holder(data_dir: Path) -> str | None:
    """Who holds a chDB data directory ("pid N" or "another process"), or None if it is free."""
    status = data_dir / "status"
    try:
        with status.open("rb") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                pid = re.search(rb"PID:\s*(\d+)", handle.read())
                return f"pid {pid.group(1).decode()}" if pid else "another process"
            fcntl.flock(handle, fcntl.LOCK_UN)
    except OSError:  # no status file: never opened, or not a data directory yet
        return None
    return None


def _open_failure(data_dir: Path, exc: Exception) -> str:
    """Why chDB could not open a data directory, said plainly (another process holding it is the usual cause)."""
    holder = data_dir_holder(data_dir)
    if holder:
        return f"cannot open the warehouse data directory {data_dir}: it is in use by {holder}"
    return f"cannot open the warehouse data directory {data_dir}: {exc}"


# --- the HTTP application --------------------------------------------------------------------------


def create_app(data_dir: Path, *, threads: int | None = None) -> Starlette:
    """ClickHouse's HTTP interface over a chDB engine opened (and closed) with the app's lifespan."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            engine = await asyncio.to_thread(Engine, data_dir, threads=threads)
        except WarehouseServerError as error:
            logger.error("%s", error)
            raise
        app.state.engine = engine
        app.state.running_queries = set()
        sweeper = asyncio.create_task(_expire_sessions(engine))
        logger.info("warehouse engine ClickHouse %s (timezone %s) on %s, %d query threads",
                    engine.version, engine.timezone, data_dir, engine.threads)
        try:
            yield
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
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
    encoding: str | None = None
    running: set[str] = request.app.state.running_queries
    session: _Session | None = None
    close_session = False
    try:
        job, params = await _job(request)
        query_id = params.transport.get("query_id") or query_id or str(uuid.uuid4())
        encoding = job.response_encoding
        close_session = parse_bool(params.transport.get("close_session"))
        if query_id in running:
            raise EngineError(QUERY_WITH_SAME_ID_IS_ALREADY_RUNNING, f"Query with id = {query_id} is already running.",
                              "QUERY_WITH_SAME_ID_IS_ALREADY_RUNNING")
        session = job.session = _claim_session(engine, params)
        running.add(query_id)
        try:
            outcome = await asyncio.get_running_loop().run_in_executor(engine.executor, engine.execute, job)
        finally:
            running.discard(query_id)
    except EngineError as error:
        logger.debug("query %s failed: %s", query_id, error.message[:300])
        return error_response(error, engine.version, query_id, server_name=engine.server_name, encoding=encoding)
    except Exception as exc:  # a bug here must still answer like ClickHouse, not drop the connection
        logger.exception("query %s failed unexpectedly", query_id)
        failure = EngineError(STD_EXCEPTION, f"Code: {STD_EXCEPTION}. DB::Exception: {exc}. (STD_EXCEPTION)",
                              "STD_EXCEPTION")
        return error_response(failure, engine.version, query_id, server_name=engine.server_name, encoding=encoding)
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
    return Response(outcome.body, media_type=content_type(outcome.output_format), headers=response_headers)


async def _release_session(engine: Engine, session: _Session, *, close: bool) -> None:
    session.busy = False
    session.last_used = time.monotonic()
    if close and engine.sessions.get(session.session_id) is session:
        del engine.sessions[session.session_id]
        await asyncio.get_running_loop().run_in_executor(engine.executor, engine.close_session_handle, session)


async def _job(request: Request) -> tuple[Job, RequestParams]:
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
    readonly_setting = settings.get("readonly", "0")
    readonly = int(readonly_setting) if readonly_setting.isdigit() else 0
    if request.method in {"GET", "HEAD"} and readonly == 0:
        readonly = 2
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


def _claim_session(engine: Engine, params: RequestParams) -> _Session | None:
    """The request's session, marked busy (ClickHouse refuses concurrent use of one session)."""
    session_id = params.transport.get("session_id")
    if not session_id:
        return None
    timeout = parse_session_timeout(params.transport.get("session_timeout"))
    session = engine.sessions.get(session_id)
    if session is None:
        if parse_bool(params.transport.get("session_check")):
            raise EngineError(SESSION_NOT_FOUND, f"Session {session_id} not found", "SESSION_NOT_FOUND")
        session = engine.sessions[session_id] = _Session(session_id)
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


def serve(*, host: str, port: int, data_dir: Path, log_level: str = "info", threads: int | None = None) -> None:
    """Run the embedded warehouse server (one process) until SIGINT/SIGTERM.

    The process's time zone is UTC, so ``timezone()`` and ``X-ClickHouse-Timezone`` are UTC as on our servers.
    Raises SystemExit(3) when the server cannot start (e.g. the data directory is in use).
    """
    holder = data_dir_holder(data_dir)
    if holder:
        raise WarehouseServerError(f"cannot open the warehouse data directory {data_dir}: it is in use by {holder}")
    os.environ["TZ"] = "UTC"
    time.tzset()
    app = create_app(data_dir, threads=threads)
    config = uvicorn.Config(
        app, host=host, port=port, log_level=log_level, access_log=False, proxy_headers=False, lifespan="on",
        timeout_keep_alive=30, timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
    )
    server = _Server(config, app)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        raise SystemExit(STARTUP_FAILURE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chserver.server",
                                     description="Serve a chDB data directory over ClickHouse's HTTP interface.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--data", type=Path, required=True, help="chDB data directory")
    parser.add_argument("--threads", type=int, default=None, help="query threads (default: CPUs + 4, at most 32)")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        serve(host=args.host, port=args.port, data_dir=args.data, log_level=args.log_level, threads=args.threads)
    except WarehouseServerError as error:
        logger.error("%s", error)
        return STARTUP_FAILURE
    return 0


if __name__ == "__main__":
    # Run the imported module, not this __main__ copy, so loggers are named chserver.server.
    from chserver.server import main as _main

    raise SystemExit(_main())
