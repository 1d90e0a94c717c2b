"""Sinks: where batches of canonical events go. Subclasses implement only :meth:`Sink.write`.

The base owns the rest: grouping a batch by table, retrying a failed write with backoff until it
succeeds or the worker stops (offsets are committed only after), and timing every write.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

from clickhouse_connect.driver.client import Client

from contract.events import (
    AnyEvent,
    FlowCompletion,
    FlowDefinitionRegistered,
    FlowHealth,
    FlowSent,
    MessageStatus,
    NodeEvent,
    RejectedEvent,
)
from contract.exceptions import FlowDefinitionError
from contract.flowjson import parse_flow_json
from stream import metrics
from stream.exceptions import SinkWriteError
from warehouse import tables
from warehouse.client import connect

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Batch:
    """One batch of events, grouped by kind."""

    statuses: list[MessageStatus] = field(default_factory=list)
    completions: list[FlowCompletion] = field(default_factory=list)
    flow_sends: list[FlowSent] = field(default_factory=list)
    node_events: list[NodeEvent] = field(default_factory=list)
    definitions: list[FlowDefinitionRegistered] = field(default_factory=list)
    flow_health: list[FlowHealth] = field(default_factory=list)
    rejected: list[RejectedEvent] = field(default_factory=list)

    def add(self, event: AnyEvent) -> None:
        kind = type(event)
        if kind is MessageStatus:
            self.statuses.append(event)  # type: ignore[arg-type]
        elif kind is NodeEvent:
            self.node_events.append(event)  # type: ignore[arg-type]
        elif kind is FlowCompletion:
            self.completions.append(event)  # type: ignore[arg-type]
        elif kind is FlowSent:
            self.flow_sends.append(event)  # type: ignore[arg-type]
        elif kind is FlowDefinitionRegistered:
            self.definitions.append(event)  # type: ignore[arg-type]
        elif kind is FlowHealth:
            self.flow_health.append(event)  # type: ignore[arg-type]
        else:
            self.rejected.append(event)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return (len(self.statuses) + len(self.completions) + len(self.flow_sends) + len(self.node_events)
                + len(self.definitions) + len(self.flow_health) + len(self.rejected))


class Sink(ABC):
    """Writes batches somewhere durable. Retrying, backoff and timing live here."""

    def __init__(self, *, max_backoff_s: float = 10.0) -> None:
        self._max_backoff_s = max_backoff_s

    @abstractmethod
    def write(self, batch: Batch, *, done: set[str]) -> None:
        """Write ``batch``; add each part written to ``done`` so a retry does not write it twice.

        Raise :class:`SinkWriteError` when a part failed. Runs in a worker thread.
        """

    async def flush(self, batch: Batch, *, stopping: asyncio.Event) -> bool:
        """Write ``batch``, retrying until it succeeds (True) or the worker is stopping (False)."""
        done: set[str] = set()
        delay = 0.1
        while True:
            started = time.perf_counter()
            try:
                await asyncio.to_thread(self.write, batch, done=done)
            except SinkWriteError as exc:
                metrics.INSERT_FAILURES.labels(exc.table).inc()
                logger.warning("%s; retrying in %.1f s", exc, delay)
                try:
                    await asyncio.wait_for(stopping.wait(), timeout=delay)
                    return False
                except TimeoutError:
                    delay = min(delay * 2, self._max_backoff_s)
                    continue
            metrics.INSERT_LATENCY.observe(time.perf_counter() - started)
            return True

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


class WarehouseSink(Sink):
    """Inserts each kind of event into its ClickHouse table through clickhouse-connect."""

    def __init__(self, url: str, **options: float) -> None:
        super().__init__(**options)
        self._url = url
        self._client: Client | None = None

    def _connect(self) -> Client:
        if self._client is None:
            self._client = connect(self._url, compress="lz4", send_receive_timeout=60)
        return self._client

    def write(self, batch: Batch, *, done: set[str]) -> None:
        definition_rows: list[list[object]] = []
        screen_rows: list[list[object]] = []
        for registered in batch.definitions:
            try:
                definition = parse_flow_json(registered.flow_json, flow_id=registered.flow_id,
                                             version=registered.flow_version)
            except FlowDefinitionError:
                continue  # validated by the receiver already
            rows, screens = tables.flow_definition_rows(definition, registered.flow_json, registered.received_at_ms)
            definition_rows += rows
            screen_rows += screens
        parts: Sequence[tuple[str, Sequence[str], list[list[object]], int]] = (
            (tables.FLOW_DEFINITIONS, tables.FLOW_DEFINITION_COLUMNS, _transpose(definition_rows, 4),
             len(definition_rows)),
            (tables.FLOW_SCREENS, tables.FLOW_SCREEN_COLUMNS, _transpose(screen_rows, 11), len(screen_rows)),
            (tables.FLOW_SENDS, tables.FLOW_SEND_COLUMNS, tables.flow_send_columns(batch.flow_sends),
             len(batch.flow_sends)),
            (tables.FLOW_NODE_EVENTS, tables.NODE_EVENT_COLUMNS, tables.node_event_columns(batch.node_events),
             len(batch.node_events)),
            (tables.MESSAGE_STATUSES, tables.STATUS_COLUMNS, tables.status_columns(batch.statuses),
             len(batch.statuses)),
            (tables.FLOW_COMPLETIONS, tables.COMPLETION_COLUMNS, tables.completion_columns(batch.completions),
             len(batch.completions)),
            (tables.FLOW_HEALTH_EVENTS, tables.FLOW_HEALTH_COLUMNS, tables.flow_health_columns(batch.flow_health),
             len(batch.flow_health)),
            (tables.REJECTED_EVENTS, tables.REJECTED_COLUMNS, tables.rejected_columns(batch.rejected),
             len(batch.rejected)),
        )
        for table, columns, data, count in parts:
            if count == 0 or table in done:
                continue
            try:
                client = self._connect()
                client.insert(table, data, column_names=list(columns), column_oriented=True)
            except Exception as exc:  # driver, network and server errors alike: keep the batch, retry
                self._client = None
                raise SinkWriteError(table, count, repr(exc)) from exc
            done.add(table)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _transpose(rows: list[list[object]], width: int) -> list[list[object]]:
    return [[row[i] for row in rows] for i in range(width)]
