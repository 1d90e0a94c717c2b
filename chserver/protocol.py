"""ClickHouse's HTTP protocol as this server speaks it: error codes, HTTP statuses and content types per format."""

from __future__ import annotations

from collections.abc import Mapping

# --- ClickHouse error codes this server raises itself ----------------------------------------------
BAD_ARGUMENTS = 36
NOT_IMPLEMENTED = 48
SYNTAX_ERROR = 62
UNKNOWN_FORMAT = 73
UNKNOWN_TABLE = 60
CANNOT_PARSE_NUMBER = 72
UNKNOWN_TYPE_OF_QUERY = 78
UNKNOWN_SETTING = 115
READONLY = 164
QUERY_WITH_SAME_ID_IS_ALREADY_RUNNING = 216
CANNOT_DECOMPRESS = 271
INTO_OUTFILE_NOT_ALLOWED = 358
SESSION_NOT_FOUND = 372
SESSION_IS_LOCKED = 373
INVALID_SESSION_TIMEOUT = 374
SETTING_CONSTRAINT_VIOLATION = 452
ACCESS_DENIED = 497
AUTHENTICATION_FAILED = 516
UNKNOWN_CODEC = 432
STD_EXCEPTION = 1001

# ClickHouse's exceptionCodeToHTTPStatus (src/Server/HTTP/exceptionCodeToHTTPStatus.cpp): a failed authentication
# (516) and ACCESS_DENIED (497) are 403; only REQUIRED_PASSWORD (194) is 401.
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
