"""Statements from the URL query and the body: joining, FORMAT clauses, INSERT data, one statement only."""

from __future__ import annotations

import pytest

from chserver.exceptions import EngineError
from chserver.statements import build_statement


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
