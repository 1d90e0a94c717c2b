"""How deep untrusted JSON may nest.

orjson parses up to 1024 levels but serialises only 254, and our tree walks recurse in Python, so a
valid but deeply nested body would crash a parser; every parser of untrusted JSON refuses one deeper
than :data:`MAX_DEPTH` with a reason instead (real webhooks, events and Flow JSON nest under 20).
"""

from __future__ import annotations

from typing import Any

MAX_DEPTH = 100


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
