"""Stream benchmark: events/s one stream worker moves from the broker into the warehouse.

The events topic is pre-filled with N canonical status events exactly as the receiver writes them
(one record per partition and window, holding a JSON array of events, placed by
:func:`contract.events.partition_for` on the wamid). The ceiling is a bare aiokafka ``getmany``
loop decoding the same records with orjson; then one real stream worker (``flowscope stream``)
drains the topic into the warehouse, timed from the first stored row to the last, so its start and
group join do not count (the wall figure, from spawning it, is in the details).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from config.settings import Settings
from config.topics import ensure_topics
from contract.codec import encode_batch, partition_for
from contract.events import MessageStatus
from contract.privacy import Pseudonymiser
from embedded.exceptions import SupervisorError
from flowtools.bench import Result, Say
from flowtools.harness import Pipeline
from flowtools.simulator.config import SimulationConfig
from flowtools.simulator.generator import TrafficGenerator
from ingest.parsing import WebhookParser
from stream.consumer import RECORDS_PER_FETCH
from warehouse.client import connect
from warehouse.queries import stored_status_count

BENCHMARK = "stream"
TARGET_EVENTS_PER_S = 50_000.0
EVENTS = 1_000_000
QUICK_EVENTS = 100_000
SEND_WINDOW = 256  # records in flight while pre-filling
POLL_S = 0.1
PROGRESS_S = 2.0

SettingsFactory = Callable[..., Settings]


# How long a receiver with no linger (group commit) gathers a batch under load: about one busy broker write.
GROUP_COMMIT_BATCH_MS = 5


def events_per_record(settings: Settings) -> int:
    """Events in one record when the receivers write ``TARGET_EVENTS_PER_S``.

    A receiver gathers what arrives within its producer linger (group commit: during the previous write, taken
    as :data:`GROUP_COMMIT_BATCH_MS`) into one record per partition.
    """
    per_window = TARGET_EVENTS_PER_S * max(settings.resolved_producer_linger_ms, GROUP_COMMIT_BATCH_MS) / 1000
    return max(1, round(per_window / settings.partitions))


def status_events(count: int, *, hash_key: str, seed: int = 11) -> Iterator[MessageStatus]:
    """``count`` distinct status events, parsed by the receiver's parser from simulated webhooks."""
    config = SimulationConfig(messages=0, seed=seed, duplicate_ratio=0.0, status_duplicate_ratio=0.0)
    parser = WebhookParser(pseudonymise=Pseudonymiser(hash_key))
    seen: set[str] = set()
    for webhook in TrafficGenerator(config):
        for event in parser.parse(webhook.raw).events:
            if type(event) is not MessageStatus or event.event_id in seen:
                continue
            seen.add(event.event_id)
            yield event
            if len(seen) == count:
                return


@dataclass(frozen=True)
class Prefill:
    events: int
    records: int
    bytes: int
    seconds: float


async def prefill(settings: Settings, count: int, say: Say) -> Prefill:
    """Write ``count`` status events to the events topic, grouped into records as the receiver groups them."""
    await ensure_topics(settings, timeout_s=60)
    per_record = events_per_record(settings)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        acks="all",
        enable_idempotence=False,  # tansu has no InitProducerId
        linger_ms=10,
        max_batch_size=1024 * 1024,
        max_request_size=2 * 1024 * 1024,
    )
    await producer.start()
    started = time.monotonic()
    records = size = written = 0
    try:
        partitions = len(await producer.partitions_for(settings.events_topic))
        buffers: list[list[MessageStatus]] = [[] for _ in range(partitions)]
        pending: list[asyncio.Future[object]] = []
        step = max(1, count // 10)

        async def send(partition: int) -> None:
            nonlocal records, size, written
            value = encode_batch(buffers[partition])
            written += len(buffers[partition])
            buffers[partition] = []
            pending.append(await producer.send(settings.events_topic, value=value, partition=partition))
            records += 1
            size += len(value)
            if len(pending) >= SEND_WINDOW:
                await asyncio.gather(*pending)
                pending.clear()

        for n, event in enumerate(status_events(count, hash_key=settings.hash_key), start=1):
            partition = partition_for(event.key, partitions)
            buffers[partition].append(event)
            if len(buffers[partition]) >= per_record:
                await send(partition)
            if n % step == 0:
                say(f"stream: pre-filling: {n:,} / {count:,} events sent ({n / (time.monotonic() - started):,.0f}/s)")
        for partition in range(partitions):
            if buffers[partition]:
                await send(partition)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    if written != count:
        raise ValueError(f"generated {written:,} events, wanted {count:,}")
    return Prefill(written, records, size, time.monotonic() - started)


@dataclass(frozen=True)
class Drain:
    events: int  # counted by the end (all N unless the deadline passed)
    first_after_s: float  # from start to the first events
    span_s: float  # from the first events to the last
    rate: float  # events/s over span_s (the events seen first excluded)
    wall_rate: float  # events/s from start to the last

    def summary(self) -> dict[str, float]:
        return {"events": self.events, "first_events_after_s": round(self.first_after_s, 2),
                "span_s": round(self.span_s, 2), "events_per_s": round(self.rate, 1),
                "wall_events_per_s": round(self.wall_rate, 1)}


def _drain(started: float, first: float | None, first_count: int, last: float, events: int) -> Drain:
    if first is None:
        return Drain(events, 0.0, 0.0, 0.0, 0.0)
    span = last - first
    rate = (events - first_count) / span if span > 0 else 0.0
    return Drain(events, first - started, span, rate, events / (last - started))


async def bare_consumer(settings: Settings, count: int, *, deadline_s: float) -> Drain:
    """Read every event of the topic with a plain ``getmany`` loop and orjson: the ceiling of a worker."""
    consumer = AIOKafkaConsumer(
        settings.events_topic,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"{settings.consumer_group}-bench-bare-{secrets.token_hex(4)}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=int(settings.broker_session_timeout_s * 1000),
        heartbeat_interval_ms=max(500, int(settings.broker_session_timeout_s * 1000 / 4)),
        fetch_max_bytes=32 * 1024 * 1024,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    started = time.monotonic()
    await consumer.start()
    events = first_count = 0
    first: float | None = None
    last = started
    deadline = started + deadline_s
    try:
        while events < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000, max_records=RECORDS_PER_FETCH)
            for messages in batches.values():
                for message in messages:
                    events += len(orjson.loads(message.value or b"[]"))
            if batches:
                last = time.monotonic()
                if first is None:
                    first, first_count = last, events
    finally:
        await consumer.stop()
    return _drain(started, first, first_count, last, events)


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) a process has used so far, from ``/proc``; None where there is no ``/proc``."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_snapshot(pipeline: Pipeline) -> dict[str, float]:
    """Each running component's CPU seconds so far."""
    out = {}
    for name, child in pipeline.supervisor.children.items():
        seconds = cpu_seconds(child.process.pid)
        if seconds is not None and child.process.poll() is None:
            out[name] = seconds
    return out


def cpu_per_event(before: Mapping[str, float], after: Mapping[str, float], events: int) -> dict[str, float]:
    """Microseconds of CPU each component spent per event between two snapshots (every core counted)."""
    if events <= 0:
        return {}
    return {name: round((after[name] - before[name]) / events * 1e6, 1) for name in after if name in before}


def watch_worker(pipeline: Pipeline, count: int, say: Say, *, deadline_s: float,
                 cpu: dict[str, float] | None = None) -> Drain:
    """Start one stream worker in ``pipeline`` and poll the warehouse until it holds ``count`` statuses.

    ``cpu``, when given, receives each component's CPU microseconds per event stored after the first rows."""
    supervisor = pipeline.supervisor
    client = connect(pipeline.settings.warehouse_url_for("analyst"))
    try:
        started = time.monotonic()
        pipeline.start("stream")
        say(f"stream: worker started in {time.monotonic() - started:.1f} s; waiting for {count:,} rows ...")
        stored = first_count = 0
        first: float | None = None
        last = started
        deadline = started + deadline_s
        next_progress = started + PROGRESS_S
        cpu_first: dict[str, float] = {}
        while stored < count and time.monotonic() < deadline:
            exited = supervisor.exited()
            if exited:
                name = exited[0].spec.name
                raise SupervisorError(f"{name} stopped during the benchmark:\n{supervisor.tail(name)}")
            now_stored = stored_status_count(client)
            now = time.monotonic()
            if now_stored != stored:
                stored, last = now_stored, now
                if first is None:
                    first, first_count = now, stored
                    cpu_first = cpu_snapshot(pipeline)
            if now >= next_progress:
                if first is None:
                    say(f"stream: no rows yet after {now - started:.0f} s (the worker is joining its group)")
                else:
                    rate = (stored - first_count) / (now - first) if now > first else 0.0
                    say(f"stream: {stored:,} / {count:,} rows stored ({rate:,.0f} events/s)")
                next_progress = now + PROGRESS_S
            if stored < count:
                time.sleep(POLL_S)
        if cpu is not None:
            cpu.update(cpu_per_event(cpu_first, cpu_snapshot(pipeline), stored - first_count))
    finally:
        client.close()
    return _drain(started, first, first_count, last, stored)


def scrape(url: str) -> dict[str, float]:
    """Every sample of a Prometheus text exposition, summed over its labels, by sample name."""
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - our own loopback URL
        text = response.read().decode()
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


def worker_time(settings: Settings, drain: Drain) -> dict[str, float]:
    """Where the worker's time went, from its own metrics: warehouse inserts against the whole drain."""
    metrics = scrape(f"http://127.0.0.1:{settings.stream_metrics_port}/metrics")
    batches = metrics.get("flowscope_stream_batch_events_count", 0.0)
    insert_s = metrics.get("flowscope_stream_warehouse_insert_duration_seconds_sum", 0.0)
    drain_s = drain.span_s
    return {
        "batches": batches,
        "mean_batch_events": round(metrics.get("flowscope_stream_batch_events_sum", 0.0) / batches, 1)
        if batches else 0.0,
        "insert_s": round(insert_s, 2),
        "drain_s": round(drain_s, 2),
        "insert_share_of_drain": round(insert_s / drain_s, 2) if drain_s > 0 else 0.0,
    }


def run(settings_factory: SettingsFactory, say: Say, *, quick: bool) -> list[Result]:
    count = QUICK_EVENTS if quick else EVENTS
    # Generous: a worker at a fifth of the target still finishes; only a stall hits it.
    deadline_s = 60 + count / (TARGET_EVENTS_PER_S / 5)
    with tempfile.TemporaryDirectory(prefix="flowscope-bench-stream-") as tmp:
        settings = settings_factory(Path(tmp), broker_storage="memory", log_level="WARNING")
        with Pipeline(settings) as pipeline:
            for component in ("broker", "warehouse"):
                say(f"stream: starting {component} ...")
                pipeline.start(component)
            say(f"stream: pre-filling {settings.events_topic} with {count:,} status events "
                f"({events_per_record(settings)} per record) ...")
            filled = asyncio.run(prefill(settings, count, say))
            say(f"stream: pre-filled {filled.records:,} records, {filled.bytes / 1e6:,.1f} MB "
                f"in {filled.seconds:.1f} s")
            say("stream: bare aiokafka consumer (getmany + orjson) over the same records ...")
            bare = asyncio.run(bare_consumer(settings, count, deadline_s=deadline_s))
            say(f"stream: bare consumer {bare.rate:,.0f} events/s ({bare.events:,} events)")
            say("stream: starting one stream worker ...")
            cpu: dict[str, float] = {}
            worker = watch_worker(pipeline, count, say, deadline_s=deadline_s, cpu=cpu)
            spent = {**worker_time(settings, worker), "cpu_us_per_event": cpu,
                     "cpu_us_per_event_total": round(sum(cpu.values()), 1), "cores": os.cpu_count() or 1,
                     "cpu_budget_us_per_event_at_target": round((os.cpu_count() or 1) * 1e6 / TARGET_EVENTS_PER_S, 1)}
            say("stream: CPU per event stored (µs): " + ", ".join(f"{k} {v}" for k, v in cpu.items())
                + f"; the target leaves {spent['cpu_budget_us_per_event_at_target']} µs over {spent['cores']} cores")
            say(f"stream: worker {worker.rate:,.0f} events/s from the first stored row "
                f"({worker.wall_rate:,.0f}/s from its start), {worker.events:,} / {count:,} stored")
    common = {
        "events": count,
        "records": filled.records,
        "events_per_record": events_per_record(settings),
        "bytes_per_event": round(filled.bytes / count, 1),
        "partitions": settings.partitions,
        "broker_storage": settings.broker_storage,
        "batch_max_records": settings.batch_max_records,
        "batch_max_wait_ms": settings.batch_max_wait_ms,
    }
    missing = count - worker.events
    return [
        Result(BENCHMARK, "events/s per worker", worker.rate, TARGET_EVENTS_PER_S, True, "events/s",
               {**common, "measured": "from the first row stored to the last, one worker",
                "worker": worker.summary(), "worker_time": spent, "bare_consumer_events_per_s": round(bare.rate, 1),
                "prefill_s": round(filled.seconds, 1)}),
        Result(BENCHMARK, "ratio to bare consumer", worker.rate / bare.rate if bare.rate else 0.0, 0.0, True, "x",
               {**common, "informational": "the share of a bare getmany + orjson loop's speed; no target",
                "bare_consumer": bare.summary(), "worker": worker.summary()}),
        Result(BENCHMARK, "events missing from warehouse", float(missing), 0.0, False, "",
               {**common, "stored": worker.events, "bare_consumer_read": bare.events,
                "deadline_s": round(deadline_s)}),
    ]
