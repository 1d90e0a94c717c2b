"""The request parameters: transport, settings and server-side query parameters; session timeouts."""

from __future__ import annotations

import pytest

from chserver.exceptions import EngineError
from chserver.params import parse_session_timeout, split_params


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
