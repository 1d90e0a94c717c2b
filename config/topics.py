"""Kafka topics of the pipeline, created by the application at start, idempotently."""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from config.settings import Settings

logger = logging.getLogger(__name__)


def topic_names(settings: Settings) -> list[str]:
    return [settings.events_topic, settings.dead_letter_topic]


async def ensure_topics(settings: Settings, *, timeout_s: float = 60.0) -> None:
    """Create every topic the pipeline uses, if missing; retries until the broker answers or timeout."""
    deadline = time.monotonic() + timeout_s
    delay = 0.2
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=10_000)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [name for name in topic_names(settings) if name not in existing]
            if missing:
                new = [
                    NewTopic(name, settings.partitions, settings.replication_factor) for name in missing
                ]
                try:
                    await admin.create_topics(new)
                except TopicAlreadyExistsError:
                    pass  # another process created it first
                logger.info("created topics %s with %d partitions", missing, settings.partitions)
            return
        except (KafkaError, OSError) as exc:
            if time.monotonic() + delay > deadline:
                raise
            logger.info("broker not ready at %s (%s); retrying", settings.kafka_bootstrap, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
        finally:
            await admin.close()
