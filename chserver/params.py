"""A request's URL and form parameters: transport parameters, per-request settings, server-side query parameters."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from chserver.exceptions import EngineError
from chserver.protocol import INVALID_SESSION_TIMEOUT

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
