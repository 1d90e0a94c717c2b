"""Writes canonical events to Kafka in batches and reports when the broker acknowledged them all."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from flowscope.contract import AnyEvent, RejectedEvent, encode
from flowscope.settings import Settings
from flowscope.topics import ensure_topics
from ingest.exceptions import BrokerUnavailableError

logger = logging.getLogger(__name__)


class EventProducer:
    """One aiokafka producer per receiver process, connected in the background.

    Sends never wait on each other: every request appends its events to the producer's batches
    (linger) and then awaits all their acknowledgements at once, so concurrent requests share
    broker round trips. Until the broker has been reached, and whenever it fails to acknowledge in
    time, :meth:`send` raises :class:`BrokerUnavailableError` (the request gets 503; Meta retries).
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._connector: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def ready(self) -> bool:
        return self._producer is not None

    async def start(self) -> None:
        self._connector = asyncio.create_task(self._connect_forever(), name="producer-connect")

    async def _connect_forever(self) -> None:
        delay = 0.2
        while not self._stopping:
            producer = AIOKafkaProducer(
                bootstrap_servers=self._settings.kafka_bootstrap,
                acks="all",
                enable_idempotence=False,  # tansu has no InitProducerId; sinks deduplicate instead
                linger_ms=self._settings.producer_linger_ms,
                max_batch_size=256 * 1024,
                request_timeout_ms=int(self._settings.producer_timeout_s * 1000),
            )
            try:
                await ensure_topics(self._settings, timeout_s=self._settings.producer_timeout_s)
                await producer.start()
            except (KafkaError, OSError) as exc:
                logger.warning("broker %s unreachable (%s); retrying", self._settings.kafka_bootstrap, exc)
                with contextlib.suppress(Exception):
                    await producer.stop()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self._producer = producer
            logger.info("connected to broker %s", self._settings.kafka_bootstrap)
            return

    async def stop(self) -> None:
        self._stopping = True
        if self._connector is not None:
            self._connector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connector
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def send(self, events: Sequence[AnyEvent]) -> None:
        """Write every event; return only once the broker acknowledged all of them."""
        producer = self._producer
        if producer is None:
            raise BrokerUnavailableError("not connected to the broker yet")
        if not events:
            return
        events_topic = self._settings.events_topic
        dead_letter_topic = self._settings.dead_letter_topic
        async def write_all() -> None:
            pending = [
                await producer.send(
                    dead_letter_topic if isinstance(event, RejectedEvent) else events_topic,
                    value=encode(event),
                    key=event.key,
                )
                for event in events
            ]
            await asyncio.gather(*pending)

        try:
            await asyncio.wait_for(write_all(), timeout=self._settings.producer_timeout_s)
        except (KafkaError, TimeoutError) as exc:
            raise BrokerUnavailableError(f"broker did not acknowledge: {exc!r}") from exc
