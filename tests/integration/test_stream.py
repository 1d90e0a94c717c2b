"""The stream worker as a separate process between the real broker and the real warehouse."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

import httpx
from aiokafka import AIOKafkaProducer

from contract.codec import encode_batch, partition_for
from contract.events import AnyEvent, MessageStatus, RejectedEvent, event_id
from tests.stack import Stack, poll
from warehouse.client import connect

NOW = int(time.time())


def status(wamid: str, value: str, *, code: int = 0) -> MessageStatus:
    return MessageStatus(
        event_id=event_id("status", wamid, value), waba_id="w", phone_number_id="p1", wamid=wamid, status=value,
        occurred_at=NOW, received_at_ms=NOW * 1000, recipient_hash="h", error_code=code,
    )


def produce(stack: Stack, records: Sequence[tuple[str, bytes, int]]) -> None:
    """(topic, value, partition) records, acknowledged by the broker."""

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=stack.settings.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            await asyncio.gather(*[await producer.send(t, value=v, partition=p) for t, v, p in records])
        finally:
            await producer.stop()

    asyncio.run(send())


def as_records(stack: Stack, events: Sequence[AnyEvent], *, per_record: int = 50) -> list[tuple[str, bytes, int]]:
    records = []
    by_partition: dict[int, list[AnyEvent]] = {}
    for event in events:
        by_partition.setdefault(partition_for(event.key, stack.settings.partitions), []).append(event)
    for partition, group in by_partition.items():
        for i in range(0, len(group), per_record):
            records.append((stack.settings.events_topic, encode_batch(group[i:i + per_record]), partition))
    return records



def test_events_land_once_and_bad_records_are_kept_with_a_reason(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory("broker", "warehouse", "stream")
    events = [status(f"wamid.{i}", s) for i in range(500) for s in ("sent", "delivered")]
    duplicates = events[:100]
    rejected = RejectedEvent(event_id="r1", source="whatsapp_webhook", reason="unknown status value 'x'",
                             raw='{"id":"wamid.z"}', received_at_ms=NOW * 1000)
    records = as_records(stack, events + duplicates)
    garbage_offset = sum(1 for topic, _, partition in records if partition == 0)
    records.append((stack.settings.events_topic, b"this is not an event batch", 0))
    records.append((stack.settings.dead_letter_topic, encode_batch([rejected]), 1))
    produce(stack, records)

    client = connect(stack.settings.warehouse_url_for("analyst"))
    counted = poll(lambda: client.query("SELECT count(), uniqExact(wamid, status) FROM message_statuses").result_rows,
                   want=[(1000, 1000)])
    assert counted == [(1000, 1000)]
    assert poll(lambda: client.command("SELECT count() FROM rejected_events"), want=2) == 2
    reasons = sorted(r[0] for r in client.query("SELECT reason FROM rejected_events").result_rows)
    assert reasons[0].startswith(
        f"undecodable canonical event at {stack.settings.events_topic}[0]@{garbage_offset}: undecodable event batch"
    )
    assert reasons[1:] == ["unknown status value 'x'"]
    raw = client.query("SELECT raw FROM rejected_events WHERE reason LIKE 'undecodable%'").result_rows
    assert raw == [("this is not an event batch",)]
    assert client.query(
        "SELECT status, uniqExactMerge(messages) FROM message_status_minute GROUP BY status ORDER BY status"
    ).result_rows == [("delivered", 500), ("sent", 500)]


def test_worker_killed_mid_stream_loses_nothing_and_counts_nothing_twice(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory("broker", "warehouse", "stream", batch_max_records=200, batch_max_wait_ms=50)
    client = connect(stack.settings.warehouse_url_for("analyst"))
    first = [status(f"wamid.a{i}", "sent") for i in range(3000)]
    produce(stack, as_records(stack, first, per_record=20))
    poll(lambda: client.command("SELECT count() > 0 FROM message_statuses"), want=1)
    stack.supervisor.kill("stream")  # SIGKILL: no LeaveGroup, no commit of the batch in flight
    second = [status(f"wamid.b{i}", "failed", code=131049) for i in range(3000)]
    produce(stack, as_records(stack, second + first[:500], per_record=20))
    stack.start("stream")

    expected = [("failed", 3000), ("sent", 3000)]
    exact = poll(lambda: client.query(
        "SELECT status, uniqExactMerge(messages) FROM message_status_minute GROUP BY status ORDER BY status"
    ).result_rows, want=expected, deadline_s=90)
    assert exact == expected
    assert client.query(
        "SELECT count(), uniqExact(wamid, status) FROM message_statuses FINAL"
    ).result_rows == [(6000, 6000)]


def test_batches_keep_to_their_size_limit_while_writes_overlap_fetches(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory("broker", "warehouse", "stream", batch_max_records=500, batch_max_wait_ms=200)
    events = [status(f"wamid.c{i}", "sent") for i in range(12_000)]
    produce(stack, as_records(stack, events, per_record=20))  # a backlog: every fetch could take 500 records
    client = connect(stack.settings.warehouse_url_for("analyst"))
    poll(lambda: client.command("SELECT count() FROM message_statuses"), want=12_000, deadline_s=90)

    def batch_histogram() -> dict[str, float]:
        text = httpx.get(f"http://127.0.0.1:{stack.settings.stream_metrics_port}/metrics").text
        return {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
                if line.startswith("flowscope_stream_batch_events_")}

    # The histogram is observed right after the commit of the last batch.
    poll(lambda: batch_histogram().get("flowscope_stream_batch_events_sum"), want=12_000, deadline_s=30)
    histogram = batch_histogram()
    assert histogram["flowscope_stream_batch_events_sum"] == 12_000
    batches = histogram["flowscope_stream_batch_events_count"]
    assert histogram['flowscope_stream_batch_events_bucket{le="500.0"}'] == batches  # none above 500
    assert batches >= 24
    assert client.query("SELECT count(), uniqExact(wamid) FROM message_statuses FINAL").result_rows == [
        (12_000, 12_000)
    ]
