"""Engine errors: chDB's text parsed to ClickHouse's code and name, exception bodies, error responses."""

from __future__ import annotations

import pytest
import zstandard

from chserver.errors import error_response, exception_text, parse_engine_error
from chserver.exceptions import EngineError
from chserver.protocol import http_status


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
