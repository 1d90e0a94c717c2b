"""Host isolation: statements that would reach the file system, the network or processes, refused for every user.

chDB is clickhouse-local: it has no ``user_files_path`` confinement, no grants on sources (FILE, URL,
REMOTE, S3, …) and reads ``format_schema``/template files anywhere. Its read-only mode refuses table
functions (they need temporary tables), but not the scalar ``file()``, nor schema inference in
``DESCRIBE url(…)``; and an admin connection is not read-only. So this module refuses, by scanning
the statement's tokens (comments skipped, quoted names unquoted, case ignored), every table function
and table/database engine not on an allow-list of local ones, ``file()``, dictionary ``SOURCE(…)``,
custom disks, ``INSERT INTO FUNCTION``, ``BACKUP``/``RESTORE``, ``ATTACH … FROM '<path>'``, host
``SYSTEM`` commands and the settings that name files or turn on expression evaluation in inserted
data. For the admin this scan is the only guard; the analyst and writer are read-only in the engine
(or get a rebuilt INSERT) first, and this scan comes on top.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from chserver.exceptions import EngineError
from chserver.protocol import ACCESS_DENIED, SETTING_CONSTRAINT_VIOLATION, UNKNOWN_FORMAT
from chserver.sqlscan import Token, tokenize, unquote_identifier

# Table functions that only read the engine's own data or generate rows.
LOCAL_TABLE_FUNCTIONS = frozenset(name.lower() for name in (
    "numbers", "numbers_mt", "zeros", "zeros_mt", "generateRandom", "generateSeries", "generate_series", "primes",
    "values", "SQLStandardValues", "null", "merge", "view", "viewIfPermitted", "viewExplain", "format", "loop",
    "fuzzJSON", "fuzzQuery", "dictionary", "mergeTreeIndex", "mergeTreeProjection", "mergeTreeAnalyzeIndexes",
    "mergeTreeAnalyzeIndexesUUID", "mergeTreeCodecBlockCounts", "mergeTreeTextIndex", "timeSeriesData",
    "timeSeriesTags", "timeSeriesMetrics", "timeSeriesSamples", "timeSeriesSelector", "timeSeriesMetricFamilies",
))
# Table engines that keep data in the engine's own data directory (or in memory).
LOCAL_TABLE_ENGINES = frozenset(name.lower() for name in (
    "MergeTree", "ReplacingMergeTree", "SummingMergeTree", "AggregatingMergeTree", "CollapsingMergeTree",
    "VersionedCollapsingMergeTree", "GraphiteMergeTree", "CoalescingMergeTree", "Memory", "Log", "TinyLog",
    "StripeLog", "Null", "Set", "Join", "Buffer", "MaterializedView", "View", "Dictionary", "Merge",
    "GenerateRandom", "Alias", "Loop", "TimeSeries", "FuzzJSON", "FuzzQuery",
))
# Refused whatever the engine lists: the scalar file(), database engines, dictionary sources, custom disks.
ALWAYS_DENIED = frozenset({
    "file", "url", "remote", "remotesecure", "cluster", "clusterallreplicas", "s3", "s3cluster", "gcs",
    "azureblobstorage", "hdfs", "hdfscluster", "executable", "executablepool", "executable_pool", "mysql",
    "postgresql", "mongodb", "redis", "sqlite", "jdbc", "odbc", "input", "python", "eval", "queryrunner",
    "materializedmysql", "materializedpostgresql", "filesystem", "backup", "datalakecatalog", "replicated",
    "http", "https", "disk", "kafka", "rabbitmq", "nats", "filelog", "s3queue", "azurequeue", "embeddedrocksdb",
    "keepermap", "distributed", "hive", "iceberg", "deltalake", "hudi", "paimon", "arrowflight", "ytsaurus",
})
# Settings nobody may change: they name files on the host, or evaluate expressions inside inserted data.
DENIED_SETTINGS = frozenset({
    "input_format_values_interpret_expressions", "input_format_values_deduce_templates_of_expressions",
    "input_format_record_errors_file_path", "output_format_schema",
})
DENIED_SETTING_PREFIXES = ("format_schema", "format_template")
# SYSTEM commands the admin may run; everything else (SHUTDOWN, RELOAD, RESTART, …) touches the host.
ADMIN_SYSTEM_COMMANDS = frozenset({"FLUSH", "STOP", "START", "DROP", "SYNC", "WAIT"})

_GRANTS = (("file", "FILE"), ("url", "URL"), ("remote", "REMOTE"), ("cluster", "REMOTE"), ("s3", "S3"),
           ("gcs", "S3"), ("hdfs", "HDFS"), ("azure", "AZURE"), ("mysql", "MYSQL"), ("postgresql", "POSTGRES"),
           ("mongo", "MONGO"), ("redis", "REDIS"), ("sqlite", "SQLITE"), ("jdbc", "JDBC"), ("odbc", "ODBC"),
           ("kafka", "KAFKA"), ("rabbitmq", "RABBITMQ"), ("nats", "NATS"))
_FORMAT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def denied_names(table_functions: Iterable[str], table_engines: Iterable[str]) -> frozenset[str]:
    """Every table function and engine the engine knows that is not local, plus ``ALWAYS_DENIED`` (lower case)."""
    functions = {name.lower() for name in table_functions} - LOCAL_TABLE_FUNCTIONS
    engines = {name.lower() for name in table_engines} - LOCAL_TABLE_ENGINES
    return frozenset(functions | engines | ALWAYS_DENIED)


def access_denied(user: str, grant: str, why: str = "") -> EngineError:
    """ClickHouse's ACCESS_DENIED (497) for a missing grant."""
    detail = f" ({why})" if why else ""
    return EngineError(ACCESS_DENIED, f"Code: {ACCESS_DENIED}. DB::Exception: {user}: Not enough privileges. To "
                       f"execute this query, it's necessary to have the grant {grant}{detail}. (ACCESS_DENIED)",
                       "ACCESS_DENIED")


def setting_violation(name: str) -> EngineError:
    """ClickHouse's SETTING_CONSTRAINT_VIOLATION (452) for a setting a profile forbids changing."""
    return EngineError(SETTING_CONSTRAINT_VIOLATION, f"Code: {SETTING_CONSTRAINT_VIOLATION}. DB::Exception: "
                       f"Setting {name} should not be changed. (SETTING_CONSTRAINT_VIOLATION)",
                       "SETTING_CONSTRAINT_VIOLATION")


def is_denied_setting(name: str) -> bool:
    lower = name.lower()
    return lower in DENIED_SETTINGS or lower.startswith(DENIED_SETTING_PREFIXES)


def identifier(token: Token) -> str | None:
    """A word or a back-/double-quoted name as the engine resolves it; None for strings and punctuation."""
    if token.kind == "word":
        return token.text
    if token.kind == "quoted" and token.text[:1] in "`\"":
        return unquote_identifier(token.text)
    return None


def _grant(name: str) -> str:
    for prefix, grant in _GRANTS:
        if name.startswith(prefix):
            return f"READ ON {grant}"
    return f"READ ON {name.upper()}"


def _text(tokens: list[Token], i: int) -> str:
    return tokens[i].text.upper() if 0 <= i < len(tokens) else ""


def check_isolation(sql: str, *, user: str, denied: frozenset[str]) -> None:
    """Refuse a statement that reaches the host (ACCESS_DENIED) or changes a denied setting (452)."""
    tokens = list(tokenize(sql))
    words = [t.text.upper() for t in tokens if t.kind == "word"]
    keyword = words[0] if words else ""
    if keyword in {"BACKUP", "RESTORE"}:
        raise access_denied(user, keyword, "backups write to and read from the host")
    if keyword == "SYSTEM" and (len(words) < 2 or words[1] not in ADMIN_SYSTEM_COMMANDS):
        raise access_denied(user, "SYSTEM " + (words[1] if len(words) > 1 else ""), "it acts on the host")
    if keyword == "INSERT" and "FUNCTION" in words[1:4]:
        raise access_denied(user, "INSERT INTO FUNCTION", "table functions write to the host")
    for i, token in enumerate(tokens):
        name = identifier(token)
        if name is None:
            continue
        lower = name.lower()
        after, before = _text(tokens, i + 1), _text(tokens, i - 1)
        if lower in denied and (after == "(" or before == "ENGINE" or (before == "=" and _text(tokens, i - 2)
                                                                         == "ENGINE")):
            if lower == _ROCKSDB and _rocksdb_in_its_table(tokens, i):
                continue
            raise access_denied(user, _grant(lower), f"{name} reaches the host")
        if token.kind == "word" and is_denied_setting(name) and after == "=":
            raise setting_violation(name)
        if keyword in {"CREATE", "ATTACH", "REPLACE"} and lower == "source" and after == "(":
            raise access_denied(user, "CREATE DICTIONARY", "dictionary sources reach the host")
        if keyword == "ATTACH" and token.kind == "word" and token.text.upper() == "FROM" and i + 1 < len(tokens) \
                and tokens[i + 1].kind == "quoted" and tokens[i + 1].text[:1] == "'":
            raise access_denied(user, "ATTACH", "ATTACH … FROM '<path>' reads the host")


_ROCKSDB = "embeddedrocksdb"


def _rocksdb_in_its_table(tokens: list[Token], i: int) -> bool:
    """``ENGINE = EmbeddedRocksDB`` with no argument or only a TTL: the key-value store lives in the table's own
    data directory. Its other arguments (``rocksdb_dir``, ``read_only``) would name a directory of the host."""
    if _text(tokens, i + 1) != "(":
        return True
    close = i + 2
    while close < len(tokens) and tokens[close].text != ")":
        close += 1
    arguments = tokens[i + 2:close]
    return len(arguments) == 1 and arguments[0].text.isdigit()


def check_settings_isolation(names: Iterable[str]) -> None:
    """Refuse request settings nobody may change (452)."""
    for name in names:
        if is_denied_setting(name):
            raise setting_violation(name)


def check_format_name(fmt: str) -> None:
    """A data format must be a plain name (it is passed to the engine apart from the statement)."""
    if not _FORMAT_NAME.match(fmt):
        raise EngineError(UNKNOWN_FORMAT, f"Unknown format {fmt}", "UNKNOWN_FORMAT")
