"""A bounded memory of recently seen event ids, so duplicates are dropped before they are inserted."""

from __future__ import annotations


class RecentIds:
    """Two generations of sets: O(1) checks, memory bounded by ``capacity`` ids.

    Remembers at least the last ``capacity // 2`` ids. Forgetting older ones is safe: the warehouse
    tables deduplicate too (ReplacingMergeTree keys, uniqExact aggregates); this only keeps physical
    duplicates out in the common case.
    """

    __slots__ = ("_capacity", "_current", "_previous")

    def __init__(self, capacity: int) -> None:
        if capacity < 2:
            raise ValueError("capacity must be at least 2")
        self._capacity = capacity
        self._current: set[str] = set()
        self._previous: set[str] = set()

    def __len__(self) -> int:
        return len(self._current) + len(self._previous)

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._current or event_id in self._previous

    def add(self, event_id: str) -> None:
        if len(self._current) >= self._capacity // 2:
            self._previous = self._current
            self._current = set()
        self._current.add(event_id)
