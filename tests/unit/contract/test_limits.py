"""The nesting limit on untrusted JSON, with and without the byte-count shortcut."""

from __future__ import annotations

import orjson
import pytest

from contract.limits import MAX_DEPTH, deeper_than, raw_deeper_than


def nested(levels: int) -> bytes:
    return b"[" * (levels - 1) + b"{}" + b"]" * (levels - 1)


@pytest.mark.parametrize(("levels", "deeper"), [(1, False), (MAX_DEPTH, False), (MAX_DEPTH + 1, True),
                                                (1000, True)])  # orjson itself stops at 1024
def test_the_limit_is_exact_for_both(levels: int, deeper: bool) -> None:
    raw = nested(levels)
    value = orjson.loads(raw)
    assert deeper_than(value) is deeper
    assert raw_deeper_than(raw, value) is deeper


def test_brackets_inside_strings_only_cost_the_walk() -> None:
    raw = orjson.dumps({"text": "{[" * 500, "list": [[1]]})
    assert raw_deeper_than(raw, orjson.loads(raw)) is False
    raw = orjson.dumps({"text": "{[" * 500, "deep": orjson.loads(nested(MAX_DEPTH + 1))})
    assert raw_deeper_than(raw, orjson.loads(raw)) is True


def test_wide_but_shallow_bodies_pass() -> None:
    raw = orjson.dumps({"entry": [{"changes": [{"value": {"statuses": [{"id": str(i)} for i in range(400)]}}]}]})
    assert raw_deeper_than(raw, orjson.loads(raw)) is False
