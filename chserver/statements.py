"""The statement one HTTP request asks for: the URL query and the body joined, INSERT data split off."""

from __future__ import annotations

from dataclasses import dataclass

from chserver.exceptions import EngineError
from chserver.protocol import SYNTAX_ERROR
from chserver.sqlscan import SqlShape, scan_sql


@dataclass(frozen=True)
class Statement:
    """What one HTTP request asks the engine to run."""

    keyword: str
    sql: str  # the statement (for INSERT with inline data: the part before FORMAT/VALUES)
    output_format: str  # the format the result comes in
    format_in_query: bool = False
    insert_format: str = ""  # INSERT with inline data: its format (the data is ``data``)
    data: bytes = b""
    into_outfile: bool = False
    from_infile: bool = False

    @property
    def is_insert_with_data(self) -> bool:
        return bool(self.insert_format)


_SCAN_PREFIX = 64 * 1024


def _shape(raw: bytes) -> SqlShape:
    """Scan bytes (as latin-1, so offsets are byte offsets); most inserts only need a short prefix scanned."""
    if len(raw) > _SCAN_PREFIX:
        shape = scan_sql(raw[:_SCAN_PREFIX].decode("latin-1"))
        if shape.data_start >= 0 and shape.data_start < _SCAN_PREFIX:
            return shape
    return scan_sql(raw.decode("latin-1"))


def build_statement(query_param: str, body: bytes, default_format: str) -> Statement:
    """The statement ClickHouse would run: the URL query, a newline, then the body.

    For ``INSERT … FORMAT <name>`` (or ``VALUES``) the rest after the format name is the data.
    """
    if query_param:
        head = (query_param + "\n").encode()
        shape = scan_sql(head.decode("latin-1"))
        if shape.data_start >= 0:
            tail = head[shape.data_start:]
            return _insert(shape, head, tail + body if tail else body)
        raw = head + body if body else head
    else:
        raw = body
    if not raw.strip():
        raise EngineError(SYNTAX_ERROR, "Empty query", "SYNTAX_ERROR")
    shape = _shape(raw)
    if shape.data_start >= 0:
        return _insert(shape, raw, raw[shape.data_start:])
    if shape.empty:
        raise EngineError(SYNTAX_ERROR, "Empty query", "SYNTAX_ERROR")
    if shape.multi:
        rest = raw[shape.end:].decode("utf-8", errors="replace").strip()
        raise EngineError(
            SYNTAX_ERROR,
            f"Syntax error (Multi-statements are not allowed): failed at position {shape.end + 1} (end of query): "
            f"{rest[:100]}. ",
            "SYNTAX_ERROR",
        )
    sql = raw[:shape.end].decode("utf-8", errors="replace").strip()
    if not sql:
        raise EngineError(SYNTAX_ERROR, "Empty query", "SYNTAX_ERROR")
    return Statement(
        keyword=shape.keyword, sql=sql, output_format=shape.output_format or default_format,
        format_in_query=bool(shape.output_format), into_outfile=shape.into_outfile, from_infile=shape.from_infile,
    )


def _insert(shape: SqlShape, raw: bytes, data: bytes) -> Statement:
    return Statement(
        keyword=shape.keyword, sql=raw[:shape.head_end].decode("utf-8", errors="replace").strip(),
        output_format="TabSeparated", insert_format=shape.data_format, data=data,
        into_outfile=shape.into_outfile, from_infile=shape.from_infile,
    )
