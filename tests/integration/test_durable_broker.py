"""The durable embedded broker: tansu on a local SeaweedFS keeps every acknowledged record across SIGKILLs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from config.topics import ensure_topics
from embedded.specs import broker_specs
from tests.stack import Stack


def produce(stack: Stack, values: list[bytes]) -> None:
    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=stack.settings.kafka_bootstrap, acks="all", linger_ms=5)
        await producer.start()
        try:
            futures = [await producer.send(stack.settings.events_topic, value=v, partition=i % 4)
                       for i, v in enumerate(values)]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    asyncio.run(send())


def read_all(stack: Stack) -> list[bytes]:
    async def read() -> list[bytes]:
        consumer = AIOKafkaConsumer(bootstrap_servers=stack.settings.kafka_bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            partitions = [TopicPartition(stack.settings.events_topic, p) for p in range(4)]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            values: list[bytes] = []
            empty = 0
            while empty < 3:
                batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
                empty = 0 if batch else empty + 1
                values += [m.value for messages in batch.values() for m in messages if m.value is not None]
            return values
        finally:
            await consumer.stop()

    return asyncio.run(read())


def restart(stack: Stack, *names: str) -> None:
    for name in names:
        stack.supervisor.kill(name)
    for spec in broker_specs(stack.settings):
        if spec.name in names:
            stack.supervisor.start(spec)


def test_acknowledged_records_survive_sigkill_of_the_broker_and_of_its_storage(
    stack_factory: Callable[..., Stack],
) -> None:
    stack = stack_factory("broker", broker_storage="durable")
    asyncio.run(ensure_topics(stack.settings, timeout_s=60))
    first = [f"a{i}".encode() for i in range(3000)]
    produce(stack, first)
    restart(stack, "broker")
    second = [f"b{i}".encode() for i in range(3000)]
    produce(stack, second)
    restart(stack, "seaweedfs", "broker")
    assert sorted(read_all(stack)) == sorted(first + second)
