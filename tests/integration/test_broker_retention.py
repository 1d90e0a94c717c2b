"""Retention of the durable broker against the real tansu on SeaweedFS: consumed batches go, nothing else."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

from embedded.retention import FilerLog, S3Bucket, inventory
from embedded.specs import S3_BUCKET, filer_endpoint, s3_endpoint
from flowtools.harness import poll
from tests.stack import Stack

TOPIC = "retention-test"


def create_topic(stack: Stack) -> None:
    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=stack.settings.kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(TOPIC, 2, 1)])
        finally:
            await admin.close()

    asyncio.run(create())


def produce(stack: Stack, values: list[bytes]) -> None:
    """One awaited send per value: one batch, so one S3 object, per record."""
    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=stack.settings.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            for n, value in enumerate(values):
                await producer.send_and_wait(TOPIC, value, partition=n % 2)
        finally:
            await producer.stop()

    asyncio.run(send())


def consume(stack: Stack, count: int, *, commit: bool = True) -> list[bytes]:
    """``count`` records read by group "readers", committing after each fetch."""
    async def read() -> list[bytes]:
        consumer = AIOKafkaConsumer(TOPIC, bootstrap_servers=stack.settings.kafka_bootstrap, group_id="readers",
                                    auto_offset_reset="earliest", enable_auto_commit=False,
                                    session_timeout_ms=6000, heartbeat_interval_ms=1500)
        await consumer.start()
        try:
            values: list[bytes] = []
            async with asyncio.timeout(60):
                while len(values) < count:
                    batch = await consumer.getmany(timeout_ms=500, max_records=7)
                    values += [m.value for messages in batch.values() for m in messages if m.value is not None]
                    if commit:
                        await consumer.commit()
            return values
        finally:
            await consumer.stop()

    return asyncio.run(read())


def objects_per_partition(stack: Stack) -> list[int]:
    bucket = S3Bucket(s3_endpoint(stack.settings), S3_BUCKET)
    try:
        found = inventory(bucket)
    finally:
        bucket.close()
    return [len(found.records.get(key, [])) for key in sorted(found.records) if key[1] == TOPIC]


def metric(stack: Stack, name: str, **labels: str) -> float:
    url = f"http://127.0.0.1:{stack.settings.broker_metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - our loopback
        text = answer.read().decode()
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()))


def test_consumed_batches_are_removed_and_the_group_reads_on(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory("broker", broker_storage="durable", broker_retention_consumed_s=0.5,
                          broker_retention_interval_s=0.3)
    create_topic(stack)
    first = [f"a{n}".encode() for n in range(60)]
    produce(stack, first)
    assert objects_per_partition(stack) == [30, 30]
    assert sorted(consume(stack, 60)) == sorted(first)
    # Everything consumed and committed: each partition keeps only the batch the committed offset points past.
    poll(lambda: objects_per_partition(stack), want=[1, 1], deadline_s=30)
    poll(lambda: metric(stack, "flowscope_broker_retention_removed_objects_total", reason="consumed"), want=58.0,
         deadline_s=10)
    second = [f"b{n}".encode() for n in range(10)]
    produce(stack, second)
    assert sorted(consume(stack, 10)) == sorted(second)


def test_unconsumed_batches_stay(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory("broker", broker_storage="durable", broker_retention_consumed_s=0.5,
                          broker_retention_interval_s=0.3)
    create_topic(stack)
    values = [f"u{n}".encode() for n in range(20)]
    produce(stack, values)
    # Sweeps run meanwhile (the gauge shows they saw the topic), and remove nothing no group has read.
    poll(lambda: metric(stack, "flowscope_broker_record_objects", topic=TOPIC), want=20.0, deadline_s=10)
    assert objects_per_partition(stack) == [10, 10]
    assert sorted(consume(stack, 20, commit=False)) == sorted(values)


def test_time_retention_removes_old_batches_consumed_or_not(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory("broker", broker_storage="durable", broker_retention_s=1.0,
                          broker_retention_interval_s=0.3)
    create_topic(stack)
    produce(stack, [f"t{n}".encode() for n in range(20)])
    poll(lambda: objects_per_partition(stack), want=[1, 1], deadline_s=30)
    assert metric(stack, "flowscope_broker_retention_removed_objects_total", reason="time") == 18.0


def test_seaweedfs_metadata_log_is_swept(stack_factory: Callable[..., Stack]) -> None:
    # SeaweedFS's filer logs every object written to a file a minute under /topics/.system/log and removes none.
    stack = stack_factory("broker", broker_storage="durable")
    create_topic(stack)
    produce(stack, [f"m{n}".encode() for n in range(10)])
    log = FilerLog(filer_endpoint(stack.settings))
    try:
        def files() -> list[tuple[str, int]]:
            return [(path, size) for day, _, _, is_dir in log.entries(FilerLog.ROOT) if is_dir
                    for path, size, _, _ in log.entries(day)]

        assert poll(lambda: bool(files()), want=True, deadline_s=90), "the filer wrote no metadata log"
        written = files()
        assert all(size > 0 for _, size in written)
        removed, kept = log.sweep(3600)  # all younger than an hour: kept (a new minute's file may have come)
        assert removed == 0 and kept >= sum(size for _, size in written)
        removed, kept = log.sweep(0)
        assert removed >= len(written) and kept == 0
        assert not [path for path, _ in files() if path in dict(written)]
    finally:
        log.close()
