"""A scanner for ClickHouse SQL text: tokens, the first statement's shape, SET and USE, quoting."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Token:
    """One SQL token and where it is in the text."""

    kind: str  # "word", "quoted" (string, quoted identifier, heredoc) or "punct"
    start: int
    end: int
    text: str


_SPACE = frozenset(" \t\n\r\f\v")
_HEREDOC = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
_OPEN = frozenset("([{")
_CLOSE = frozenset(")]}")


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_" or ch == "$" or ord(ch) >= 0x80


def tokenize(text: str, pos: int = 0) -> Iterator[Token]:
    """ClickHouse SQL tokens, skipping whitespace and comments; strings and quoted names are one token."""
    n = len(text)
    while pos < n:
        ch = text[pos]
        if ch in _SPACE:
            pos += 1
        elif (ch == "-" and text.startswith("--", pos)) or (ch == "#" and pos + 1 < n and text[pos + 1] in " !"):
            newline = text.find("\n", pos)
            pos = n if newline < 0 else newline + 1
        elif ch == "/" and text.startswith("/*", pos):
            depth, i = 1, pos + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            pos = i
        elif ch in "'\"`":
            i = pos + 1
            while i < n:
                c = text[i]
                if c == "\\":
                    i += 2
                    continue
                if c == ch:
                    if i + 1 < n and text[i + 1] == ch:
                        i += 2
                        continue
                    break
                i += 1
            end = min(i + 1, n)
            yield Token("quoted", pos, end, text[pos:end])
            pos = end
        elif ch == "$" and (heredoc := _HEREDOC.match(text, pos)):
            close = text.find(heredoc.group(0), heredoc.end())
            end = n if close < 0 else close + len(heredoc.group(0))
            yield Token("quoted", pos, end, text[pos:end])
            pos = end
        elif _is_word_char(ch):
            i = pos + 1
            while i < n and _is_word_char(text[i]):
                i += 1
            yield Token("word", pos, i, text[pos:i])
            pos = i
        else:
            yield Token("punct", pos, pos + 1, ch)
            pos += 1


@dataclass(frozen=True)
class SqlShape:
    """What the server needs to know about the first statement of a request, without parsing it."""

    keyword: str = ""  # first keyword, upper-case ("" for no statement)
    end: int = 0  # where the first statement ends (its ';' or the end of the text)
    multi: bool = False  # another statement follows
    output_format: str = ""  # a trailing FORMAT clause of a query
    data_format: str = ""  # INSERT … FORMAT <name> | VALUES: the format of the inline data
    head_end: int = -1  # INSERT with inline data: where the statement before FORMAT/VALUES ends
    data_start: int = -1  # INSERT with inline data: where the data begins
    into_outfile: bool = False
    from_infile: bool = False
    empty: bool = False  # nothing but blanks and comments before the end of the statement


def _data_start(text: str, pos: int) -> int:
    """Inline data starts after the first newline following FORMAT <name>, or after the blanks otherwise."""
    n = len(text)
    while pos < n and text[pos] in " \t\f":
        pos += 1
    if pos < n and text[pos] == "\r":
        pos += 1
    if pos < n and text[pos] == "\n":
        pos += 1
    return pos


def scan_sql(text: str) -> SqlShape:
    """Find the first statement's keyword, end, FORMAT clause and (for INSERT) where inline data starts.

    Inline data is never tokenized: the scan stops at ``FORMAT <name>`` / ``VALUES`` of an INSERT.
    """
    tokens = tokenize(text)
    keyword = ""
    depth = 0
    previous = ""  # previous top-level word, upper-case
    saw_select = False
    into_outfile = from_infile = False
    pending_format: str | None = None  # FORMAT <name> seen; confirmed if the statement ends or SETTINGS follows
    output_format = ""
    end = len(text)
    multi = False
    empty = True
    for token in tokens:
        if not (token.kind == "punct" and token.text == ";"):
            empty = False
        if pending_format is not None:
            ends = token.kind == "punct" and token.text == ";"
            if ends or (token.kind == "word" and token.text.upper() == "SETTINGS"):
                output_format = pending_format
            pending_format = None
        if token.kind == "punct":
            if token.text == ";":
                end = token.start
                multi = any(not (t.kind == "punct" and t.text == ";") for t in tokenize(text, token.end))
                break
            if token.text in _OPEN:
                depth += 1
            elif token.text in _CLOSE:
                depth = max(depth - 1, 0)
            continue
        if token.kind != "word":
            continue
        upper = token.text.upper()
        if not keyword:
            keyword = upper
        if depth:
            continue
        if upper == "OUTFILE" and previous == "INTO":
            into_outfile = True
        if upper == "INFILE" and previous == "FROM":
            from_infile = True
        if keyword == "INSERT":
            if upper in {"SELECT", "WITH"}:
                saw_select = True
            elif not saw_select and upper == "VALUES":
                return SqlShape(keyword, len(text), False, "", "Values", token.start, token.end,
                                into_outfile, from_infile)
            elif not saw_select and upper == "FORMAT":
                name = next(tokens, None)
                if name is not None and name.kind == "word":
                    return SqlShape(keyword, len(text), False, "", name.text, token.start,
                                    _data_start(text, name.end), into_outfile, from_infile)
        elif upper == "FORMAT":
            name = next(tokens, None)
            if name is not None and name.kind == "word":
                pending_format = name.text
                previous = name.text.upper()
                continue
        previous = upper
    if pending_format is not None:
        output_format = pending_format
    return SqlShape(keyword, end, multi, output_format, into_outfile=into_outfile, from_infile=from_infile,
                    empty=empty)


def set_assignments(sql: str) -> list[tuple[str, str]]:
    """``SET a = 1, b = 'x'`` → [("a", "1"), ("b", "'x'")]; [] for anything else (SET ROLE, …)."""
    tokens = list(tokenize(sql))
    if not tokens or tokens[0].text.upper() != "SET":
        return []
    pairs: list[tuple[str, str]] = []
    i = 1
    while i < len(tokens):
        if i + 2 >= len(tokens) or tokens[i].kind != "word" or tokens[i + 1].text != "=":
            return []
        depth, j = 0, i + 2
        while j < len(tokens):
            token = tokens[j]
            if token.kind == "punct":
                if token.text in _OPEN:
                    depth += 1
                elif token.text in _CLOSE:
                    depth -= 1
                elif token.text in ",;" and depth == 0:
                    break
            j += 1
        if j == i + 2:
            return []
        pairs.append((tokens[i].text, sql[tokens[i + 2].start:tokens[j - 1].end].strip()))
        if j >= len(tokens) or tokens[j].text == ";":
            break
        i = j + 1
    return pairs


def use_target(sql: str) -> str | None:
    """The database a ``USE db`` statement switches to."""
    tokens = list(tokenize(sql))
    if len(tokens) < 2 or tokens[0].text.upper() != "USE":
        return None
    return unquote_identifier(tokens[1].text)


def unquote_identifier(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "`\"":
        body = text[1:-1]
        return re.sub(r"\\(.)", r"\1", body).replace(text[0] * 2, text[0])
    return text


def quote_identifier(name: str) -> str:
    """A back-quoted ClickHouse identifier."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def setting_literal(value: str) -> str:
    """A setting value as an SQL literal for SET; ClickHouse converts quoted values to the setting's type."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
