"""Sinks: where batches of canonical events go. Subclasses implement only :meth:`Sink.write`.

The base owns the stream's side: a batch grouped by event kind, retrying a failed write with backoff
until it succeeds or the worker stops (offsets are committed only after), and timing every write.
Which table each kind goes to, and in which columns, is the warehouse's (:mod:`warehouse.writer`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from clickhouse_connect.driver.client import Client

from contract.events import (
    AnyEvent,
    FlowCompletion,
    FlowDefinitionRegistered,
    FlowHealth,
    FlowSent,
    IdentityLink,
    MessageStatus,
    NodeEvent,
    RejectedEvent,
    UserPreference,
    WebhookError,
)
from stream import metrics
from stream.exceptions import SinkWriteError
from warehouse import writer
from warehouse.client import connect
from warehouse.exceptions import WarehouseError
from warehouse.writer import FlowRegistration

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Batch:
    """One batch of events, grouped by kind; each Flow registration is parsed once, here, for the catalog and the
    writer alike."""

    statuses: list[MessageStatus] = field(default_factory=list)
    completions: list[FlowCompletion] = field(default_factory=list)
    flow_sends: list[FlowSent] = field(default_factory=list)
    node_events: list[NodeEvent] = field(default_factory=list)
    definitions: list[FlowRegistration] = field(default_factory=list)  # parsed once, here
    flow_health: list[FlowHealth] = field(default_factory=list)
    preferences: list[UserPreference] = field(default_factory=list)
    identity_links: list[IdentityLink] = field(default_factory=list)
    webhook_errors: list[WebhookError] = field(default_factory=list)
    rejected: list[RejectedEvent] = field(default_factory=list)
    invalid_definitions: int = 0  # registrations whose Flow JSON does not parse (the receiver refuses those)

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
            registration = FlowRegistration.parse(event)  # type: ignore[arg-type]
            if registration is None:
                self.invalid_definitions += 1
            else:
                self.definitions.append(registration)
        elif kind is FlowHealth:
            self.flow_health.append(event)  # type: ignore[arg-type]
        elif kind is UserPreference:
            self.preferences.append(event)  # type: ignore[arg-type]
        elif kind is IdentityLink:
            self.identity_links.append(event)  # type: ignore[arg-type]
        elif kind is WebhookError:
            self.webhook_errors.append(event)  # type: ignore[arg-type]
        else:
            self.rejected.append(event)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return (len(self.statuses) + len(self.completions) + len(self.flow_sends) + len(self.node_events)
                + len(self.definitions) + self.invalid_definitions + len(self.flow_health) + len(self.preferences)
                + len(self.identity_links) + len(self.webhook_errors) + len(self.rejected))


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
    """Writes each batch through the warehouse's write path (:mod:`warehouse.writer`), one insert per table."""

    def __init__(self, url: str, **options: float) -> None:
        super().__init__(**options)
        self._url = url
        self._client: Client | None = None

    def _connect(self) -> Client:
        if self._client is None:
            self._client = connect(self._url, compress="lz4", send_receive_timeout=60)
        return self._client

    def write(self, batch: Batch, *, done: set[str]) -> None:
        for insert in writer.inserts(
            statuses=batch.statuses, completions=batch.completions, flow_sends=batch.flow_sends,
            node_events=batch.node_events, definitions=batch.definitions, flow_health=batch.flow_health,
            preferences=batch.preferences, identity_links=batch.identity_links, webhook_errors=batch.webhook_errors,
            rejected=batch.rejected,
        ):
            if insert.table in done:
                continue
            try:
                writer.write(self._connect(), insert)
            except WarehouseError as exc:  # unreachable or an error answer alike: keep the batch, retry
                self._client = None
                raise SinkWriteError(insert.table, insert.rows, repr(exc)) from exc
            done.add(insert.table)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
