"""Rejected events: well-formed input the receiver could not use, with the reason and the raw fragment.

Reads ``rejected_events`` with FINAL, so a rejection redelivered by Meta (same source, reason and
fragment, hence the same event_id) counts once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
from clickhouse_connect.driver.client import Client

from warehouse.tables import REJECTED_EVENTS_TABLE

BY_REASON_COLUMNS = ("source", "reason", "events", "last_received_at")
LATEST_COLUMNS = ("received_at", "source", "reason", "waba_id", "phone_number_id", "raw")

_RANGE = "received_at >= {start:DateTime('UTC')} AND received_at <= {end:DateTime('UTC')}"


def by_reason(client: Client, start: datetime, end: datetime) -> pd.DataFrame:
    """Rejections received in [start, end] (UTC) per source and reason, most frequent first."""
    sql = f"""
        SELECT source, reason, count() AS events, max(received_at) AS last_received_at
        FROM {REJECTED_EVENTS_TABLE} FINAL
        WHERE {_RANGE}
        GROUP BY source, reason
        ORDER BY events DESC, source, reason
    """
    parameters: dict[str, Any] = {"start": start, "end": end}
    result = client.query(sql, parameters=parameters)
    return pd.DataFrame(result.result_rows, columns=list(BY_REASON_COLUMNS))


def latest(client: Client, start: datetime, end: datetime, limit: int = 100) -> pd.DataFrame:
    """The ``limit`` newest rejections received in [start, end] (UTC), newest first, with the raw fragment."""
    sql = f"""
        SELECT {", ".join(LATEST_COLUMNS)}
        FROM {REJECTED_EVENTS_TABLE} FINAL
        WHERE {_RANGE}
        ORDER BY received_at DESC, event_id
        LIMIT {{limit:UInt32}}
    """
    parameters: dict[str, Any] = {"start": start, "end": end, "limit": limit}
    result = client.query(sql, parameters=parameters)
    return pd.DataFrame(result.result_rows, columns=list(LATEST_COLUMNS))
