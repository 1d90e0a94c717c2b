"""Freshness of the warehouse: the newest event stored, the newest insert, and how long ago they were.

Read from the warehouse's catalogue of data parts (``system.parts``), never from the rows, so it costs the same
at a hundred million events as at ten: for the raw event tables the stream writes (statuses, screen events,
Flow sends, completions), the newest part's write time (an insert, or a merge of inserted parts: merges follow
inserts by seconds to minutes) and the largest event time the parts hold (their partition key's min-max index,
to the second; tables not partitioned by time have none). An event time is capped at the newest write: an event
cannot be newer than its storing, so one sender's clock running ahead never makes the data look fresh. Ages are
measured against the warehouse's own clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from clickhouse_connect.driver.client import Client

from warehouse.tables import (
    FLOW_COMPLETIONS_TABLE,
    FLOW_NODE_EVENTS_TABLE,
    FLOW_SENDS_TABLE,
    MESSAGE_STATUSES_TABLE,
)

# The raw event tables the stream writes.
EVENT_TABLES: tuple[str, ...] = (
    MESSAGE_STATUSES_TABLE, FLOW_NODE_EVENTS_TABLE, FLOW_SENDS_TABLE, FLOW_COMPLETIONS_TABLE)


@dataclass(frozen=True)
class Freshness:
    """The newest event and insert (UTC, naive), and their ages in seconds; all None when nothing is stored."""

    latest_event_at: datetime | None
    latest_insert_at: datetime | None
    behind_s: float | None  # from the newest insert to now: how long the pipeline has written nothing
    event_age_s: float | None  # from the newest event to now


def freshness(client: Client) -> Freshness:
    """How fresh the stored events are, by the warehouse's clock."""
    sql = """
        SELECT maxOrNull(modification_time) AS stored_at,
               maxOrNull(if(max_time > toDateTime(0), max_time, NULL)) AS event_at, now() AS now
        FROM system.parts
        WHERE database = currentDatabase() AND active AND rows > 0 AND table IN {tables:Array(String)}
    """
    stored_at, event_at, now = client.query(sql, parameters={"tables": list(EVENT_TABLES)}).result_rows[0]
    if event_at is not None and stored_at is not None:
        event_at = min(event_at, stored_at)
    return Freshness(
        latest_event_at=None if event_at is None else event_at.replace(tzinfo=None),
        latest_insert_at=None if stored_at is None else stored_at.replace(tzinfo=None),
        behind_s=_age_s(stored_at, now),
        event_age_s=_age_s(event_at, now),
    )


def _age_s(at: datetime | None, now: datetime) -> float | None:
    if at is None:
        return None
    return (now.replace(tzinfo=None) - at.replace(tzinfo=None)).total_seconds()
