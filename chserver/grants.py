"""What each role may run, decided per request into a Plan: the handle's read-only level, the SQL, the settings.

- analyst: every statement runs on an engine connection with ``readonly = 1`` (the engine refuses
  writes, DDL, SYSTEM, table functions and any SET/SETTINGS); the few settings it may pass (the
  allow-list below) are SET on a fresh connection *before* ``readonly = 1``. The checks here are only
  the fast first answer (and KILL, which the engine's read-only mode lets through).
- writer: ``INSERT INTO <table> [(columns)] [SETTINGS …] FORMAT <fmt>`` + data into an existing table of
  the configured databases, executed from a head rebuilt from the parsed, quoted names (the writer's
  text never reaches the engine); read-only statements as the analyst (the driver's handshake);
  everything else ACCESS_DENIED.
- admin: anything but host access (see isolation) and writes to ``system``/``audit``; GET and
  ``readonly`` requests without a session run on read-only engine connections.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from chserver.access import AUDIT_DATABASE, Role
from chserver.exceptions import EngineError
from chserver.isolation import (
    access_denied,
    check_format_name,
    check_settings_isolation,
    identifier,
    setting_violation,
)
from chserver.policy import READ_KEYWORDS, check_allowed
from chserver.protocol import CANNOT_PARSE_NUMBER, READONLY, SETTING_CONSTRAINT_VIOLATION, UNKNOWN_TABLE
from chserver.sqlscan import Token, quote_identifier, tokenize
from chserver.statements import Statement

# Settings a read-only user may pass with a request (they are SET before readonly = 1).
READER_SETTINGS = frozenset({
    "max_threads", "max_execution_time", "max_result_rows", "max_result_bytes", "result_overflow_mode",
    "date_time_output_format", "readonly", "timeout_overflow_mode", "max_block_size", "os_thread_priority",
})
# Of those, the ones a read-only user may set only within bounds (inclusive), as a profile's min/max constraint:
# the nice value of the threads running a query, which a reader may raise (yield the CPU to other work) but
# never lower below 0 (take it from other work).
READER_SETTING_BOUNDS = {"os_thread_priority": (0, 19)}
# The writer's INSERTs may also pass these (by name or prefix).
WRITER_SETTINGS = READER_SETTINGS | {"date_time_input_format", "max_partitions_per_insert_block",
                                     "deduplicate_blocks_in_dependent_materialized_views"}
WRITER_SETTING_PREFIXES = ("input_format_", "insert_", "async_insert", "wait_for_async_insert", "max_insert_",
                           "min_insert_")
PROTECTED_DATABASES = frozenset({"system", AUDIT_DATABASE})
KNOWN_KINDS = frozenset({
    "SELECT", "INSERT", "CREATE", "ALTER", "DROP", "TRUNCATE", "RENAME", "SHOW", "DESCRIBE", "EXISTS", "EXPLAIN",
    "SET", "USE", "SYSTEM", "KILL", "OPTIMIZE", "DELETE", "UPDATE", "ATTACH", "DETACH", "EXCHANGE", "GRANT",
    "REVOKE", "BACKUP", "RESTORE", "CHECK", "WATCH", "UNDROP", "MOVE", "REPLACE",
})


@dataclass(frozen=True)
class Plan:
    """How the engine runs one request."""

    readonly: int  # the engine connection's readonly level: 0, 1 or 2
    settings: dict[str, str] = field(default_factory=dict)  # SET on the connection first
    insert_head: str = ""  # the writer's INSERT, rebuilt (run on a writable pooled connection, not the session)


@dataclass(frozen=True)
class Request:
    """What grants need to know about a request besides its statement."""

    user: str
    role: Role
    method: str
    readonly: int  # what the request asks for: its readonly setting, 2 for GET/HEAD
    readonly_setting: str | None  # the raw readonly setting, if any
    settings: Mapping[str, str]  # engine settings (HTTP-layer ones removed)
    database: str  # the request's current database
    in_session: bool


def statement_kind(statement: Statement) -> str:
    """The kind recorded in the audit log: the statement's keyword from a fixed list, never its text."""
    keyword = {"WITH": "SELECT", "FROM": "SELECT", "DESC": "DESCRIBE"}.get(statement.keyword, statement.keyword)
    return keyword if keyword in KNOWN_KINDS else "OTHER"


def _readonly_refusal(name: str) -> EngineError:
    return EngineError(READONLY, f"Code: {READONLY}. DB::Exception: Cannot modify '{name}' setting in readonly mode. "
                       "(READONLY)", "READONLY")


def _check_reader_settings(request: Request) -> dict[str, str]:
    if request.readonly_setting is not None and request.readonly_setting.strip() not in {"1", "2"}:
        raise _readonly_refusal("readonly")
    for name, value in request.settings.items():
        if name not in READER_SETTINGS and not name.startswith("output_format_") and "timeout" not in name:
            raise _readonly_refusal(name)
        if name in READER_SETTING_BOUNDS:
            _check_bounds(name, value, *READER_SETTING_BOUNDS[name])
    check_settings_isolation(request.settings)
    return {name: value for name, value in request.settings.items() if name != "readonly"}


def _check_bounds(name: str, value: str, low: int, high: int) -> None:
    """ClickHouse's answer to a value outside a profile's min/max constraint (452)."""
    try:
        number = int(value.strip())
    except ValueError:
        raise EngineError(CANNOT_PARSE_NUMBER, f"Code: {CANNOT_PARSE_NUMBER}. DB::Exception: Cannot parse "
                          f"'{value}' as a number for setting {name}. (CANNOT_PARSE_NUMBER)",
                          "CANNOT_PARSE_NUMBER") from None
    if not low <= number <= high:
        bound = f"less than {low}" if number < low else f"greater than {high}"
        raise EngineError(SETTING_CONSTRAINT_VIOLATION, f"Code: {SETTING_CONSTRAINT_VIOLATION}. DB::Exception: "
                          f"Setting {name} shouldn't be {bound}. (SETTING_CONSTRAINT_VIOLATION)",
                          "SETTING_CONSTRAINT_VIOLATION")


def _writer_setting_allowed(name: str) -> bool:
    return name in WRITER_SETTINGS or name.startswith(WRITER_SETTING_PREFIXES) or name.startswith("output_format_") \
        or "timeout" in name


def plan(statement: Statement, request: Request, *, databases: tuple[str, ...],
         table_exists: Callable[[str, str], bool]) -> Plan:
    """Refuse what the role may not run; otherwise say how to run it."""
    keyword = statement.keyword
    if keyword == "KILL" and request.role is not Role.ADMIN:
        raise access_denied(request.user, "KILL QUERY ON *.*")
    if request.role is Role.ANALYST:
        check_allowed(statement, readonly=1, method=request.method)
        return Plan(readonly=1, settings=_check_reader_settings(request))
    if request.role is Role.WRITER:
        if statement.is_insert_with_data:
            return _writer_insert(statement, request, databases=databases, table_exists=table_exists)
        if keyword not in READ_KEYWORDS or keyword == "SET":
            raise access_denied(request.user, f"{keyword or 'this statement'}",
                                "the writer may only INSERT data into flowscope's tables")
        check_allowed(statement, readonly=1, method=request.method)
        return Plan(readonly=1, settings=_check_reader_settings(request))
    check_allowed(statement, readonly=request.readonly, method=request.method)
    check_settings_isolation(request.settings)
    if keyword not in READ_KEYWORDS and _touches_protected(statement, request.database):
        raise access_denied(request.user, f"{keyword} ON system.* or {AUDIT_DATABASE}.*",
                            "only the server writes the system and audit databases")
    readonly = 0 if request.in_session else request.readonly
    return Plan(readonly=readonly, settings=dict(request.settings))


def _touches_protected(statement: Statement, database: str) -> bool:
    """Whether a write names system/audit, or runs with one as the current database.

    With ``system`` current, temporary tables and INSERT (system tables refuse rows) stay allowed, so a
    session can ``USE system`` and keep its scratch tables; with ``audit`` current, no write runs.
    """
    tokens = list(tokenize(statement.sql))
    words = [t.text.upper() for t in tokens[:3] if t.kind == "word"]
    temporary = len(words) > 1 and words[1] == "TEMPORARY"
    if database == AUDIT_DATABASE or (database in PROTECTED_DATABASES and not temporary
                                      and statement.keyword != "INSERT"):
        return True
    for i, token in enumerate(tokens[1:], start=1):
        name = identifier(token)
        if name not in PROTECTED_DATABASES:
            continue
        after = tokens[i + 1].text if i + 1 < len(tokens) else ""
        if after == "." or tokens[i - 1].text.upper() in {"DATABASE", "USE"}:
            return True
    return False


def _writer_insert(statement: Statement, request: Request, *, databases: tuple[str, ...],
                   table_exists: Callable[[str, str], bool]) -> Plan:
    if request.readonly:
        check_allowed(statement, readonly=request.readonly, method=request.method)  # GET / readonly: refused
    denied = access_denied(request.user, "INSERT", "the writer may only INSERT data into flowscope's tables")
    database, table, columns, statement_settings = _parse_insert_head(statement.sql, denied)
    database = database or request.database
    if database not in databases:
        raise access_denied(request.user, f"INSERT ON {database}.{table}")
    check_format_name(statement.insert_format)
    settings = {**request.settings, **statement_settings}
    for name in settings:
        if not _writer_setting_allowed(name):
            raise setting_violation(name)
    check_settings_isolation(settings)
    if not table_exists(database, table):
        raise EngineError(UNKNOWN_TABLE, f"Code: {UNKNOWN_TABLE}. DB::Exception: Table {database}.{table} does not "
                          "exist. (UNKNOWN_TABLE)", "UNKNOWN_TABLE")
    head = f"INSERT INTO {quote_identifier(database)}.{quote_identifier(table)}"
    if columns:
        head += " (" + ", ".join(quote_identifier(c) for c in columns) + ")"
    return Plan(readonly=0, settings=settings, insert_head=head)


def _parse_insert_head(sql: str, denied: EngineError) -> tuple[str, str, list[str], dict[str, str]]:
    """``INSERT INTO [TABLE] [db.]t [(c, …)] [SETTINGS k = v, …]`` → (db, t, columns, settings); else ``denied``."""
    tokens = list(tokenize(sql))
    pos = 0

    def take() -> Token:
        nonlocal pos
        if pos >= len(tokens):
            raise denied
        pos += 1
        return tokens[pos - 1]

    def name() -> str:
        value = identifier(take())
        if not value:
            raise denied
        return value

    if take().text.upper() != "INSERT" or take().text.upper() != "INTO":
        raise denied
    first = name()
    if first.upper() == "TABLE" and tokens[pos - 1].kind == "word":
        first = name()
    database, table = "", first
    if pos < len(tokens) and tokens[pos].text == ".":
        take()
        database, table = first, name()
    columns: list[str] = []
    if pos < len(tokens) and tokens[pos].text == "(":
        take()
        while True:
            parts = [name()]
            while pos < len(tokens) and tokens[pos].text == ".":
                take()
                parts.append(name())
            columns.append(".".join(parts))
            separator = take().text
            if separator == ")":
                break
            if separator != ",":
                raise denied
    settings: dict[str, str] = {}
    if pos < len(tokens):
        if take().text.upper() != "SETTINGS":
            raise denied
        while True:
            key = take()
            if key.kind != "word" or take().text != "=":
                raise denied
            value = take()
            if value.kind == "punct":
                raise denied
            literal = value.text
            if value.kind == "quoted":
                if literal[:1] != "'":
                    raise denied
                literal = literal[1:-1].replace("\\'", "'").replace("''", "'")
            settings[key.text] = literal
            if pos >= len(tokens):
                break
            if take().text != ",":
                raise denied
    return database, table, columns, settings
