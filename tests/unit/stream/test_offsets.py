"""The offset guard: contiguous records pass, a hole is re-read, a hole that never fills is stepped over."""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import TopicPartition

from stream.offsets import OffsetGuard

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
