"""The rollup worker: one process beside the stream workers that keeps the warehouse's sealed figures.

Every ``rollup_interval_s`` it runs a pass of :class:`warehouse.rollup.DeliveryRollup` (sealed delivery
counts), of :class:`warehouse.resolution.SessionRollup` (resolved Flow sessions), of
:class:`warehouse.message_hours.MessageRollup` (resolved messages and their hour sums, at most every
``MESSAGE_PASS_INTERVAL_S``) and of
:class:`warehouse.identity.PersonResolver` (one person across phone numbers and BSUIDs), reading as the
warehouse analyst and inserting as the writer. One runs per warehouse (passes are idempotent: a second
one only repeats work). When the warehouse is away the pass fails, is counted, and the next one tries
again; the dashboards' figures stay exact meanwhile (they merge sets for whatever is not sealed).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from datetime import UTC

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from config.settings import Settings
from warehouse.client import connect
from warehouse.exceptions import WarehouseError
from warehouse.identity import PersonResolver
from warehouse.message_hours import MESSAGE_PASS_INTERVAL_S, MessageRollup
from warehouse.resolution import SessionRollup
from warehouse.rollup import EPOCH, DeliveryRollup, server_now

logger = logging.getLogger(__name__)

SEALED_UNTIL = Gauge(
    "flowscope_rollup_sealed_until_timestamp_seconds",
    "Every minute of delivery counts before this time is sealed (0: nothing yet).",
)
SEALED_PERIODS = Counter(
    "flowscope_rollup_sealed_periods_total", "One-minute periods of delivery counts sealed (those with a status)."
)
RESEALED_PERIODS = Counter(
    "flowscope_rollup_resealed_periods_total",
    "Sealed one-minute periods (per phone number) counted again after a status landed in them late.",
)
RESOLVED_IDENTIFIERS = Counter(
    "flowscope_rollup_resolved_identifiers_total",
    "Identifiers (hashed phone numbers and BSUIDs) whose person was written to person_map.",
)
RESOLVED_SESSIONS = Counter(
    "flowscope_rollup_resolved_sessions_total", "Flow sessions resolved (written to flow_session_rows)."
)
RESOLVED_MESSAGES = Counter(
    "flowscope_rollup_resolved_messages_total",
    "Outbound messages resolved (written to message_rows, their hours summed in message_hour_counts).",
)
PASS_SECONDS = Histogram(
    "flowscope_rollup_pass_duration_seconds",
    "Time of one rollup pass.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
PASS_FAILURES = Counter(
    "flowscope_rollup_pass_failures_total", "Rollup passes that failed (the warehouse was away or refused)."
)


def run(settings: Settings, *, stop: threading.Event) -> None:
    """Run passes until ``stop`` is set."""
    if settings.rollup_metrics_port:
        start_http_server(settings.rollup_metrics_port, addr=settings.stream_metrics_host)
    rollup: DeliveryRollup | None = None
    persons: PersonResolver | None = None
    messages_due = 0.0  # monotonic time of the next message pass
    logger.info("rollup: a pass every %.1f s, minutes sealed after %d s",
                settings.rollup_interval_s, settings.rollup_seal_after_s)
    while not stop.is_set():
        started = time.monotonic()
        try:
            if rollup is None:
                rollup = DeliveryRollup(connect(settings.warehouse_url_for("analyst")),
                                        writer=connect(settings.warehouse_url_for("writer")),
                                        seal_after_s=settings.rollup_seal_after_s,
                                        reads_interval_s=settings.rollup_reads_interval_s)
                persons = PersonResolver(rollup.client, writer=rollup.writer)
            done = rollup.run_once()
            if not done.waited:
                sessions = SessionRollup(rollup.client, writer=rollup.writer).run_once(server_now(rollup.client))
                RESOLVED_SESSIONS.inc(sessions.sessions)
                if time.monotonic() >= messages_due:
                    messages_due = time.monotonic() + MESSAGE_PASS_INTERVAL_S
                    RESOLVED_MESSAGES.inc(MessageRollup(rollup.client, writer=rollup.writer).run_once(
                        server_now(rollup.client)).messages)
                if persons is not None:
                    RESOLVED_IDENTIFIERS.inc(persons.run_once(server_now(rollup.client)).written)
        except WarehouseError as exc:
            PASS_FAILURES.inc()
            logger.warning("rollup pass failed (%s); retrying", exc)
            if rollup is not None:
                rollup.close()
            rollup = persons = None
        else:
            SEALED_PERIODS.inc(done.sealed_minutes)
            RESEALED_PERIODS.inc(done.resealed_minutes)
            if done.sealed_until > EPOCH:
                SEALED_UNTIL.set(done.sealed_until.replace(tzinfo=UTC).timestamp())
            PASS_SECONDS.observe(time.monotonic() - started)
        stop.wait(max(0.0, settings.rollup_interval_s - (time.monotonic() - started)))
    if rollup is not None:
        rollup.close()


def main(settings: Settings) -> int:
    """The ``flowscope warehouse rollup`` process: passes until SIGTERM or Ctrl-C."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    run(settings, stop=stop)
    return 0
