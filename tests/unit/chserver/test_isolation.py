"""Host isolation: table functions, engines, sources and settings that reach the host are refused."""

from __future__ import annotations

import pytest

from chserver.exceptions import EngineError
from chserver.isolation import check_isolation, check_settings_isolation, denied_names

DENIED = denied_names(["file", "url", "numbers", "remote", "s3", "generateRandom"],
                      ["File", "MergeTree", "Kafka", "EmbeddedRocksDB"])


def test_only_local_functions_and_engines_are_allowed() -> None:
    assert {"file", "url", "remote", "s3", "kafka", "python", "disk"} <= DENIED
    assert not {"numbers", "generaterandom", "mergetree"} & DENIED


@pytest.mark.parametrize(
    ("sql", "code"),
    [
        ("SELECT * FROM file('/etc/passwd')", 497),
        ("select file('/proc/self/environ')", 497),
        ("SELECT `file`('/x')", 497),
        ('SELECT "URL"(\'http://x\')', 497),
        ("SELECT * FROM remote /* c */ ('h', system.one)", 497),
        ("SELECT * FROM\n-- c\ns3\n('http://x')", 497),
        ("CREATE TABLE t (a String) ENGINE = File(TSV, '/x')", 497),
        ("CREATE TABLE t (a String) ENGINE Kafka SETTINGS kafka_broker_list = 'x'", 497),
        ("CREATE TABLE t (a String) ENGINE = Kafka SETTINGS kafka_broker_list = 'x'", 497),
        ("CREATE DICTIONARY d (k UInt64) PRIMARY KEY k SOURCE(CLICKHOUSE(HOST 'x')) LAYOUT(FLAT()) LIFETIME(0)", 497),
        ("INSERT INTO FUNCTION numbers(1) SELECT 1", 497),
        ("INSERT INTO TABLE FUNCTION null('a UInt8') SELECT 1", 497),
        ("ATTACH TABLE t FROM '/var/x' (a UInt8) ENGINE = MergeTree ORDER BY a", 497),
        ("BACKUP TABLE t TO Disk('d', 'x')", 497),
        ("CREATE TABLE t (k String) ENGINE = EmbeddedRocksDB(0, '/var/lib/x') PRIMARY KEY k", 497),
        ("CREATE TABLE t (k String) ENGINE = EmbeddedRocksDB(0, '/x', 1) PRIMARY KEY k", 497),
        ("SYSTEM SHUTDOWN", 497),
        ("system reload config", 497),
        ("SELECT 1 SETTINGS format_schema = '/etc/passwd'", 452),
        ("SET input_format_values_interpret_expressions = 1", 452),
    ],
)
def test_host_access_is_refused(sql: str, code: int) -> None:
    with pytest.raises(EngineError) as refused:
        check_isolation(sql, user="u", denied=DENIED)
    assert refused.value.code == code


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT file, url FROM t WHERE url = 'file(x)'",  # columns and strings named like functions
        "SELECT * FROM numbers(3)",
        "CREATE TABLE t (file String, url String) ENGINE = MergeTree ORDER BY file",
        "INSERT INTO t (file, url) VALUES",
        "SYSTEM FLUSH LOGS",
        "SELECT 1 -- file('/etc/passwd')",
        "CREATE TABLE t (k String) ENGINE = EmbeddedRocksDB PRIMARY KEY k",  # in the table's own directory
        "CREATE TABLE t (k String) ENGINE = EmbeddedRocksDB(3600) PRIMARY KEY k",
    ],
)
def test_local_statements_pass(sql: str) -> None:
    check_isolation(sql, user="u", denied=DENIED)


def test_settings_that_name_files_are_refused() -> None:
    check_settings_isolation(["max_threads", "output_format_json_quote_64bit_integers"])
    names = ("format_schema", "format_template_row", "output_format_schema", "input_format_record_errors_file_path")
    for name in names:
        with pytest.raises(EngineError) as refused:
            check_settings_isolation([name])
        assert refused.value.code == 452
