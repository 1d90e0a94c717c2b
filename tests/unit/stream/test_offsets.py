"""The offset guard: contiguous records pass, a hole is re-read, a hole that never fills is stepped over, and a new
group's partitions start at offset 0."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from aiokafka import AIOKafkaConsumer, TopicPartition

from flowtools.harness import isolated_settings
from stream.consumer import BatchConsumer
from stream.offsets import OffsetGuard
from stream.sink import Sink

TP = TopicPartition("flowscope.events", 0)


@dataclass
class Rec:
    offset: int


def recs(*offsets: int) -> list[Rec]:
    return [Rec(o) for o in offsets]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_contiguous_records_pass_from_the_committed_offset() -> None:
    guard = OffsetGuard()
    guard.start_at(TP, 10)
    assert guard.accept(TP, recs(10, 11, 12)) == (3, None)
    assert guard.accept(TP, recs(13)) == (1, None)
    assert guard.expected[TP] == 14


def test_a_hole_is_re_read_until_it_fills() -> None:
    clock = Clock()
    guard = OffsetGuard(patience_s=5, clock=clock)
    guard.start_at(TP, 0)
    assert guard.accept(TP, recs(0, 1, 3, 4)) == (2, 2)  # take 0 and 1, read again from 2
    clock.now += 1
    assert guard.accept(TP, recs(3, 4)) == (0, 2)  # still missing: read again
    assert guard.accept(TP, recs(2, 3, 4)) == (3, None)
    assert guard.expected[TP] == 5 and guard.holes == {}


def test_a_hole_at_the_committed_offset_is_caught_too() -> None:
    guard = OffsetGuard()
    guard.start_at(TP, 7)
    assert guard.accept(TP, recs(8, 9)) == (0, 7)


def test_a_hole_that_never_fills_is_stepped_over_after_the_patience() -> None:
    clock = Clock()
    guard = OffsetGuard(patience_s=5, clock=clock)
    guard.start_at(TP, 0)
    assert guard.accept(TP, recs(0, 2)) == (1, 1)
    clock.now += 5.1
    assert guard.accept(TP, recs(2, 3)) == (2, None)
    assert guard.expected[TP] == 4


def test_a_rewind_after_a_reset_or_rebalance_is_read_again() -> None:
    guard = OffsetGuard()
    guard.start_at(TP, 50)
    assert guard.accept(TP, recs(50, 51)) == (2, None)
    assert guard.accept(TP, recs(40, 41)) == (2, None)  # replays are deduplicated downstream
    assert guard.expected[TP] == 42
    guard.forget({TP})
    assert not guard.knows(TP)
    assert guard.accept(TP, recs(70)) == (1, None)  # unknown start: trust the first record


class NeverCommitted:
    """The consumer's committed() for a group that never committed (a new group): the one function faked."""

    async def committed(self, tp: TopicPartition) -> int | None:
        return None


def test_a_new_group_starts_each_partition_at_offset_zero_whatever_the_broker_calls_earliest(
        tmp_path: Path) -> None:
    # tansu can answer "earliest" with 1 while offset 0 is stored (its least recently written record object):
    # the first fetch then starts at 1, and the worker must read 0 again instead of trusting it.
    worker = BatchConsumer(settings=isolated_settings(tmp_path), sink=cast(Sink, None))
    asyncio.run(worker._start_guard(cast(AIOKafkaConsumer, NeverCommitted()), TP))
    assert worker.guard.accept(TP, recs(1, 2, 3)) == (0, 0)
    assert worker.guard.accept(TP, recs(0, 1, 2, 3)) == (4, None)
