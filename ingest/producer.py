"""Writes canonical events to Kafka in batches and reports when the broker acknowledged them all.

Concurrent requests share broker round trips: each request's events join the current *window*;
``linger_ms`` after the window opened it is flushed as one record per (topic, partition) holding a
JSON array of events (see :func:`contract.events.encode_batch`), and every request of the window
learns the outcome together. Per-event work is a dict append; per-record work is amortised over all
the events of all the requests of a window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from config.settings import Settings
from config.topics import ensure_topics
from contract.codec import encode_batch, partition_for
from contract.events import AnyEvent, RejectedEvent
from ingest.exceptions import BrokerUnavailableError

logger = logging.getLogger(__name__)

# Largest JSON array we put in one record (tansu and Kafka default to 1 MB requests).
MAX_RECORD_BYTES = 512 * 1024


class _Window:
    """Events gathered for one flush, and the future every contributing request awaits."""

    __slots__ = ("buffers", "waiters")

    def __init__(self) -> None:
        self.buffers: dict[tuple[str, int], list[AnyEvent]] = {}
        self.waiters: list[asyncio.Future[None]] = []

    def resolve(self, error: BaseException | None) -> None:
        for waiter in self.waiters:
            if waiter.done():
                continue  # its request was cancelled (client went away)
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)


class EventProducer:
    """One aiokafka producer per receiver process, connected in the background.

    Until the broker has been reached, and whenever it fails to acknowledge in time, :meth:`send`
    raises :class:`BrokerUnavailableError` (the request gets 503; Meta retries).
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._partitions: dict[str, int] = {}
        self._connector: asyncio.Task[None] | None = None
        self._window: _Window | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        self._stopping = False

    @property
    def ready(self) -> bool:
        return self._producer is not None

    async def start(self) -> None:
        self._connector = asyncio.create_task(self._connect_forever(), name="producer-connect")

    async def _connect_forever(self) -> None:
        delay = 0.2
        topics = (self._settings.events_topic, self._settings.dead_letter_topic)
        while not self._stopping:
            producer = AIOKafkaProducer(
                bootstrap_servers=self._settings.kafka_bootstrap,
                acks="all",
                enable_idempotence=False,  # tansu has no InitProducerId; sinks deduplicate instead
                linger_ms=0,  # windows linger already
                max_batch_size=1024 * 1024,
                max_request_size=2 * 1024 * 1024,
                request_timeout_ms=int(self._settings.producer_timeout_s * 1000),
            )
            try:
                await ensure_topics(self._settings, timeout_s=self._settings.producer_timeout_s)
                await producer.start()
                partitions = {topic: len(await producer.partitions_for(topic) or ()) for topic in topics}
                if not all(partitions.values()):
                    raise KafkaError(f"no partition metadata for {partitions}")
            except (KafkaError, OSError) as exc:
                logger.warning("broker %s unreachable (%s); retrying", self._settings.kafka_bootstrap, exc)
                with contextlib.suppress(Exception):
                    await producer.stop()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self._partitions = partitions
            self._producer = producer
            logger.info("connected to broker %s, partitions %s", self._settings.kafka_bootstrap, partitions)
            return

    async def stop(self) -> None:
        self._stopping = True
        if self._connector is not None:
            self._connector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connector
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def send(self, events: Sequence[AnyEvent]) -> None:
        """Write every event; return only once the broker acknowledged all of them."""
        if self._producer is None:
            raise BrokerUnavailableError("not connected to the broker yet")
        if not events:
            return
        window = self._window
        if window is None:
            window = self._window = _Window()
            flush = asyncio.get_running_loop().create_task(self._flush_later(window))
            self._flushes.add(flush)
            flush.add_done_callback(self._flushes.discard)
        events_topic, dead_letter_topic = self._settings.events_topic, self._settings.dead_letter_topic
        partitions = self._partitions
        buffers = window.buffers
        for event in events:
            topic = dead_letter_topic if type(event) is RejectedEvent else events_topic
            slot = (topic, partition_for(event.key, partitions[topic]))
            buffer = buffers.get(slot)
            if buffer is None:
                buffers[slot] = [event]
            else:
                buffer.append(event)
        # A plain future per request: cheap, and cancelling one request touches no other.
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        window.waiters.append(waiter)
        await waiter

    async def _flush_later(self, window: _Window) -> None:
        """After the linger, write the window; its timeout bounds every waiting request."""
        await asyncio.sleep(self._settings.producer_linger_ms / 1000)
        if self._window is window:
            self._window = None
        try:
            await asyncio.wait_for(self._write(window), timeout=self._settings.producer_timeout_s)
        except TimeoutError:
            window.resolve(BrokerUnavailableError("broker did not acknowledge in time"))
        except (KafkaError, BrokerUnavailableError) as exc:
            window.resolve(BrokerUnavailableError(f"broker did not acknowledge: {exc!r}"))
        except BaseException as exc:  # never leave a request waiting forever
            window.resolve(BrokerUnavailableError(f"write failed: {exc!r}"))
            raise
        else:
            window.resolve(None)

    async def _write(self, window: _Window) -> None:
        producer = self._producer
        if producer is None:
            raise BrokerUnavailableError("producer stopped")
        pending = []
        for (topic, partition), events in window.buffers.items():
            for chunk in _chunks(events):
                pending.append(await producer.send(topic, value=chunk, partition=partition))
        await asyncio.gather(*pending)


def _chunks(events: list[AnyEvent]) -> list[bytes]:
    """``events`` as one or more encoded arrays, each under :data:`MAX_RECORD_BYTES`."""
    encoded = encode_batch(events)
    if len(encoded) <= MAX_RECORD_BYTES or len(events) == 1:
        return [encoded]
    middle = len(events) // 2
    return _chunks(events[:middle]) + _chunks(events[middle:])
