"""Writes canonical events to Kafka in batches and reports when the broker acknowledged them all.

Concurrent requests share broker round trips (group commit, :mod:`ingest.batches`): each request's events join
the open batch, which is written as one record per (topic, partition) holding a JSON array of events (see
:func:`contract.events.encode_batch`) once fewer than ``Settings.producer_connections`` writes are in flight and
the batch is ``Settings.resolved_producer_linger_ms`` old; every request of the batch learns the outcome
together. Per-event work is a dict append; per-record work is amortised over all the events of all the requests
of a batch.
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
from ingest.batches import BatchCommitter, Slot
from ingest.exceptions import BrokerUnavailableError

logger = logging.getLogger(__name__)

# Largest JSON array we put in one record (tansu and Kafka default to 1 MB requests).
MAX_RECORD_BYTES = 512 * 1024


class EventProducer:
    """One aiokafka producer per receiver process, connected in the background.

    Until the broker has been reached, and whenever it fails to acknowledge in time, :meth:`send`
    raises :class:`BrokerUnavailableError` (the request gets 503; Meta retries).
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None  # the first connection; ready once it is set
        # One aiokafka producer sends one request per broker at a time, so each write in flight has its own.
        self._idle: asyncio.Queue[AIOKafkaProducer] | None = None
        self._producers: list[AIOKafkaProducer] = []
        self._partitions: dict[str, int] = {}
        self._events_topic, self._dead_letter_topic = settings.events_topic, settings.dead_letter_topic
        self._connector: asyncio.Task[None] | None = None
        self._batches = BatchCommitter(self._write, place=self._slot,
                                       linger_s=settings.resolved_producer_linger_ms / 1000,
                                       timeout_s=settings.producer_timeout_s,
                                       max_in_flight=settings.producer_connections)
        self._stopping = False

    @property
    def ready(self) -> bool:
        return self._producer is not None

    async def start(self) -> None:
        self._connector = asyncio.create_task(self._connect_forever(), name="producer-connect")

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self._settings.kafka_bootstrap,
            acks="all",
            enable_idempotence=False,  # tansu has no InitProducerId; sinks deduplicate instead
            linger_ms=0,  # batches linger already
            max_batch_size=1024 * 1024,
            max_request_size=2 * 1024 * 1024,
            request_timeout_ms=int(self._settings.producer_timeout_s * 1000),
        )

    async def _connect_forever(self) -> None:
        delay = 0.2
        topics = (self._settings.events_topic, self._settings.dead_letter_topic)
        while not self._stopping:
            producers = [self._new_producer() for _ in range(self._settings.producer_connections)]
            try:
                await ensure_topics(self._settings, timeout_s=self._settings.producer_timeout_s)
                for producer in producers:
                    await producer.start()
                partitions = {topic: len(await producers[0].partitions_for(topic) or ()) for topic in topics}
                if not all(partitions.values()):
                    raise KafkaError(f"no partition metadata for {partitions}")
            except (KafkaError, OSError) as exc:
                logger.warning("broker %s unreachable (%s); retrying", self._settings.kafka_bootstrap, exc)
                for producer in producers:
                    with contextlib.suppress(Exception):
                        await producer.stop()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self._partitions = partitions
            self._producers = producers
            self._idle = asyncio.Queue()
            for producer in producers:
                self._idle.put_nowait(producer)
            self._producer = producers[0]
            logger.info("connected to broker %s (%d connections), partitions %s", self._settings.kafka_bootstrap,
                        len(producers), partitions)
            return

    async def stop(self) -> None:
        self._stopping = True
        if self._connector is not None:
            self._connector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connector
        await self._batches.drain()
        for producer in self._producers:
            await producer.stop()
        self._producers = []
        self._producer = None

    async def send(self, events: Sequence[AnyEvent]) -> None:
        """Write every event; return only once the broker acknowledged all of them."""
        if self._producer is None:
            raise BrokerUnavailableError("not connected to the broker yet")
        if events:
            await self._batches.commit(events)

    def _slot(self, event: AnyEvent) -> Slot:
        topic = self._dead_letter_topic if type(event) is RejectedEvent else self._events_topic
        return topic, partition_for(event.key, self._partitions[topic])

    async def _write(self, slots: dict[Slot, list[AnyEvent]]) -> None:
        idle = self._idle
        if self._producer is None or idle is None:
            raise BrokerUnavailableError("producer stopped")
        producer = await idle.get()  # the committer starts no more writes than there are connections
        try:
            pending = []
            for (topic, partition), events in slots.items():
                for chunk in _chunks(events):
                    pending.append(await producer.send(topic, value=chunk, partition=partition))
            await asyncio.gather(*pending)
        finally:
            idle.put_nowait(producer)


def _chunks(events: list[AnyEvent]) -> list[bytes]:
    """``events`` as one or more encoded arrays, each under :data:`MAX_RECORD_BYTES`."""
    encoded = encode_batch(events)
    if len(encoded) <= MAX_RECORD_BYTES or len(events) == 1:
        return [encoded]
    middle = len(events) // 2
    return _chunks(events[:middle]) + _chunks(events[middle:])
