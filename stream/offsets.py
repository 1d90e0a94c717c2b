"""Hand the worker only records that follow, without a hole, the ones it already has, per partition.

Measured against tansu: with several producers writing to one partition (several receiver processes),
a later offset can become visible before an earlier one. A consumer reading the tail then steps over
the earlier record for good — an acknowledged event lost. So on a hole the guard keeps the contiguous
part of the fetch and asks for a re-read from the hole; the record shows up milliseconds later. A
hole still there after ``patience_s`` is accepted, logged and counted: on Apache Kafka without
transactions or compaction offsets have no holes, so it never waits there.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from aiokafka import TopicPartition

from stream import metrics

logger = logging.getLogger(__name__)


class Record(Protocol):
    @property
    def offset(self) -> int: ...


class OffsetGuard:
    """Per partition: the next offset expected, and since when a hole has been waited for."""

    def __init__(self, *, patience_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.patience_s = patience_s
        self.clock = clock
        self.expected: dict[TopicPartition, int] = {}
        self.holes: dict[TopicPartition, tuple[int, float]] = {}  # hole offset, first seen

    def forget(self, partitions: Sequence[TopicPartition] | set[TopicPartition]) -> None:
        """Partitions revoked or (re)assigned: their next offset comes from the committed one again."""
        for tp in partitions:
            self.expected.pop(tp, None)
            self.holes.pop(tp, None)

    def start_at(self, tp: TopicPartition, offset: int) -> None:
        self.expected.setdefault(tp, offset)

    def knows(self, tp: TopicPartition) -> bool:
        return tp in self.expected

    def accept(self, tp: TopicPartition, records: Sequence[Record]) -> tuple[int, int | None]:
        """How many of ``records`` (in offset order) to take, and the offset to re-read from (or None)."""
        expected = self.expected.get(tp)
        taken = 0
        for record in records:
            offset = record.offset
            if expected is None or offset <= expected:
                # First sight, or a rewind (offset reset, rebalance): read on from here.
                expected = offset + 1
                taken += 1
                continue
            hole = self.holes.get(tp)
            now = self.clock()
            if hole is None or hole[0] != expected:
                hole = self.holes[tp] = (expected, now)
            if now - hole[1] < self.patience_s:
                metrics.OFFSET_HOLES.labels("reread").inc()
                self.expected[tp] = expected
                return taken, expected
            logger.warning("offsets %d..%d of %s[%d] never appeared in %.0f s; reading on",
                           expected, offset - 1, tp.topic, tp.partition, self.patience_s)
            metrics.OFFSET_HOLES.labels("skipped").inc()
            del self.holes[tp]
            expected = offset + 1
            taken += 1
        if expected is not None:
            self.expected[tp] = expected
        self.holes.pop(tp, None)
        return taken, None
