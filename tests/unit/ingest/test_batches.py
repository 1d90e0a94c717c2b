"""Group commit: each request's answer waits for the write of its own batch; a failed write fails only its batch."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

import pytest

from contract.events import AnyEvent, RejectedEvent
from ingest.batches import BatchCommitter, Slot
from ingest.exceptions import BrokerUnavailableError

DEADLINE_S = 5.0


def event(n: int) -> RejectedEvent:
    return RejectedEvent(event_id=f"e{n}", source="test", reason="r", raw="{}", received_at_ms=n)


def place(event: AnyEvent) -> Slot:
    return "events", int(event.event_id[1:]) % 2


class Broker:
    """A write function whose every call blocks until the test releases it, recording what it was given."""

    def __init__(self) -> None:
        self.writes: list[dict[Slot, list[str]]] = []
        self.releases: list[asyncio.Future[None]] = []
        self.in_flight = 0
        self.most_in_flight = 0

    async def write(self, slots: dict[Slot, list[AnyEvent]]) -> None:
        self.writes.append({slot: [e.event_id for e in events] for slot, events in slots.items()})
        release: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.releases.append(release)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await release
        finally:
            self.in_flight -= 1


def waiting(task: asyncio.Task[None]) -> bool:
    """True once ``task`` has run up to an await it is suspended at (a fresh task has not started yet)."""
    return inspect.getcoroutinestate(task.get_coro()) == inspect.CORO_SUSPENDED  # type: ignore[arg-type]


async def until(condition: Callable[[], bool]) -> None:
    """Yield to the event loop until ``condition`` holds; fail after :data:`DEADLINE_S`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0)


async def turns(count: int = 20) -> None:
    """Give every ready task ``count`` turns of the event loop (nothing here waits on time or I/O)."""
    for _ in range(count):
        await asyncio.sleep(0)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), DEADLINE_S * 2))


def test_a_request_is_answered_only_after_the_write_of_its_own_events() -> None:
    async def scenario() -> None:
        broker = Broker()
        committer = BatchCommitter(broker.write, place=place, linger_s=0, timeout_s=DEADLINE_S)
        first = asyncio.create_task(committer.commit([event(1), event(2)]))
        await until(lambda: len(broker.writes) == 1)
        assert broker.writes == [{("events", 1): ["e1"], ("events", 0): ["e2"]}]
        second = asyncio.create_task(committer.commit([event(3)]))
        await until(lambda: waiting(second))  # second has joined the next batch
        await turns()
        assert not first.done() and not second.done()
        assert len(broker.writes) == 1  # the next batch waits for the write in flight

        broker.releases[0].set_result(None)
        await first
        assert not second.done()  # its own events are not acknowledged yet
        await until(lambda: len(broker.writes) == 2)
        assert broker.writes[1] == {("events", 1): ["e3"]}
        assert not second.done()
        broker.releases[1].set_result(None)
        await second
        assert broker.most_in_flight == 1

    run(scenario)


def test_requests_arriving_during_a_write_are_written_together_in_the_next_batch() -> None:
    async def scenario() -> None:
        broker = Broker()
        committer = BatchCommitter(broker.write, place=place, linger_s=0, timeout_s=DEADLINE_S)
        first = asyncio.create_task(committer.commit([event(0)]))
        await until(lambda: len(broker.writes) == 1)
        gathered = [asyncio.create_task(committer.commit([event(n), event(n + 1)])) for n in range(10, 20, 2)]
        await until(lambda: all(waiting(task) for task in gathered))
        await turns()
        assert len(broker.writes) == 1
        broker.releases[0].set_result(None)
        await first
        await until(lambda: len(broker.writes) == 2)
        assert broker.writes[1] == {("events", 0): ["e10", "e12", "e14", "e16", "e18"],
                                    ("events", 1): ["e11", "e13", "e15", "e17", "e19"]}
        broker.releases[1].set_result(None)
        await asyncio.gather(*gathered)
        assert len(broker.writes) == 2 and broker.most_in_flight == 1

    run(scenario)


def test_a_failed_write_fails_exactly_the_requests_of_its_batch() -> None:
    async def scenario() -> None:
        broker = Broker()
        committer = BatchCommitter(broker.write, place=place, linger_s=0, timeout_s=DEADLINE_S)
        failing = [asyncio.create_task(committer.commit([event(n)])) for n in (1, 2)]
        await until(lambda: len(broker.writes) == 1)
        later = [asyncio.create_task(committer.commit([event(n)])) for n in (3, 4)]
        await until(lambda: all(waiting(task) for task in later))
        broker.releases[0].set_exception(OSError("connection reset"))
        for task in failing:
            with pytest.raises(BrokerUnavailableError, match="connection reset"):
                await task
        await until(lambda: len(broker.writes) == 2)
        assert broker.writes[1] == {("events", 1): ["e3"], ("events", 0): ["e4"]}
        assert not any(task.done() for task in later)
        broker.releases[1].set_result(None)
        await asyncio.gather(*later)

    run(scenario)


def test_a_batch_not_acknowledged_in_time_fails_with_broker_unavailable() -> None:
    async def scenario() -> None:
        broker = Broker()
        committer = BatchCommitter(broker.write, place=place, linger_s=0, timeout_s=0.05)
        with pytest.raises(BrokerUnavailableError, match="in time"):
            await committer.commit([event(1)])
        assert len(broker.writes) == 1 and broker.in_flight == 0  # the write was abandoned

    run(scenario)


def test_a_cancelled_request_leaves_the_others_of_its_batch_answered() -> None:
    async def scenario() -> None:
        broker = Broker()
        committer = BatchCommitter(broker.write, place=place, linger_s=0, timeout_s=DEADLINE_S)
        gone, staying = (asyncio.create_task(committer.commit([event(n)])) for n in (1, 2))
        await until(lambda: len(broker.writes) == 1)
        gone.cancel()
        broker.releases[0].set_result(None)
        await staying
        assert gone.cancelled()
        assert broker.writes == [{("events", 1): ["e1"], ("events", 0): ["e2"]}]  # its events were written

    run(scenario)


def test_a_linger_holds_a_batch_until_it_is_that_old() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        written_at: list[float] = []

        async def write(slots: dict[Slot, list[AnyEvent]]) -> None:
            written_at.append(loop.time())

        committer = BatchCommitter(write, place=place, linger_s=0.05, timeout_s=DEADLINE_S)
        opened = loop.time()
        await asyncio.gather(*(committer.commit([event(n)]) for n in range(5)))
        assert len(written_at) == 1  # one batch for all five
        assert written_at[0] - opened >= 0.05

    run(scenario)


def test_drain_returns_once_every_open_batch_is_written() -> None:
    async def scenario() -> None:
        written: list[list[str]] = []

        async def write(slots: dict[Slot, list[AnyEvent]]) -> None:
            written.append(sorted(e.event_id for events in slots.values() for e in events))

        committer = BatchCommitter(write, place=place, linger_s=0.01, timeout_s=DEADLINE_S)
        requests = [asyncio.create_task(committer.commit([event(n)])) for n in range(3)]
        await until(lambda: all(waiting(task) for task in requests))
        await committer.drain()
        assert written == [["e0", "e1", "e2"]]
        await asyncio.gather(*requests)

    run(scenario)


def test_writes_overlap_up_to_max_in_flight() -> None:
    async def scenario() -> tuple[int, int]:
        running = most = 0
        release = asyncio.Event()

        async def write(slots: dict[Slot, list[AnyEvent]]) -> None:
            nonlocal running, most
            running += 1
            most = max(most, running)
            await release.wait()
            running -= 1

        committer = BatchCommitter(write, place=place, linger_s=0, timeout_s=DEADLINE_S, max_in_flight=3)
        commits = []
        loop = asyncio.get_running_loop()
        for n in range(6):  # a batch each: the next commit comes once this one's write started (or had to wait)
            commits.append(asyncio.ensure_future(committer.commit([event(n)])))
            deadline = loop.time() + DEADLINE_S
            while running < min(n + 1, 3) and loop.time() < deadline:
                await asyncio.sleep(0)
        started = most
        release.set()
        await asyncio.gather(*commits)
        await committer.drain()
        return started, most

    started, most = asyncio.run(scenario())
    assert (started, most) == (3, 3)  # three writes awaited their acknowledgement at once, never more
