from __future__ import annotations

import pytest

from stream.dedup import RecentIds


def test_seen_ids_are_remembered() -> None:
    recent = RecentIds(10)
    recent.add("a")
    assert "a" in recent
    assert "b" not in recent


def test_memory_is_bounded_and_keeps_at_least_half_the_capacity() -> None:
    recent = RecentIds(10)
    for i in range(100):
        recent.add(str(i))
    assert len(recent) <= 10
    assert all(str(i) in recent for i in range(95, 100))
    assert "0" not in recent


def test_capacity_must_be_usable() -> None:
    with pytest.raises(ValueError, match="capacity"):
        RecentIds(1)
