"""Statement policy: read-only requests and server-side files refused like ClickHouse."""

from __future__ import annotations

import pytest

from chserver.exceptions import EngineError
from chserver.policy import check_allowed, readonly_level
from chserver.statements import build_statement


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


def test_get_and_head_requests_are_readonly_2_unless_a_readonly_setting_says_otherwise() -> None:
    assert (readonly_level(method="GET"), readonly_level(method="HEAD"), readonly_level(method="POST")) == (2, 2, 0)
    assert (readonly_level(method="GET", setting="1"), readonly_level(method="POST", setting="2")) == (1, 2)
    assert (readonly_level(method="POST", setting="x"), readonly_level(method="GET", setting="0")) == (0, 2)
