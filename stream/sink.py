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

from flowscope.contract import AnyEvent, FlowCompletion, MessageStatus, RejectedEvent
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
    rejected: list[RejectedEvent] = field(default_factory=list)

    def add(self, event: AnyEvent) -> None:
        if isinstance(event, MessageStatus):
            self.statuses.append(event)
        elif isinstance(event, FlowCompletion):
            self.completions.append(event)
        else:
            self.rejected.append(event)

    def __len__(self) -> int:
        return len(self.statuses) + len(self.completions) + len(self.rejected)


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
        parts: Sequence[tuple[str, Sequence[str], list[list[object]], int]] = (
            (tables.MESSAGE_STATUSES, tables.STATUS_COLUMNS, tables.status_columns(batch.statuses),
             len(batch.statuses)),
            (tables.FLOW_COMPLETIONS, tables.COMPLETION_COLUMNS, tables.completion_columns(batch.completions),
             len(batch.completions)),
            (tables.REJECTED_EVENTS, tables.REJECTED_COLUMNS, tables.rejected_columns(batch.rejected),
             len(batch.rejected)),
        )
        for table, columns, data, rows in parts:
            if rows == 0 or table in done:
                continue
            try:
                client = self._connect()
                client.insert(table, data, column_names=list(columns), column_oriented=True)
            except Exception as exc:  # driver, network and server errors alike: keep the batch, retry
                self._client = None
                raise SinkWriteError(table, rows, repr(exc)) from exc
            done.add(table)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
