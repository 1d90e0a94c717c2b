"""The high-volume path: a batch consumer run as a Faust service.

Faust's per-message pipeline tops out near 13k events/s per worker, so canonical events are read
with aiokafka's ``getmany`` in batches, decoded with msgspec, deduplicated in memory and written
to the warehouse by a :class:`~stream.sink.Sink`. Offsets are committed only after the sink wrote
the batch: a crash replays at most the uncommitted batch, and the sinks deduplicate it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter

import mode
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from config.settings import Settings
from config.topics import ensure_topics
from contract.codec import decode_batch
from contract.events import FLOW_HEALTH_EVENTS, AnyEvent, RejectedEvent, event_id
from contract.exceptions import ContractError
from stream import metrics
from stream.catalog import FlowCatalog
from stream.dedup import RecentIds
from stream.offsets import OffsetGuard
from stream.sink import Batch, Sink

logger = logging.getLogger(__name__)

SOURCE_STREAM = "stream"
# Records per getmany call; each record holds a whole array of events.
RECORDS_PER_FETCH = 500
# How long a read waits for more records, past the batch's wait, while the previous batch is still being written.
WRITE_POLL_S = 0.02
# Where a partition's records begin when the group never committed one (see BatchConsumer._start_guard).
FIRST_OFFSET = 0


class BatchConsumer(mode.Service):
    """Consumes the events and dead-letter topics in batches and writes them through ``sink``."""

    def __init__(self, *, settings: Settings, sink: Sink, catalog: FlowCatalog | None = None,
                 **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.settings = settings
        self.sink = sink
        self.catalog = catalog
        self.recent = RecentIds(settings.dedup_window)
        self.consumer: AIOKafkaConsumer | None = None
        self.stopping = asyncio.Event()
        self.batches_written = 0
        self.committed: dict[TopicPartition, int] = {}
        self.lag_reported: set[TopicPartition] = set()
        self.guard = OffsetGuard()
        self.events_per_record: int | None = None  # unknown until the first fetch

    async def on_start(self) -> None:
        await ensure_topics(self.settings, timeout_s=120)
        s = self.settings
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap,
            group_id=s.consumer_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",  # tansu's "latest" offsets are unreliable; committed offsets rule
            session_timeout_ms=int(s.broker_session_timeout_s * 1000),
            heartbeat_interval_ms=max(500, int(s.broker_session_timeout_s * 1000 / 4)),
            max_poll_interval_ms=30 * 60 * 1000,  # a warehouse outage must not evict the worker
            fetch_max_bytes=32 * 1024 * 1024,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        self.consumer.subscribe([s.events_topic, s.dead_letter_topic], listener=_ForgetOnRebalance(self.guard))
        await self.consumer.start()
        logger.info("consuming %s and %s as group %s", s.events_topic, s.dead_letter_topic, s.consumer_group)

    async def on_stop(self) -> None:
        self.stopping.set()
        if self.consumer is not None:
            with contextlib.suppress(Exception):
                await self.consumer.stop()  # sends LeaveGroup: the next start rebalances at once
        self.sink.close()

    @mode.Service.task
    async def _consume(self) -> None:
        """Fetch batch N+1 while batch N is written (in a thread); commit strictly in order.

        At most one write is in flight: batch N's offsets are committed after its write and before
        batch N+1's write starts, so a crash replays at most the two uncommitted batches.
        """
        consumer = self.consumer
        if consumer is None:
            return
        writing: asyncio.Task[bool] | None = None
        try:
            while not self.should_stop:
                batch, offsets = await self._fetch_batch(consumer, writing)
                await self._report_lag(consumer)
                if not offsets:
                    continue
                await self._check_against_definitions(batch)
                if writing is not None and not await writing:
                    return  # stopping mid-retry: offsets stay uncommitted, the batches are replayed later
                writing = asyncio.create_task(self._write_and_commit(consumer, batch, offsets))
            if writing is not None:
                await writing
        finally:
            if writing is not None and not writing.done():
                writing.cancel()

    async def _write_and_commit(self, consumer: AIOKafkaConsumer, batch: Batch,
                                offsets: dict[TopicPartition, int]) -> bool:
        if len(batch) and not await self.sink.flush(batch, stopping=self.stopping):
            return False
        await self._commit(consumer, offsets)
        self._account(batch)
        return True

    async def _fetch_batch(self, consumer: AIOKafkaConsumer,
                           writing: asyncio.Task[bool] | None = None) -> tuple[Batch, dict[TopicPartition, int]]:
        """Read until the batch is full, or its oldest event waited ``batch_max_wait_ms`` and the previous batch's
        write (``writing``) is done: a batch cannot be written before then anyway, so under load batches grow
        with the write's time (fewer, larger inserts), while a quiet stream still writes within the wait."""
        s = self.settings
        batch = Batch()
        offsets: dict[TopicPartition, int] = {}
        deadline: float | None = None
        fetched = 0
        while fetched < s.batch_max_records and not self.should_stop:
            timeout = 1.0 if deadline is None else deadline - time.monotonic()
            if timeout <= 0:
                if writing is None or writing.done():
                    break
                timeout = WRITE_POLL_S  # the previous write is still on: keep reading meanwhile
            # A record holds a whole webhook's events: ask for as many records as the batch has room for.
            per_record = self.events_per_record
            room = 1 if per_record is None else min(RECORDS_PER_FETCH, (s.batch_max_records - fetched) // per_record)
            if room == 0 and fetched:
                break  # not even one more typical record fits
            room = max(room, 1)
            try:
                records = await consumer.getmany(timeout_ms=int(timeout * 1000), max_records=room)
            except KafkaError as exc:
                logger.warning("fetch failed (%s); retrying", exc)
                await asyncio.sleep(0.5)
                continue
            if not records:
                if deadline is None:
                    return batch, offsets
                continue
            if deadline is None:
                deadline = time.monotonic() + s.batch_max_wait_ms / 1000
            reread = False
            before, count = fetched, sum(len(m) for m in records.values())
            for tp, messages in records.items():
                if not self.guard.knows(tp):
                    await self._start_guard(consumer, tp)
                taken, seek_to = self.guard.accept(tp, messages)
                for message in messages[:taken]:
                    fetched += self._add(batch, message.value, tp, message.offset)
                if taken:
                    offsets[tp] = messages[taken - 1].offset + 1
                if seek_to is not None:
                    consumer.seek(tp, seek_to)
                    reread = True
            if count:
                self.events_per_record = max(1, -(-(fetched - before) // count))  # the latest fetch's, rounded up
            if reread:
                await asyncio.sleep(0.02)  # the missing record is being written: let it land
        return batch, offsets

    async def _start_guard(self, consumer: AIOKafkaConsumer, tp: TopicPartition) -> None:
        """The offset a newly assigned partition's records must start at: the committed one, else the first.

        Without a committed offset (a new group) the consumer starts where the broker says the partition begins
        (``auto_offset_reset="earliest"``). tansu answers that with the offset of the record object written
        *least recently*, not the lowest one (tansu-storage ``dynostore::list_offsets``, v0.6): when the
        partition's first records were written concurrently, it can answer 1 while offset 0 is stored, and a
        worker trusting it never reads offset 0 (measured: 62 of 482 events lost by a worker started after
        the receiver had written them). So a new group's partitions must start at offset 0; the guard re-reads
        from there. Where a broker's retention removed the first records before the group ever committed,
        the guard steps over them after its patience, with a warning."""
        try:
            committed = await asyncio.wait_for(consumer.committed(tp), timeout=5)
        except (KafkaError, TimeoutError) as exc:
            logger.warning("no committed offset for %s (%s); trusting the first record", tp, exc)
            return
        self.guard.start_at(tp, FIRST_OFFSET if committed is None else committed)

    async def _check_against_definitions(self, batch: Batch) -> None:
        """Resolve endpoint INITs to entry screens; reject events naming screens their version lacks."""
        catalog = self.catalog
        if catalog is None or not batch.node_events:
            return
        for registration in batch.definitions:
            catalog.learn(registration.definition)
        await catalog.refresh_for({(e.flow_id, e.flow_version) for e in batch.node_events})
        kept = []
        for event in batch.node_events:
            resolved = catalog.resolve(event)
            if isinstance(resolved, RejectedEvent):
                batch.rejected.append(resolved)
            else:
                kept.append(resolved)
        batch.node_events = kept

    def _add(self, batch: Batch, value: bytes | None, tp: TopicPartition, offset: int) -> int:
        """Add one record's events to ``batch``; returns how many the record held."""
        events: list[AnyEvent]
        try:
            events = decode_batch(value or b"")
        except ContractError as exc:
            raw = (value or b"").decode("utf-8", errors="replace")
            events = [
                RejectedEvent(
                    event_id=event_id("undecodable", tp.topic, str(tp.partition), str(offset)),
                    source=SOURCE_STREAM,
                    reason=f"undecodable canonical event at {tp.topic}[{tp.partition}]@{offset}: {exc}",
                    raw=raw,
                    received_at_ms=int(time.time() * 1000),
                )
            ]
            metrics.EVENTS.labels("undecodable").inc()
        recent = self.recent
        duplicates = 0
        for event in events:
            if event.event_id in recent:
                duplicates += 1
                continue
            recent.add(event.event_id)
            batch.add(event)
        if duplicates:
            metrics.EVENTS.labels("duplicate").inc(duplicates)
        return len(events)

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # Partitions moved to another worker: it replays from the last commit, the sinks dedupe.
            logger.warning("commit of %s failed after a successful write (%s)", offsets, exc)
            return
        for tp, offset in offsets.items():
            self.committed[tp] = offset
            metrics.COMMITTED_OFFSET.labels(tp.topic, str(tp.partition)).set(offset)
        await self._report_lag(consumer)

    async def _report_lag(self, consumer: AIOKafkaConsumer) -> None:
        """Lag per owned partition; partitions moved to another worker stop being reported here."""
        assigned = consumer.assignment()
        for tp in self.lag_reported - assigned:
            metrics.CONSUMER_LAG.remove(tp.topic, str(tp.partition))
            metrics.COMMITTED_OFFSET.remove(tp.topic, str(tp.partition))
            self.committed.pop(tp, None)
        self.lag_reported &= assigned
        for tp in assigned:
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue  # nothing fetched from it yet
            done = self.committed.get(tp)
            if done is None:
                # Nothing committed by this worker yet: what it has read so far counts as done.
                try:
                    done = await asyncio.wait_for(consumer.position(tp), timeout=1.0)
                except (KafkaError, TimeoutError, AssertionError):
                    continue
            metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(0, highwater - done))
            self.lag_reported.add(tp)

    def _account(self, batch: Batch) -> None:
        self.batches_written += 1
        metrics.BATCH_SIZE.observe(len(batch))
        metrics.EVENTS.labels("inserted").inc(len(batch) - len(batch.rejected))
        metrics.EVENTS.labels("dead_lettered").inc(len(batch.rejected))
        counts: Counter[tuple[str, str, int]] = Counter(
            (s.status, s.phone_number_id, s.error_code) for s in batch.statuses
        )
        for (status, phone_number_id, error_code), count in counts.items():
            metrics.MESSAGE_STATUSES_TOTAL.labels(status, phone_number_id, str(error_code)).inc(count)
        for health in batch.flow_health:
            known = health.event if health.event in FLOW_HEALTH_EVENTS else "other"
            metrics.FLOW_HEALTH_EVENTS_TOTAL.labels(known).inc()
        if batch.statuses:
            metrics.LAST_EVENT_AGE.set(max(s.received_at_ms for s in batch.statuses) / 1000)


class _ForgetOnRebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Partitions that move restart from their committed offsets: the guard forgets what it expected."""

    def __init__(self, guard: OffsetGuard) -> None:
        self.guard = guard

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.guard.forget(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.guard.forget(assigned)
