"""The SQL scanner: keywords, INTO OUTFILE / FROM INFILE, SET and USE, quoting."""

from __future__ import annotations

from chserver.sqlscan import quote_identifier, scan_sql, set_assignments, setting_literal, use_target


def test_scan_finds_keyword_outfile_and_infile() -> None:
    assert scan_sql("  (SELECT 1) UNION ALL SELECT 2").keyword == "SELECT"
    assert scan_sql("WITH 1 AS x SELECT x").keyword == "WITH"
    assert scan_sql("SELECT 1 INTO OUTFILE 'x.csv'").into_outfile
    assert scan_sql("INSERT INTO t FROM INFILE 'x.csv' FORMAT CSV").from_infile
    assert not scan_sql("SELECT 'INTO OUTFILE'").into_outfile


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
