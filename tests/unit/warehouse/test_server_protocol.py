"""The warehouse server's protocol helpers: parameters, bodies, statements, errors."""

from __future__ import annotations

import gzip
import zlib

import lz4.frame
import pytest
import zstandard

from warehouse.exceptions import EngineError
from warehouse.server import build_statement, decode_body, encode_body, error_response, parse_engine_error, split_params


def test_params_split_into_transport_settings_and_query_parameters() -> None:
    transport, settings, params = split_params({
        "query": "SELECT 1", "database": "flowscope", "session_id": "s", "wait_end_of_query": "1",
        "enable_http_compression": "1", "max_threads": "2", "date_time_input_format": "best_effort",
        "param_pnid": "99", "param_start": "2026-01-01 00:00:00",
    })
    assert transport == {"query": "SELECT 1", "database": "flowscope", "session_id": "s", "wait_end_of_query": "1",
                         "enable_http_compression": "1"}
    assert settings == {"max_threads": "2", "date_time_input_format": "best_effort"}
    assert params == {"pnid": "99", "start": "2026-01-01 00:00:00"}


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [("lz4", lz4.frame.compress), ("zstd", zstandard.ZstdCompressor().compress), ("gzip", gzip.compress),
     ("deflate", zlib.compress), ("", lambda b: b), ("identity", lambda b: b)],
)
def test_request_bodies_are_decompressed_per_content_encoding(encoding: str, compress: object) -> None:
    body = b"INSERT data " * 1000
    assert decode_body(compress(body), encoding) == body  # type: ignore[operator]


def test_garbled_or_unknown_encoding_is_a_clickhouse_error() -> None:
    with pytest.raises(EngineError) as garbled:
        decode_body(b"not lz4", "lz4")
    assert garbled.value.code == 432
    with pytest.raises(EngineError, match="Unknown Content-Encoding"):
        decode_body(b"x", "snappy")


@pytest.mark.parametrize("encoding", ["lz4", "zstd", "gzip", "deflate"])
def test_responses_use_the_first_accepted_encoding(encoding: str) -> None:
    body = b"1\t2\n" * 500
    compressed, chosen = encode_body(body, f"br;q=1, {encoding}")
    assert chosen == encoding
    assert decode_body(compressed, encoding) == body
    assert encode_body(body, "br") == (body, None)
    assert encode_body(body, None) == (body, None)


def test_query_in_url_and_body_are_concatenated() -> None:
    statement = build_statement("SELECT", b" 1 + 1", "TabSeparated")
    assert (statement.sql, statement.output_format, statement.insert_target) == ("SELECT\n 1 + 1", "TabSeparated", "")


def test_format_in_the_query_wins_over_default_format() -> None:
    statement = build_statement("", b"SELECT 1 FORMAT JSON", "TabSeparated")
    assert (statement.output_format, statement.format_in_query) == ("JSON", True)
    assert build_statement("SELECT 1", b"", "JSONEachRow").output_format == "JSONEachRow"


def test_insert_with_data_body_from_clickhouse_connect() -> None:
    statement = build_statement("INSERT INTO flowscope.t (a, b) FORMAT Native", b"\x02\x01binary", "TabSeparated")
    assert (statement.insert_target, statement.insert_format, statement.data) == (
        "flowscope.t (a, b)", "Native", b"\x02\x01binary"
    )


def test_insert_with_query_and_rows_in_the_body_like_curl() -> None:
    statement = build_statement("", b'INSERT INTO t FORMAT JSONEachRow\n{"a":1}\n{"a":2}\n', "TabSeparated")
    assert (statement.insert_target, statement.insert_format, statement.data) == (
        "t", "JSONEachRow", b'{"a":1}\n{"a":2}\n'
    )


def test_insert_values_stays_a_plain_statement() -> None:
    statement = build_statement("INSERT INTO t VALUES (1, 'a')", b"", "TabSeparated")
    assert (statement.sql, statement.insert_target) == ("INSERT INTO t VALUES (1, 'a')", "")


def test_empty_query_is_a_syntax_error() -> None:
    with pytest.raises(EngineError) as info:
        build_statement("", b"  ", "TabSeparated")
    assert (info.value.code, info.value.name) == (62, "SYNTAX_ERROR")


def test_engine_errors_keep_code_and_name() -> None:
    error = parse_engine_error("Code: 60. DB::Exception: Unknown table expression identifier 'x'. (UNKNOWN_TABLE)")
    assert (error.code, error.name) == (60, "UNKNOWN_TABLE")
    unknown = parse_engine_error("something odd")
    assert (unknown.code, unknown.name) == (1001, "STD_EXCEPTION")


@pytest.mark.parametrize(("code", "status"), [(60, 404), (81, 404), (62, 400), (115, 400), (241, 500)])
def test_error_responses_look_like_clickhouse(code: int, status: int) -> None:
    response = error_response(EngineError(code, f"Code: {code}. DB::Exception: boom. (X)", "X"), "26.9", "q1")
    assert response.status_code == status
    assert response.headers["X-ClickHouse-Exception-Code"] == str(code)
    assert response.headers["X-ClickHouse-Query-Id"] == "q1"
    assert bytes(response.body) == f"Code: {code}. DB::Exception: boom. (X) (version 26.9)\n".encode()
