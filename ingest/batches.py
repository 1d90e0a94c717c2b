"""Group commit: the events of concurrent requests written to the broker together, a few batches at a time.

Each request adds its events to the open batch and awaits that batch's outcome. A batch is written once it is
``linger_s`` old *and* fewer than ``max_in_flight`` writes await their acknowledgement (with one, once the previous
write has finished); whatever arrives meanwhile gathers in the next batch. More than one write in flight keeps
a broker whose acknowledgements take a few milliseconds busy instead of idle between round trips. With no linger
this is group commit: an idle receiver writes a request's events at once, a busy one writes everything that
arrived during the writes in flight, so batches grow with the load instead of every request waiting a fixed time.
A long linger makes few, large batches (a durable broker stores each write as one object).

Every request waits at most ``timeout_s`` from the moment its batch opened; then it learns that the broker did not
acknowledge in time. A failed write fails exactly the requests of its batch; the next batch is written regardless.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from contract.events import AnyEvent
from ingest.exceptions import BrokerUnavailableError

Slot = tuple[str, int]  # (topic, partition): one Kafka record per slot and batch
Place = Callable[[AnyEvent], Slot]
Write = Callable[[dict[Slot, list[AnyEvent]]], Awaitable[None]]


class Batch:
    """Events gathered for one write, by slot, and the future every contributing request awaits."""

    __slots__ = ("opened", "slots", "waiters")

    def __init__(self, opened: float) -> None:
        self.opened = opened  # event-loop time
        self.slots: dict[Slot, list[AnyEvent]] = {}
        self.waiters: list[asyncio.Future[None]] = []

    def resolve(self, error: BaseException | None) -> None:
        for waiter in self.waiters:
            if waiter.done():
                continue  # its request was cancelled (client went away)
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)


class BatchCommitter:
    """Gathers events into batches and writes them with ``write``, one write in flight at a time."""

    def __init__(self, write: Write, *, place: Place, linger_s: float, timeout_s: float,
                 max_in_flight: int = 1) -> None:
        """``max_in_flight``: writes that may await their acknowledgement at once (``write`` must allow it)."""
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        self._write = write
        self._place = place
        self._linger_s = linger_s
        self._timeout_s = timeout_s
        self._max_in_flight = max_in_flight
        self._in_flight: set[asyncio.Task[None]] = set()
        self._lane_free: asyncio.Event | None = None
        self._open: Batch | None = None
        self._writer: asyncio.Task[None] | None = None
        # The event loop of the first commit. Looked up once: asyncio.get_running_loop() costs a getpid()
        # system call, which was the costliest single line of a request in the receiver's profile.
        self._loop: asyncio.AbstractEventLoop | None = None

    async def commit(self, events: Sequence[AnyEvent]) -> None:
        """Add ``events`` to the open batch; return once the broker acknowledged that batch.

        Raises :class:`BrokerUnavailableError` when the batch's write failed or did not finish in time.
        """
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        batch = self._open
        if batch is None:
            batch = self._open = Batch(loop.time())
            if self._writer is None:
                self._writer = loop.create_task(self._write_batches(), name="producer-batches")
        slots = batch.slots
        place = self._place
        for event in events:
            slot = place(event)
            gathered = slots.get(slot)
            if gathered is None:
                slots[slot] = [event]
            else:
                gathered.append(event)
        # A plain future per request: cheap, and cancelling one request touches no other.
        waiter: asyncio.Future[None] = loop.create_future()
        batch.waiters.append(waiter)
        await waiter

    async def drain(self) -> None:
        """Return once every batch opened so far has been written (or has failed)."""
        while self._writer is not None or self._in_flight:
            if self._writer is not None:
                await asyncio.shield(self._writer)
            if self._in_flight:
                await asyncio.wait(set(self._in_flight))

    async def _write_batches(self) -> None:
        """The one writer: takes the open batch once it is old enough and a write may start (fewer than
        ``max_in_flight`` awaiting acknowledgement), starts its write, repeats while batches open."""
        loop = asyncio.get_running_loop()  # once per burst of batches
        if self._lane_free is None:
            self._lane_free = asyncio.Event()
        try:
            while (batch := self._open) is not None:
                wait = batch.opened + self._linger_s - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                while len(self._in_flight) >= self._max_in_flight:
                    self._lane_free.clear()
                    await self._lane_free.wait()
                self._open = None
                task = loop.create_task(self._write_batch(batch, loop), name="producer-write")
                self._in_flight.add(task)
                task.add_done_callback(self._written)
        except BaseException:  # cancelled: never leave a request waiting forever
            if self._open is not None:
                self._open.resolve(BrokerUnavailableError("producer stopped"))
                self._open = None
            raise
        finally:
            self._writer = None

    def _written(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if self._lane_free is not None:
            self._lane_free.set()

    async def _write_batch(self, batch: Batch, loop: asyncio.AbstractEventLoop) -> None:
        remaining = batch.opened + self._timeout_s - loop.time()
        try:
            if remaining <= 0:
                raise TimeoutError
            await asyncio.wait_for(self._write(batch.slots), timeout=remaining)
        except TimeoutError:
            batch.resolve(BrokerUnavailableError("broker did not acknowledge in time"))
        except BrokerUnavailableError as exc:
            batch.resolve(exc)
        except Exception as exc:  # noqa: BLE001 - any failure of the write fails its batch, and only its batch
            batch.resolve(BrokerUnavailableError(f"broker did not acknowledge: {exc!r}"))
        except BaseException as exc:
            batch.resolve(BrokerUnavailableError(f"write interrupted: {exc!r}"))
            raise
        else:
            batch.resolve(None)
