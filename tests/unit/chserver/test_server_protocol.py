"""The warehouse server's protocol helpers: parameters, bodies, SQL scanning, statements, errors."""

from __future__ import annotations

import bz2
import gzip
import lzma
import struct
import zlib
from collections.abc import Callable

import lz4.block
import lz4.frame
import pytest
import zstandard
from chserver.exceptions import EngineError

from chserver.server import (
    build_statement,
    check_allowed,
    choose_response_encoding,
    content_type,
    decode_body,
    decompress_native_blocks,
    encode_body,
    error_response,
    exception_text,
    http_status,
    parse_engine_error,
    parse_session_timeout,
    quote_identifier,
    scan_sql,
    set_assignments,
    setting_literal,
    split_params,
    use_target,
)

# --- parameters ------------------------------------------------------------------------------------


def test_params_split_into_transport_settings_and_query_parameters() -> None:
    params = split_params([
        ("query", "SELECT 1"), ("database", "flowscope"), ("session_id", "s"), ("wait_end_of_query", "1"),
        ("enable_http_compression", "1"), ("max_threads", "2"), ("date_time_input_format", "best_effort"),
        ("param_pnid", "99"), ("param_start", "2026-01-01 00:00:00"), ("param_pnid", "ignored"),
        ("max_threads", "4"), ("", "skipped"), ("user", "default"), ("password", "secret"),
    ])
    assert params.transport == {"query": "SELECT 1", "database": "flowscope", "session_id": "s",
                                "wait_end_of_query": "1", "user": "default", "password": "secret"}
    assert params.settings == {"enable_http_compression": "1", "max_threads": "4",
                               "date_time_input_format": "best_effort"}
    assert params.query_params == {"pnid": "99", "start": "2026-01-01 00:00:00"}
    assert params.query == "SELECT 1"


def test_multipart_params_concatenate_queries_and_reserve_external_table_fields() -> None:
    params = split_params([("query", "SELECT * "), ("query", "FROM ext"), ("ext_structure", "a UInt8"),
                           ("ext_format", "CSV"), ("max_threads", "1")], external_data=True)
    assert params.query == "SELECT * FROM ext"
    assert params.transport == {"query": "SELECT * FROM ext", "ext_structure": "a UInt8", "ext_format": "CSV"}
    assert params.settings == {"max_threads": "1"}


def test_session_timeouts_are_validated_like_clickhouse() -> None:
    assert (parse_session_timeout(None), parse_session_timeout("5"), parse_session_timeout("3600")) == (60, 5, 3600)
    for bad in ("x", "-1", "3601"):
        with pytest.raises(EngineError) as info:
            parse_session_timeout(bad)
        assert (info.value.code, info.value.name) == (374, "INVALID_SESSION_TIMEOUT")


# --- bodies ----------------------------------------------------------------------------------------

BODY = b"INSERT data \x00\x01\xff " * 1000


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("lz4", lz4.frame.compress), ("zstd", zstandard.ZstdCompressor().compress), ("gzip", gzip.compress),
        ("deflate", zlib.compress), ("xz", lzma.compress), ("bz2", bz2.compress), ("", lambda b: b),
        ("identity", lambda b: b), ("none", lambda b: b), ("GZIP", gzip.compress), ("zst", zstandard.compress),
    ],
)
def test_request_bodies_are_decompressed_per_content_encoding(encoding: str,
                                                              compress: Callable[[bytes], bytes]) -> None:
    assert decode_body(compress(BODY), encoding) == BODY


@pytest.mark.parametrize("compress", [lz4.frame.compress, zstandard.ZstdCompressor().compress])
def test_bodies_of_several_frames_decompress_whole(compress: Callable[[bytes], bytes]) -> None:
    # clickhouse-connect compresses each Native block of an insert as a frame of its own.
    blocks = [b"block one " * 100, b"block two " * 300, b"3"]
    encoding = "lz4" if compress is lz4.frame.compress else "zstd"
    assert decode_body(b"".join(compress(block) for block in blocks), encoding) == b"".join(blocks)


def test_raw_deflate_bodies_are_accepted_too() -> None:
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    assert decode_body(raw.compress(BODY) + raw.flush(), "deflate") == BODY


def test_garbled_truncated_or_unknown_encodings_are_clickhouse_errors() -> None:
    with pytest.raises(EngineError) as garbled:
        decode_body(b"not lz4", "lz4")
    assert (garbled.value.code, garbled.value.name) == (271, "CANNOT_DECOMPRESS")
    with pytest.raises(EngineError, match="Unexpected end of the zstd request body"):
        decode_body(zstandard.ZstdCompressor().compress(BODY)[:-10], "zstd")
    with pytest.raises(EngineError) as unknown:
        decode_body(b"x", "snappy")
    assert (unknown.value.code, unknown.value.name) == (48, "NOT_IMPLEMENTED")
    assert "Unknown compression method 'snappy'" in unknown.value.message


def _native_block(method: int, payload: bytes, raw_size: int) -> bytes:
    return struct.pack("<16sBII", b"\x00" * 16, method, len(payload) + 9, raw_size) + payload


def test_clickhouse_native_compressed_bodies_decompress() -> None:
    first, second, third = b"lz4 block " * 50, b"zstd block " * 20, b"plain"
    body = (_native_block(0x82, lz4.block.compress(first, store_size=False), len(first))
            + _native_block(0x90, zstandard.ZstdCompressor().compress(second), len(second))
            + _native_block(0x02, third, len(third)))
    assert decompress_native_blocks(body) == first + second + third
    with pytest.raises(EngineError) as unknown:
        decompress_native_blocks(_native_block(0x42, b"x", 1))
    assert (unknown.value.code, unknown.value.message) == (432, "Unknown codec family code: 66")
    with pytest.raises(EngineError, match="Truncated compressed block"):
        decompress_native_blocks(_native_block(0x02, third, len(third))[:-1])


def test_response_encoding_follows_clickhouse_preference_not_header_order() -> None:
    assert choose_response_encoding("lz4,zstd,gzip,deflate") == "zstd"  # what clickhouse-connect sends
    assert choose_response_encoding("gzip, deflate, br") == "gzip"  # what curl --compressed sends
    assert choose_response_encoding("lz4") == "lz4"
    assert choose_response_encoding("deflate;q=0.5, identity") == "deflate"
    assert choose_response_encoding("br") is None
    assert choose_response_encoding(None) is None


@pytest.mark.parametrize("encoding", ["zstd", "lz4", "gzip", "deflate", "xz", "bz2"])
def test_responses_compress_as_the_content_encoding_says(encoding: str) -> None:
    body = b"1\t2\n" * 5000
    compressed = encode_body(body, encoding)
    assert len(compressed) < len(body)
    assert decode_body(compressed, encoding) == body


def test_lz4_responses_are_lz4_frames_as_clickhouse_connect_decodes_them() -> None:
    body = b"abc" * 1000
    decompressor = lz4.frame.LZ4FrameDecompressor()
    assert (decompressor.decompress(encode_body(body, "lz4")), decompressor.eof) == (body, True)


# --- SQL scanning and statements ---------------------------------------------------------------------


def test_query_in_url_and_body_are_joined_by_a_newline() -> None:
    statement = build_statement("SELECT", b" 1 + 1", "TabSeparated")
    assert (statement.sql, statement.output_format, statement.format_in_query) == ("SELECT\n 1 + 1", "TabSeparated",
                                                                                   False)


def test_format_in_the_query_wins_over_default_format() -> None:
    assert build_statement("", b"SELECT 1 FORMAT JSON", "TabSeparated").output_format == "JSON"
    assert build_statement("SELECT 1\n FORMAT Native", b"", "JSON").output_format == "Native"
    assert build_statement("SELECT 1 FORMAT JSON SETTINGS max_threads = 1", b"", "CSV").output_format == "JSON"
    assert build_statement("SELECT 1 FORMAT CSV;", b"", "JSON").output_format == "CSV"
    assert build_statement("SELECT 1", b"", "JSONEachRow").output_format == "JSONEachRow"


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT format FROM t",
        "SELECT format('{}', 1)",
        "SELECT x AS format FROM t",
        "SELECT 'FORMAT JSON'",
        "SELECT 1 -- FORMAT JSON",
        "SELECT * FROM (SELECT 1 FORMAT JSON)",
        "SELECT 1 /* FORMAT JSON */",
    ],
)
def test_format_words_that_are_not_a_format_clause_are_ignored(sql: str) -> None:
    statement = build_statement(sql, b"", "TabSeparated")
    assert (statement.output_format, statement.format_in_query) == ("TabSeparated", False)


def test_insert_with_data_body_as_clickhouse_connect_sends_it() -> None:
    statement = build_statement("INSERT INTO flowscope.t (`a`, `b`) FORMAT Native", b"\x02\x01binary'\n;", "TSV")
    assert (statement.sql, statement.insert_format, statement.data) == (
        "INSERT INTO flowscope.t (`a`, `b`)", "Native", b"\x02\x01binary'\n;"
    )


def test_insert_with_query_and_rows_in_the_body_like_curl() -> None:
    statement = build_statement("", b'INSERT INTO t FORMAT JSONEachRow\n{"a":1}\n{"a":2}\n', "TabSeparated")
    assert (statement.sql, statement.insert_format, statement.data) == ("INSERT INTO t", "JSONEachRow",
                                                                        b'{"a":1}\n{"a":2}\n')
    same_line = build_statement("", b"INSERT INTO t FORMAT CSV 1,2\n", "TabSeparated")
    assert (same_line.insert_format, same_line.data) == ("CSV", b"1,2\n")
    big = build_statement("", b"INSERT INTO t FORMAT TSV\n" + b"1\t'x'\n" * 100_000, "TabSeparated")
    assert (big.insert_format, len(big.data)) == ("TSV", 600_000)


def test_insert_with_rows_split_between_url_and_body() -> None:
    statement = build_statement("INSERT INTO t FORMAT CSV\n1,a", b"2,b\n", "TabSeparated")  # joined by "\n"
    assert (statement.sql, statement.insert_format, statement.data) == ("INSERT INTO t", "CSV", b"1,a\n2,b\n")


def test_insert_values_sends_the_rows_as_data() -> None:
    statement = build_statement("INSERT INTO t (a, b) VALUES", b"(1, 'a;b'), (2, 'c')", "TabSeparated")
    assert (statement.sql, statement.insert_format, statement.data) == ("INSERT INTO t (a, b)", "Values",
                                                                        b"\n(1, 'a;b'), (2, 'c')")
    settings = build_statement("", b"INSERT INTO t SETTINGS async_insert = 1 VALUES (1)", "TabSeparated")
    assert (settings.sql, settings.insert_format) == ("INSERT INTO t SETTINGS async_insert = 1", "Values")


def test_insert_select_stays_a_statement() -> None:
    statement = build_statement("INSERT INTO t SELECT number FROM numbers(3) WHERE format = 'x'", b"", "TSV")
    assert (statement.sql, statement.insert_format) == (
        "INSERT INTO t SELECT number FROM numbers(3) WHERE format = 'x'", ""
    )
    values_function = build_statement("INSERT INTO t SELECT * FROM values('a UInt8', 1)", b"", "TSV")
    assert values_function.insert_format == ""


@pytest.mark.parametrize(
    "sql", ["SELECT 1; SELECT 2", "SELECT 1;SELECT 2;", "CREATE TABLE t (a UInt8) ENGINE = Memory; DROP TABLE t"]
)
def test_multi_statements_are_refused(sql: str) -> None:
    with pytest.raises(EngineError) as info:
        build_statement(sql, b"", "TabSeparated")
    assert (info.value.code, info.value.name) == (62, "SYNTAX_ERROR")
    assert info.value.message.startswith("Syntax error (Multi-statements are not allowed): failed at position")


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT 1;", "SELECT 1"),
        ("SELECT 1; ;  -- trailing comment", "SELECT 1"),
        ("SELECT 'a;b', \"c;d\", `e;f`", "SELECT 'a;b', \"c;d\", `e;f`"),
        ("SELECT 'it''s; fine', 'back\\'slash;'", "SELECT 'it''s; fine', 'back\\'slash;'"),
        ("SELECT $$a;b$$, $tag$c;d$tag$", "SELECT $$a;b$$, $tag$c;d$tag$"),
        ("SELECT 1 /* ; */ -- ;\n + 1", "SELECT 1 /* ; */ -- ;\n + 1"),
    ],
)
def test_semicolons_in_strings_comments_or_at_the_end_are_one_statement(sql: str, expected: str) -> None:
    assert build_statement(sql, b"", "TabSeparated").sql == expected


def test_empty_query_is_a_syntax_error() -> None:
    for query, body in (("", b"  \n"), ("", b""), ("  ", b""), ("-- only a comment", b"")):
        with pytest.raises(EngineError) as info:
            build_statement(query, body, "TabSeparated")
        assert (info.value.code, info.value.message) == (62, "Empty query")


def test_scan_finds_keyword_outfile_and_infile() -> None:
    assert scan_sql("  (SELECT 1) UNION ALL SELECT 2").keyword == "SELECT"
    assert scan_sql("WITH 1 AS x SELECT x").keyword == "WITH"
    assert scan_sql("SELECT 1 INTO OUTFILE 'x.csv'").into_outfile
    assert scan_sql("INSERT INTO t FROM INFILE 'x.csv' FORMAT CSV").from_infile
    assert not scan_sql("SELECT 'INTO OUTFILE'").into_outfile


def test_get_requests_are_read_only_like_clickhouse() -> None:
    for sql in ("SELECT 1", "WITH 1 AS x SELECT x", "SHOW TABLES", "DESCRIBE t", "EXISTS t", "EXPLAIN SELECT 1"):
        check_allowed(build_statement(sql, b"", "TSV"), readonly=2, method="GET")
    with pytest.raises(EngineError) as info:
        check_allowed(build_statement("DROP TABLE t", b"", "TSV"), readonly=2, method="GET")
    assert (info.value.code, info.value.name) == (164, "READONLY")
    assert "method GET implies readonly" in info.value.message
    check_allowed(build_statement("DROP TABLE t", b"", "TSV"), readonly=0, method="POST")
    with pytest.raises(EngineError) as outfile:
        check_allowed(build_statement("SELECT 1 INTO OUTFILE 'x'", b"", "TSV"), readonly=0, method="POST")
    assert (outfile.value.code, outfile.value.message) == (358, "INTO OUTFILE is not allowed")


def test_set_and_use_statements_are_understood() -> None:
    assert set_assignments("SET max_threads = 1, log_comment = 'a, b', x = (1, 2)") == [
        ("max_threads", "1"), ("log_comment", "'a, b'"), ("x", "(1, 2)")
    ]
    assert set_assignments("SET ROLE admin") == []
    assert set_assignments("SELECT 1") == []
    assert (use_target("USE system"), use_target("USE `my db`"), use_target("SELECT 1")) == ("system", "my db", None)


def test_identifiers_and_setting_values_are_quoted_safely() -> None:
    assert quote_identifier("a`b\\c") == "`a\\`b\\\\c`"
    assert setting_literal("it's \\ fine") == "'it\\'s \\\\ fine'"


# --- errors ----------------------------------------------------------------------------------------


def test_engine_errors_keep_code_message_and_name() -> None:
    error = parse_engine_error("Code: 60. DB::Exception: Unknown table expression identifier 'x'. (UNKNOWN_TABLE)")
    assert (error.code, error.name, error.message) == (
        60, "UNKNOWN_TABLE", "Code: 60. DB::Exception: Unknown table expression identifier 'x'. (UNKNOWN_TABLE)"
    )


def test_wrapped_and_doubled_engine_errors_are_normalised() -> None:
    doubled = parse_engine_error("Code: 115. DB::Exception: Code: 115. DB::Exception: Unknown setting 'x'. "
                                 "(UNKNOWN_SETTING) (version 26.9.2.1). (UNKNOWN_SETTING)")
    assert (doubled.code, doubled.message) == (115, "Code: 115. DB::Exception: Unknown setting 'x'. (UNKNOWN_SETTING)")
    wrapped = parse_engine_error(
        "Streaming insert finish failed: Code: 27. DB::Exception: Cannot parse input: (at row 1)\n"
        ": While executing CSVRowInputFormat. (CANNOT_PARSE_INPUT_ASSERTION_FAILED) (version 26.9.2.1)"
    )
    assert (wrapped.code, wrapped.name) == (27, "CANNOT_PARSE_INPUT_ASSERTION_FAILED")
    assert wrapped.message.startswith("Code: 27. DB::Exception: Cannot parse input")
    assert "version" not in wrapped.message
    odd = parse_engine_error("send_insert does not support INSERT ... SELECT.")
    assert (odd.code, odd.name) == (1001, "STD_EXCEPTION")
    assert odd.message == "Code: 1001. DB::Exception: send_insert does not support INSERT ... SELECT. (STD_EXCEPTION)"


@pytest.mark.parametrize(
    ("code", "status"),
    [(60, 404), (81, 404), (115, 404), (46, 404), (62, 400), (27, 400), (53, 400), (36, 400), (48, 501),
     (516, 403), (194, 401), (159, 408), (241, 500), (394, 500), (164, 500), (1001, 500)],
)
def test_error_responses_look_like_clickhouse(code: int, status: int) -> None:
    assert http_status(code) == status
    response = error_response(EngineError(code, f"Code: {code}. DB::Exception: boom. (X)", "X"), "26.9.2.1", "q1",
                              server_name="host")
    assert response.status_code == status
    assert (response.headers["X-ClickHouse-Exception-Code"], response.headers["X-ClickHouse-Query-Id"],
            response.headers["X-ClickHouse-Server-Display-Name"]) == (str(code), "q1", "host")
    assert response.headers["content-type"] == "text/plain; charset=UTF-8"
    assert bytes(response.body) == f"Code: {code}. DB::Exception: boom. (X) (version 26.9.2.1)\n".encode()


def test_error_bodies_are_compressed_when_the_response_would_be() -> None:
    response = error_response(EngineError(62, "Empty query", "SYNTAX_ERROR"), "26.9.2.1", "q", server_name="h",
                              encoding="zstd")
    assert response.headers["Content-Encoding"] == "zstd"
    assert zstandard.decompress(bytes(response.body)) == (
        b"Code: 62. DB::Exception: Empty query. (SYNTAX_ERROR) (version 26.9.2.1)\n"
    )


def test_exception_text_adds_the_clickhouse_prefix_when_missing() -> None:
    assert exception_text(EngineError(373, "Session s is locked by a concurrent client.", "SESSION_IS_LOCKED"),
                          "1.2") == (
        "Code: 373. DB::Exception: Session s is locked by a concurrent client. (SESSION_IS_LOCKED) (version 1.2)\n"
    )


def test_content_types_per_format() -> None:
    assert content_type("TabSeparated") == "text/tab-separated-values; charset=UTF-8"
    assert content_type("tsvwithnames") == "text/tab-separated-values; charset=UTF-8"
    assert content_type("JSON") == "application/json; charset=UTF-8"
    assert content_type("JSONEachRow") == "application/x-ndjson; charset=UTF-8"
    assert content_type("CSVWithNames") == "text/csv; charset=UTF-8; header=present"
    assert content_type("Native") == content_type("Parquet") == "application/octet-stream"
    assert content_type("PrettyCompact") == "text/plain; charset=UTF-8"
