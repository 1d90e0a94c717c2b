"""Typed queries the dashboards (and tests, and data teams) run. Dashboards hold no SQL of their own.

Delivery figures never rescan raw statuses. They add up counts of distinct messages kept by
:mod:`warehouse.rollup`: whole hours of the range from ``message_status_hour_counts``, the other sealed
minutes (the range's ragged ends) from ``message_status_counts``, and the minutes after the seal (the live
edge, a few minutes) by counting the sets in ``message_status_minute``. Counts of different minutes add up
exactly (a message reaches a status at one timestamp), so the figures are the distinct messages, exact under
duplicates and replays, and a 30-day range costs a sum over 720 hours instead of a union of sets.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from clickhouse_connect.driver.client import Client

from contract.events import MESSAGE_STATUSES
from warehouse.error_codes import meaning
from warehouse.rollup import DELIVERY_HOURS, DELIVERY_SEALED
from warehouse.tables import (
    FLOW_COMPLETIONS_TABLE,
    MESSAGE_STATUS_COUNTS_TABLE,
    MESSAGE_STATUS_HOUR_COUNTS_TABLE,
    MESSAGE_STATUS_MINUTE_TABLE,
    MESSAGE_STATUSES_TABLE,
    MESSAGES_READ_UNDELIVERED_TABLE,
    ROLLUP_PROGRESS_TABLE,
    WEBHOOK_ERRORS_TABLE,
)

# The statuses delivery figures count: the contract's, except "played" (a voice message was played).
DELIVERY_STATUSES: tuple[str, ...] = tuple(status for status in MESSAGE_STATUSES if status != "played")

# The recipient countries of a filter (empty: all), on a row's ``country``.
COUNTRY_FILTER = "(empty({countries:Array(String)}) OR has({countries:Array(String)}, country))"
_PHONE_FILTER = ("(empty({phone_number_ids:Array(String)}) OR has({phone_number_ids:Array(String)}, phone_number_id))"
                 f" AND {COUNTRY_FILTER}")
_FILTER = (f"minute >= toStartOfMinute({{start:DateTime('UTC')}}) AND minute <= {{end:DateTime('UTC')}}"
           f" AND {_PHONE_FILTER}")
# The whole hours the hour counts answer for: [hours_from, least(hours_to, delivery_hours)).
_HOURS = (f"hour >= {{hours_from:DateTime('UTC')}} AND hour < least({{hours_to:DateTime('UTC')}}, "
          f"(SELECT toDateTime(max(until), 'UTC') FROM {ROLLUP_PROGRESS_TABLE} FINAL WHERE task = '{DELIVERY_HOURS}'))")
_OUTSIDE_HOURS = f"NOT ({_HOURS.replace('hour >=', 'minute >=').replace('hour <', 'minute <')})"
_SEALED = f"(SELECT toDateTime(max(until), 'UTC') FROM {ROLLUP_PROGRESS_TABLE} FINAL WHERE task = '{DELIVERY_SEALED}')"
# Distinct messages per (phone number, minute or hour, status, error code) in the filter's range: whole
# hours' sums, the other sealed minutes' counts, then the sets of the minutes after the seal counted minute
# by minute. Rows of different minutes add up exactly; each progress is read once (a scalar), so every
# minute comes from exactly one of the three.
_COUNTS = f"""
    counts AS (
        SELECT phone_number_id, hour AS minute, status, error_code, messages
        FROM {MESSAGE_STATUS_HOUR_COUNTS_TABLE} FINAL
        WHERE {_HOURS} AND {_PHONE_FILTER}
        UNION ALL
        SELECT phone_number_id, minute, status, error_code, messages
        FROM {MESSAGE_STATUS_COUNTS_TABLE} FINAL
        WHERE {_FILTER} AND minute < {_SEALED} AND {_OUTSIDE_HOURS}
        UNION ALL
        SELECT phone_number_id, minute, status, error_code, uniqExactMerge(messages) AS messages
        FROM {MESSAGE_STATUS_MINUTE_TABLE}
        WHERE {_FILTER} AND minute >= {_SEALED} AND {_OUTSIDE_HOURS}
        GROUP BY phone_number_id, minute, status, error_code
    )
"""
_HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class DeliveryFilter:
    """Time range (UTC, inclusive), business phone numbers and recipient countries (ISO 3166, ``""`` for unknown;
    empty = all)."""

    start: datetime
    end: datetime
    phone_number_ids: tuple[str, ...] = ()
    countries: tuple[str, ...] = ()

    @property
    def parameters(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "phone_number_ids": list(self.phone_number_ids),
                "countries": list(self.countries), **self.hours()}

    def hours(self, *, whole: bool = True) -> dict[str, datetime]:
        """The whole hours in the range (every minute of them in it), as hours_from / hours_to; none unless
        ``whole`` (a caller bucketing by less than an hour)."""
        first = self.start.replace(second=0, microsecond=0)
        start = first if first.minute == 0 else first.replace(minute=0) + _HOUR
        # An hour is whole when its last minute starts at or before ``end``.
        end = (self.end + timedelta(minutes=1)).replace(minute=0, second=0, microsecond=0)
        return {"hours_from": start, "hours_to": end if whole and end > start else start}


def stored_status_count(client: Client) -> int:
    """Status rows stored so far (physical rows, a liveness figure, not an analytic one)."""
    return int(client.command(f"SELECT count() FROM {MESSAGE_STATUSES_TABLE}"))  # type: ignore[arg-type]


def countries(client: Client) -> list[str]:
    """Every recipient country the delivery figures hold (``""``: unknown), for a filter's choices."""
    rows = client.query(f"SELECT DISTINCT country FROM {MESSAGE_STATUS_MINUTE_TABLE} ORDER BY 1").result_rows
    return [row[0] for row in rows]


def phone_number_ids(client: Client) -> list[str]:
    rows = client.query(f"SELECT DISTINCT phone_number_id FROM {MESSAGE_STATUS_MINUTE_TABLE} ORDER BY 1").result_rows
    return [row[0] for row in rows]


def delivery_totals(client: Client, where: DeliveryFilter) -> dict[str, int]:
    """Distinct messages per status in the range; ``delivered_or_read``: messages delivered in the range,
    counting a message read with no delivered status at all as delivered when it was read."""
    sql = f"""
        WITH {_COUNTS}
        SELECT status, sum(messages) FROM counts GROUP BY status
        UNION ALL
        SELECT 'read_undelivered', count()
        FROM {MESSAGES_READ_UNDELIVERED_TABLE} FINAL
        WHERE toStartOfMinute(read_at) >= toStartOfMinute({{start:DateTime('UTC')}})
          AND toStartOfMinute(read_at) <= {{end:DateTime('UTC')}} AND {_PHONE_FILTER}
    """
    totals = {status: 0 for status in (*DELIVERY_STATUSES, "delivered_or_read")}
    read_undelivered = 0
    for status, count in client.query(sql, parameters=where.parameters).result_rows:
        if status == "read_undelivered":
            read_undelivered = int(count)
        else:
            totals[status] = int(count)
    totals["delivered_or_read"] = totals.get("delivered", 0) + read_undelivered
    return totals


def delivery_timeseries(client: Client, where: DeliveryFilter, *, bucket_minutes: int = 1) -> pd.DataFrame:
    """Distinct messages per status per time bucket: columns bucket, status, messages."""
    sql = f"""
        WITH {_COUNTS}
        SELECT toStartOfInterval(minute, toIntervalMinute({{bucket:UInt32}})) AS bucket, status,
               sum(messages) AS messages
        FROM counts
        GROUP BY bucket, status
        ORDER BY bucket, status
    """
    # Hour counts fit buckets of whole hours only (the buckets start on the hour).
    hours = where.hours(whole=bucket_minutes % 60 == 0)
    frame = client.query_df(sql, parameters={**where.parameters, **hours, "bucket": bucket_minutes})
    if frame.empty:
        return pd.DataFrame({"bucket": pd.Series(dtype="datetime64[ns, UTC]"), "status": [], "messages": []})
    return frame


def failures_by_error_code(client: Client, where: DeliveryFilter) -> pd.DataFrame:
    """Failed messages per Meta error code: columns error_code, meaning, messages."""
    sql = f"""
        WITH {_COUNTS}
        SELECT error_code, sum(messages) AS messages
        FROM counts
        WHERE status = 'failed'
        GROUP BY error_code
        ORDER BY messages DESC, error_code
    """
    rows = client.query(sql, parameters=where.parameters).result_rows
    return pd.DataFrame(
        [(int(code), meaning(int(code)), int(messages)) for code, messages in rows],
        columns=["error_code", "meaning", "messages"],
    )


def delivery_by_phone_number(client: Client, where: DeliveryFilter) -> dict[str, dict[str, int]]:
    """Distinct messages per business phone number id and status."""
    sql = f"""
        WITH {_COUNTS}
        SELECT phone_number_id, status, sum(messages) FROM counts GROUP BY phone_number_id, status
    """
    result: dict[str, dict[str, int]] = {}
    for pnid, status, count in client.query(sql, parameters=where.parameters).result_rows:
        result.setdefault(pnid, {})[status] = int(count)
    return result


def stored_status_pairs(client: Client, *, except_phone_number_id: str = "") -> list[tuple[str, str]]:
    """Every stored (wamid, status), read with FINAL as data teams read it (one row per event)."""
    sql = f"SELECT wamid, status FROM {MESSAGE_STATUSES_TABLE} FINAL WHERE phone_number_id != {{p:String}}"
    return [(w, s) for w, s in client.query(sql, parameters={"p": except_phone_number_id}).result_rows]


def stored_completion_wamids(client: Client) -> list[str]:
    """The reply wamid of every stored Flow completion, read with FINAL."""
    return [w for (w,) in client.query(f"SELECT wamid FROM {FLOW_COMPLETIONS_TABLE} FINAL").result_rows]


def statuses_stored_of(client: Client, *, phone_number_id: str, wamids: list[str]) -> int:
    """How many of ``wamids`` have a stored status (physical rows, so it answers right after an insert)."""
    sql = (f"SELECT count() FROM {MESSAGE_STATUSES_TABLE} WHERE phone_number_id = {{p:String}}"
           " AND wamid IN {w:Array(String)}")
    return int(client.command(sql, parameters={"p": phone_number_id, "w": wamids}))  # type: ignore[arg-type]


def completions_of(client: Client, phone_number_ids: tuple[str, ...]) -> int:
    """Distinct Flow completions of these business numbers."""
    sql = f"SELECT uniqExact(wamid) FROM {FLOW_COMPLETIONS_TABLE} WHERE phone_number_id IN {{p:Array(String)}}"
    return int(client.command(sql, parameters={"p": list(phone_number_ids)}))  # type: ignore[arg-type]


def webhook_errors(client: Client, where: DeliveryFilter, *, limit: int = 200) -> pd.DataFrame:
    """Meta's value-level errors (of an account or number, not of one message) in the range, latest first:
    columns occurred_at, phone_number_id, field, code, title, message, details, href. Not by country: an error of
    the account has no recipient (the filter's ``countries`` do not apply)."""
    sql = f"""
        SELECT occurred_at, phone_number_id, field, code, title, message, details, href
        FROM {WEBHOOK_ERRORS_TABLE} FINAL
        WHERE occurred_at >= {{start:DateTime('UTC')}} AND occurred_at <= {{end:DateTime('UTC')}}
          AND (empty({{phone_number_ids:Array(String)}}) OR has({{phone_number_ids:Array(String)}}, phone_number_id))
        ORDER BY occurred_at DESC, event_id
        LIMIT {{limit:UInt32}}
    """
    rows = client.query(sql, parameters={**where.parameters, "limit": limit}).result_rows
    return pd.DataFrame(rows, columns=["occurred_at", "phone_number_id", "field", "code", "title", "message",
                                       "details", "href"])


def webhook_error_counts(client: Client, where: DeliveryFilter) -> dict[int, int]:
    """Distinct value-level errors in the range per Meta error code (not by country, as :func:`webhook_errors`)."""
    sql = f"""
        SELECT code, count() FROM {WEBHOOK_ERRORS_TABLE} FINAL
        WHERE occurred_at >= {{start:DateTime('UTC')}} AND occurred_at <= {{end:DateTime('UTC')}}
          AND (empty({{phone_number_ids:Array(String)}}) OR has({{phone_number_ids:Array(String)}}, phone_number_id))
        GROUP BY code
    """
    return {int(code): int(n) for code, n in client.query(sql, parameters=where.parameters).result_rows}
