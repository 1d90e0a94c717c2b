"""Statement policy: which statements a request may run (read-only requests, server-side files, formats)."""

from __future__ import annotations

from chserver.exceptions import EngineError
from chserver.protocol import INTO_OUTFILE_NOT_ALLOWED, READONLY, UNKNOWN_FORMAT, UNKNOWN_TYPE_OF_QUERY
from chserver.statements import Statement

# Statements allowed when the request is read-only (a GET, or readonly=1|2).
READ_KEYWORDS = frozenset({"SELECT", "WITH", "SHOW", "DESC", "DESCRIBE", "EXISTS", "EXPLAIN", "SET", "USE", "FROM"})

# Formats chDB's Python layer turns into Python objects: never an HTTP format.
_PYTHON_ONLY_FORMATS = frozenset({"dataframe", "arrowtable", "datastore", "debug"})


def readonly_level(*, method: str, setting: str = "0") -> int:
    """The request's ``readonly`` level: the setting's, and 2 for a GET or HEAD that sets none (as ClickHouse does)."""
    readonly = int(setting) if setting.isdigit() else 0
    if method in {"GET", "HEAD"} and readonly == 0:
        readonly = 2
    return readonly


def check_allowed(statement: Statement, *, readonly: int, method: str) -> None:
    """Refuse what ClickHouse's HTTP interface refuses: writes in read-only requests, server-side files."""
    if readonly and statement.keyword not in READ_KEYWORDS:
        message = "Cannot execute query in readonly mode"
        if method in {"GET", "HEAD"}:
            message += (". For queries over HTTP, method GET implies readonly. "
                        "You should use method POST for modifying queries")
        raise EngineError(READONLY, message, "READONLY")
    if readonly == 1 and statement.keyword == "SET":
        raise EngineError(READONLY, "Cannot modify settings in readonly mode", "READONLY")
    if statement.into_outfile:
        raise EngineError(INTO_OUTFILE_NOT_ALLOWED, "INTO OUTFILE is not allowed", "INTO_OUTFILE_NOT_ALLOWED")
    if statement.from_infile:
        raise EngineError(UNKNOWN_TYPE_OF_QUERY, "Query has infile and was send directly to server",
                          "UNKNOWN_TYPE_OF_QUERY")



def check_output_format(statement: Statement) -> None:
    """Refuse the formats chDB turns into Python objects: they have no bytes to send."""
    if statement.output_format.lower() in _PYTHON_ONLY_FORMATS:
        raise EngineError(UNKNOWN_FORMAT, f"Unknown format {statement.output_format}", "UNKNOWN_FORMAT")
