"""Limits of the contract: how deep untrusted JSON may nest, and the range of values an event field holds.

orjson parses up to 1024 levels but serialises only 254, and our tree walks recurse in Python, so a
valid but deeply nested body would crash a parser; every parser of untrusted JSON refuses one deeper
than :data:`MAX_DEPTH` with a reason instead (real webhooks, events and Flow JSON nest under 20).
"""

from __future__ import annotations

from typing import Any

MAX_DEPTH = 100

# The range of MessageStatus.error_code (Meta's error codes): 0 .. 2**32 - 1, which the warehouse
# column (a UInt32) holds. A code outside it is stored as 0 (no code): a larger one would fail every
# insert of its batch.
MAX_ERROR_CODE = 2**32 - 1


def raw_deeper_than(raw: bytes, value: Any, limit: int = MAX_DEPTH) -> bool:
    """:func:`deeper_than` for ``value`` parsed from ``raw``, skipping the walk when ``raw`` cannot nest that deep.

    Every level opens with a ``{`` or ``[``, so a body with at most ``limit`` of them (strings
    included: an overcount only costs the walk) nests at most ``limit`` levels. Counting bytes in C
    takes about a microsecond for a real webhook; the walk takes about seventeen.
    """
    if raw.count(b"{") + raw.count(b"[") <= limit:
        return False
    return deeper_than(value, limit)


def deeper_than(value: Any, limit: int = MAX_DEPTH) -> bool:
    """True when ``value`` has objects or lists nested more than ``limit`` levels; never recurses."""
    stack: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False
