"""Retention: how long each warehouse table keeps a row (a ClickHouse TTL), from one number of days.

Raw tables, which the stream writes from events, keep a row ``days`` after its event's time. Derived
tables, which materialized views fill from raw tables, keep a row ``days`` after the latest event time it
summarises, so no derived row expires before a raw row that fed it. Registered flow definitions, the
aggregates over all time without a time column (``flow_selections``, ``flow_health_current``) and
``schema_migrations`` are kept forever, as is everything when ``days`` is 0.

ClickHouse removes an expired row at the next merge of its part, so a row may outlive its TTL by hours,
never the reverse. Setting a TTL rewrites the TTL of every existing part in the background.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

from warehouse.tables import (
    FLOW_COMPLETIONS_TABLE,
    FLOW_HEALTH_EVENTS_TABLE,
    FLOW_HOUR_PATHS_TABLE,
    FLOW_HOUR_VISITS_TABLE,
    FLOW_NODE_EVENTS_TABLE,
    FLOW_SENDS_BY_TIME_TABLE,
    FLOW_SENDS_TABLE,
    FLOW_SESSION_OPENS_TABLE,
    FLOW_SESSION_ROWS_TABLE,
    FLOW_SESSIONS_TABLE,
    FLOW_VARIANTS_TABLE,
    IDENTITY_LINKS_TABLE,
    MESSAGE_HOUR_COUNTS_TABLE,
    MESSAGE_ROWS_TABLE,
    MESSAGE_STATE_TABLE,
    MESSAGE_STATUS_COUNTS_TABLE,
    MESSAGE_STATUS_HOUR_COUNTS_TABLE,
    MESSAGE_STATUS_MINUTE_TABLE,
    MESSAGE_STATUSES_TABLE,
    MESSAGES_READ_UNDELIVERED_TABLE,
    NEVER_DATETIME,
    OUTBOUND_MESSAGES_TABLE,
    PERSON_HOUR_SETS_TABLE,
    PERSON_KEY_HOURS_TABLE,
    PERSON_LINKS_TABLE,
    REJECTED_EVENTS_TABLE,
    USER_PREFERENCES_TABLE,
    WEBHOOK_ERRORS_TABLE,
)

logger = logging.getLogger(__name__)

# The TTL clause in system.tables.engine_full, e.g. "... ORDER BY x TTL occurred_at + toIntervalDay(400) SETTINGS ...".
_TTL_CLAUSE = re.compile(r" TTL (.+?)(?: SETTINGS .*)?$")


@dataclass(frozen=True)
class Retention:
    """A table's rows expire ``days`` after ``kept_from``, an expression over the row's columns."""

    table: str
    kept_from: str
    derived: bool

    def ttl(self, days: int) -> str:
        """The TTL expression for ``days`` (at least 1)."""
        return f"{self.kept_from} + INTERVAL {days} DAY"


RAW = (
    Retention(MESSAGE_STATUSES_TABLE, "occurred_at", derived=False),
    Retention(FLOW_COMPLETIONS_TABLE, "occurred_at", derived=False),
    Retention(FLOW_SENDS_TABLE, "sent_at", derived=False),
    Retention(FLOW_NODE_EVENTS_TABLE, "occurred_at", derived=False),
    Retention(FLOW_HEALTH_EVENTS_TABLE, "occurred_at", derived=False),
    Retention(REJECTED_EVENTS_TABLE, "received_at", derived=False),
    Retention(USER_PREFERENCES_TABLE, "occurred_at", derived=False),
    Retention(IDENTITY_LINKS_TABLE, "occurred_at", derived=False),
    Retention(WEBHOOK_ERRORS_TABLE, "occurred_at", derived=False),
)
# Each derived row's time is the latest event time of the raw rows it holds: the end of its minute, the
# session's last activity, the latest of a message's first status times ("never" left out).
DERIVED = (
    Retention(MESSAGE_STATUS_MINUTE_TABLE, "minute + INTERVAL 1 MINUTE", derived=True),
    Retention(MESSAGE_STATE_TABLE,
              f"arrayMax(arrayFilter(t -> t < toDateTime('{NEVER_DATETIME}', 'UTC'), "
              "[sent_at, delivered_at, read_at, failed_at, toDateTime(0, 'UTC')]))", derived=True),
    Retention(FLOW_SESSIONS_TABLE, "last_activity_at", derived=True),
    Retention(FLOW_SENDS_BY_TIME_TABLE, "sent_at", derived=True),
    Retention(FLOW_VARIANTS_TABLE, "last_sent_at", derived=True),
    Retention(MESSAGE_STATUS_COUNTS_TABLE, "minute + INTERVAL 1 MINUTE", derived=True),
    Retention(MESSAGE_STATUS_HOUR_COUNTS_TABLE, "hour + INTERVAL 1 HOUR", derived=True),
    Retention(MESSAGES_READ_UNDELIVERED_TABLE, "read_at", derived=True),
    Retention(FLOW_SESSION_ROWS_TABLE, "last_activity", derived=True),
    Retention(FLOW_HOUR_PATHS_TABLE, "last_activity", derived=True),
    Retention(FLOW_HOUR_VISITS_TABLE, "last_activity", derived=True),
    Retention(PERSON_LINKS_TABLE, "seen_at", derived=True),
    Retention(OUTBOUND_MESSAGES_TABLE, "last_at", derived=True),
    Retention(FLOW_SESSION_OPENS_TABLE, "opened_at", derived=True),
    Retention(MESSAGE_ROWS_TABLE, "last_at", derived=True),
    Retention(MESSAGE_HOUR_COUNTS_TABLE, "last_at", derived=True),
    Retention(PERSON_HOUR_SETS_TABLE, "last_at", derived=True),
    Retention(PERSON_KEY_HOURS_TABLE, "last_at", derived=True),
)
RETENTIONS = RAW + DERIVED


def apply_retention(client: Client, days: int) -> list[str]:
    """Give every table of :data:`RETENTIONS` its TTL for ``days`` (0: none); returns the tables changed.

    Idempotent: a table whose TTL is already the wanted one is left alone (no ALTER, no rewrite of parts).
    """
    if days < 0:
        raise ValueError(f"retention days must be 0 (keep forever) or more, got {days}")
    engines: dict[str, str] = {name: engine_full for name, engine_full in client.query(
        "SELECT name, engine_full FROM system.tables WHERE database = currentDatabase()").result_rows}
    changed = []
    for retention in RETENTIONS:
        current = current_ttl(engines[retention.table])
        if days == 0:
            if current is None:
                continue
            client.command(f"ALTER TABLE {retention.table} REMOVE TTL")
        else:
            wanted = retention.ttl(days)
            if current == _formatted(client, wanted):
                continue
            client.command(f"ALTER TABLE {retention.table} MODIFY TTL {wanted}")
        logger.info("retention of %s: %s", retention.table, f"{days} days" if days else "forever")
        changed.append(retention.table)
    return changed


def current_ttl(engine_full: str) -> str | None:
    """The TTL expression of a table as ClickHouse shows it in ``system.tables.engine_full``; None without one."""
    match = _TTL_CLAUSE.search(engine_full)
    return match.group(1) if match else None


def _formatted(client: Client, expression: str) -> str:
    """The expression as ClickHouse formats it (as in ``engine_full``)."""
    formatted = client.query("SELECT formatQuerySingleLine({sql:String})",
                             parameters={"sql": f"SELECT {expression}"}).result_rows[0][0]
    return str(formatted).removeprefix("SELECT ")
