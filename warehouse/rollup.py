"""The delivery rollup: exact counts of sealed minutes, so that long ranges never merge sets of messages.

``message_status_minute`` keeps per minute the *set* of messages (a ``uniqExact`` state) that reached each
status. Merging those sets over 30 days unions tens of millions of hashes; summing counts does not. Counts of
different minutes add up exactly because a message reaches a status once, at one timestamp (Meta's retries
repeat it): for one status, no message is in two minutes' sets.

A pass (:meth:`DeliveryRollup.run_once`):

1. *Seal* every minute older than ``seal_after_s`` not sealed yet: count its sets into
   ``message_status_counts``, then move ``delivery_sealed`` in ``rollup_progress`` past it. Readers sum counts
   before that point and merge sets after it (:mod:`warehouse.queries`), so a figure is exact whether or not
   the rollup has caught up; only its speed depends on it.
   Once every minute of an hour is sealed, sum the hour's minute counts into ``message_status_hour_counts``
   and move ``delivery_hours`` past it: long ranges read whole hours there (720 rows a key for 30 days).
2. *Reseal* sealed minutes that a late status landed in: every insert of statuses records the (phone number,
   minute) pairs it touched in ``message_status_touches``; a pass counts again those touched since the previous
   pass began (less a margin for inserts still in flight), and sums again the sealed hours they are in. A new
   count replaces the old one (ReplacingMergeTree on ``sealed_at``).
3. Every ``reads_interval_s``, refresh ``messages_read_undelivered``: messages with a read status but no
   delivered one (the new reads looked up in ``message_delivered_index``, see
   :meth:`DeliveryRollup.refresh_read_undelivered`). "Delivered" in a range is the delivered statuses in it
   plus these by the minute of their read (read implies delivered), which over all time is exactly the
   messages delivered or read.

Everything is computed from what the warehouse holds: passes are idempotent, and any number of them, crashed
or repeated, leaves the same counts. The rollup writes as the warehouse *writer* (plain INSERTs of the rows it
computed), and reads as the read-only analyst: neither role may do more than that.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from clickhouse_connect.driver.client import Client

from warehouse.tables import (
    MESSAGE_DELIVERED_INDEX_TABLE,
    MESSAGE_READ_TOUCHES_TABLE,
    MESSAGE_STATUS_COUNTS_TABLE,
    MESSAGE_STATUS_HOUR_COUNTS_TABLE,
    MESSAGE_STATUS_MINUTE_TABLE,
    MESSAGE_STATUS_TOUCHES_TABLE,
    MESSAGE_STATUSES_TABLE,
    MESSAGES_READ_UNDELIVERED_TABLE,
    ROLLUP_PROGRESS_TABLE,
)

logger = logging.getLogger(__name__)

# rollup_progress task: every minute before its ``until`` has its counts in message_status_counts.
DELIVERY_SEALED = "delivery_sealed"
# rollup_progress task: every hour before its ``until`` has its counts in message_status_hour_counts.
DELIVERY_HOURS = "delivery_hours"
# rollup_progress task: touches up to its ``until`` (less the margin) have been resealed.
DELIVERY_TOUCHES = "delivery_touches"
# rollup_progress task: reads inserted up to its ``until`` (less the margin) have been checked.
READS_CHECKED = "reads_checked"
# rollup_progress task: a rebuild (warehouse/rebuild.py) runs until its ``until``; passes wait meanwhile.
REBUILDING = "rebuilding"
# Before any seal: the readers' "nothing sealed" (rollup_progress has no row; max() of nothing is the epoch).
EPOCH = datetime(1970, 1, 1)
# Touches recorded up to this long before a pass began are read again by the next one: an insert's touch is
# stamped when its materialized view runs, and the insert may become visible a little later.
TOUCH_MARGIN = timedelta(seconds=60)
# The first seal of a warehouse full of history counts it a day at a time (bounded memory per query).
SEAL_CHUNK = timedelta(days=1)
HOUR = timedelta(hours=1)
COUNT_COLUMNS = ("phone_number_id", "minute", "status", "error_code", "country", "messages", "sealed_at")
HOUR_COUNT_COLUMNS = ("phone_number_id", "hour", "status", "error_code", "country", "messages", "sealed_at")
READ_UNDELIVERED_COLUMNS = ("phone_number_id", "wamid", "read_at", "country", "version", "is_deleted")

_COUNTS_OF_MINUTES = f"""
    SELECT phone_number_id, minute, status, error_code, country, uniqExactMerge(messages)
    FROM {MESSAGE_STATUS_MINUTE_TABLE}
    WHERE minute >= {{start:DateTime('UTC')}} AND minute < {{end:DateTime('UTC')}}
    GROUP BY phone_number_id, minute, status, error_code, country
"""
_COUNTS_OF_TOUCHED = f"""
    SELECT phone_number_id, minute, status, error_code, country, uniqExactMerge(messages)
    FROM {MESSAGE_STATUS_MINUTE_TABLE}
    WHERE has({{minutes:Array(DateTime('UTC'))}}, minute)
      AND has({{phone_number_ids:Array(String)}}, phone_number_id)
    GROUP BY phone_number_id, minute, status, error_code, country
"""
# An hour's counts: the sum of its sealed minutes' counts.
_HOURS_OF_MINUTES = f"""
    SELECT phone_number_id, toStartOfHour(minute) AS hour, status, error_code, country, sum(messages)
    FROM {MESSAGE_STATUS_COUNTS_TABLE} FINAL
    WHERE minute >= {{start:DateTime('UTC')}} AND minute < {{end:DateTime('UTC')}}
    GROUP BY phone_number_id, hour, status, error_code, country
"""
_HOURS_OF_TOUCHED = f"""
    SELECT phone_number_id, toStartOfHour(minute) AS hour, status, error_code, country, sum(messages)
    FROM {MESSAGE_STATUS_COUNTS_TABLE} FINAL
    WHERE toStartOfHour(minute) IN {{hours:Array(DateTime('UTC'))}}
      AND phone_number_id IN {{phone_number_ids:Array(String)}}
    GROUP BY phone_number_id, hour, status, error_code, country
"""
_TOUCHED = f"""
    SELECT DISTINCT phone_number_id, minute
    FROM {MESSAGE_STATUS_TOUCHES_TABLE}
    WHERE touched_at >= {{since:DateTime64(3, 'UTC')}} AND minute < {{sealed:DateTime('UTC')}}
"""
_READ_UNDELIVERED_NOW = f"""
    SELECT phone_number_id, wamid, minIf(occurred_at, status = 'read') AS read_at,
           maxIf(country, status = 'read') AS country
    FROM {MESSAGE_STATUSES_TABLE}
    WHERE status IN ('delivered', 'read')
    GROUP BY phone_number_id, wamid
    HAVING countIf(status = 'delivered') = 0
"""
_READ_UNDELIVERED_STORED = (f"SELECT phone_number_id, wamid, read_at, country FROM {MESSAGES_READ_UNDELIVERED_TABLE} "
                            "FINAL")
# Members of the set that have a delivered status by now (key lookups in the index).
_MEMBERS_DELIVERED = f"""
    SELECT phone_number_id, wamid FROM {MESSAGES_READ_UNDELIVERED_TABLE} FINAL
    WHERE wamid IN (SELECT wamid FROM {MESSAGE_DELIVERED_INDEX_TABLE}
                    WHERE wamid IN (SELECT wamid FROM {MESSAGES_READ_UNDELIVERED_TABLE} FINAL))
"""
# Reads inserted since a time whose message has no delivered status (key lookups in the index).
_NEW_READS_UNDELIVERED = f"""
    SELECT phone_number_id, wamid, min(read_at), max(country)
    FROM {MESSAGE_READ_TOUCHES_TABLE}
    WHERE touched_at >= {{since:DateTime64(3, 'UTC')}}
      AND wamid NOT IN (SELECT wamid FROM {MESSAGE_DELIVERED_INDEX_TABLE} WHERE wamid IN (
          SELECT wamid FROM {MESSAGE_READ_TOUCHES_TABLE} WHERE touched_at >= {{since:DateTime64(3, 'UTC')}}))
    GROUP BY phone_number_id, wamid
"""


@dataclass(frozen=True)
class RollupPass:
    """What one pass did."""

    sealed_until: datetime  # every minute before it is sealed (EPOCH: none yet)
    sealed_minutes: int  # minutes newly sealed (with at least one status)
    resealed_minutes: int  # sealed (phone number, minute) pairs counted again after a late status
    reads_refreshed: bool
    read_undelivered_changes: int  # rows written to messages_read_undelivered (new, moved or deleted)
    waited: bool = False  # a rebuild was running: the pass did nothing


def progress(client: Client, task: str) -> datetime | None:
    """Where ``task`` got to, or None before its first pass."""
    rows = client.query(
        f"SELECT until FROM {ROLLUP_PROGRESS_TABLE} FINAL WHERE task = {{task:String}}", parameters={"task": task}
    ).result_rows
    return _naive(rows[0][0]) if rows else None


def server_now(client: Client) -> datetime:
    """The warehouse's clock (touches are stamped with it), as naive UTC."""
    return _naive(client.query("SELECT now64(3, 'UTC')").result_rows[0][0])


class DeliveryRollup:
    """Seals minutes of delivery counts; see the module docstring."""

    def __init__(self, client: Client, *, seal_after_s: float, reads_interval_s: float,
                 touch_margin: timedelta = TOUCH_MARGIN, writer: Client | None = None) -> None:
        """``client`` reads; ``writer`` (default: ``client``) inserts the rows computed."""
        self.client = client
        self.writer = writer if writer is not None else client
        self.touch_margin = touch_margin
        self.seal_after = timedelta(seconds=seal_after_s)
        self.reads_interval = timedelta(seconds=reads_interval_s)
        self._reads_refreshed_at: datetime | None = None

    def close(self) -> None:
        self.client.close()
        if self.writer is not self.client:
            self.writer.close()

    def run_once(self) -> RollupPass:
        client = self.client
        began = server_now(client)
        sealed = progress(client, DELIVERY_SEALED) or EPOCH
        rebuilding = progress(client, REBUILDING)
        if rebuilding is not None and rebuilding > began:
            logger.info("rollup: waiting, a rebuild runs (its lease ends %s)", rebuilding)
            return RollupPass(sealed, 0, 0, False, 0, waited=True)
        touches_since = progress(client, DELIVERY_TOUCHES)
        horizon = _minute(began - self.seal_after)

        resealed = 0
        if touches_since is not None and sealed > EPOCH:
            touched = client.query(
                _TOUCHED, parameters={"since": touches_since - self.touch_margin, "sealed": sealed}
            ).result_rows
            if touched:
                rows = client.query(_COUNTS_OF_TOUCHED, parameters={
                    "minutes": sorted({minute for _, minute in touched}),
                    "phone_number_ids": sorted({pnid for pnid, _ in touched}),
                }).result_rows
                self._write_counts(rows, began)
                resealed = len(touched)
                hours_until = progress(client, DELIVERY_HOURS) or EPOCH
                hours = sorted({h for _, minute in touched if (h := _hour(minute)) + HOUR <= hours_until})
                if hours:
                    self._write_counts(client.query(_HOURS_OF_TOUCHED, parameters={
                        "hours": hours, "phone_number_ids": sorted({pnid for pnid, _ in touched}),
                    }).result_rows, began, table=MESSAGE_STATUS_HOUR_COUNTS_TABLE)

        sealed_minutes = 0
        if horizon > sealed:
            start = sealed if sealed > EPOCH else self._first_minute() or horizon
            while start < horizon:  # a day at a time, each day's progress recorded as it is sealed
                end = min(horizon, start + SEAL_CHUNK)
                rows = client.query(_COUNTS_OF_MINUTES, parameters={"start": start, "end": end}).result_rows
                self._write_counts(rows, began)
                self._set_progress(DELIVERY_SEALED, end, began)
                sealed_minutes += len({row[1] for row in rows})
                start = end
            sealed = horizon
        if sealed > EPOCH:
            self.seal_hours(sealed, began)
        self._set_progress(DELIVERY_TOUCHES, began, began)

        refreshed, changes = False, 0
        if self._reads_refreshed_at is None or began - self._reads_refreshed_at >= self.reads_interval:
            changes = self.refresh_read_undelivered(began)
            self._reads_refreshed_at = began
            refreshed = True
        if sealed_minutes or resealed or changes:
            logger.info("rollup: sealed %d minutes (until %s), resealed %d, %d read-undelivered changes",
                        sealed_minutes, sealed, resealed, changes)
        return RollupPass(sealed, sealed_minutes, resealed, refreshed, changes)

    def seal_hours(self, sealed: datetime, sealed_at: datetime) -> int:
        """Sum into hour counts every hour not summed yet whose minutes are all sealed (before ``sealed``), a
        day at a time, each day's progress recorded once written; returns the hours summed."""
        done = progress(self.client, DELIVERY_HOURS)
        start = done if done is not None else _hour(self._first_minute() or sealed)
        target = _hour(sealed)
        return self._sum_hours(start, target, sealed_at, record=True)

    def _sum_hours(self, start: datetime, end: datetime, sealed_at: datetime, *, record: bool) -> int:
        """Sum the hours in [start, end) from their minute counts, a day at a time (``record``: moving
        ``delivery_hours`` past each day once written); returns the hours with a count."""
        summed = 0
        while start < end:
            stop = min(end, start + SEAL_CHUNK)
            rows = self.client.query(_HOURS_OF_MINUTES, parameters={"start": start, "end": stop}).result_rows
            self._write_counts(rows, sealed_at, table=MESSAGE_STATUS_HOUR_COUNTS_TABLE)
            if record:
                self._set_progress(DELIVERY_HOURS, stop, sealed_at)
            summed += len({row[1] for row in rows})
            start = stop
        return summed

    def reseal(self, *, since: datetime | None, until: datetime | None, sealed_at: datetime) -> int:
        """Count again the sealed minutes in [since, until) (default: all sealed) and drop keys not counted now.

        For a rebuild, as the admin: the new counts replace the old ones key by key (no moment without a count),
        then keys counted before ``sealed_at`` and not again (a derivation fixed, say) are deleted.
        Returns the minutes counted.
        """
        sealed = progress(self.client, DELIVERY_SEALED)
        counted = 0
        if sealed is not None:
            start = since if since is not None else self._first_minute() or sealed
            end = min(until, sealed) if until is not None else sealed
            chunk = start
            while chunk < end:
                stop = min(end, chunk + SEAL_CHUNK)
                rows = self.client.query(_COUNTS_OF_MINUTES, parameters={"start": chunk, "end": stop}).result_rows
                self._write_counts(rows, sealed_at)
                counted += len({row[1] for row in rows})
                chunk = stop
            if start < end:
                self.writer.command(
                    f"DELETE FROM {MESSAGE_STATUS_COUNTS_TABLE} WHERE minute >= {{start:DateTime('UTC')}} "
                    "AND minute < {end:DateTime('UTC')} AND sealed_at < {sealed_at:DateTime64(3, 'UTC')}",
                    parameters={"start": start, "end": end, "sealed_at": sealed_at},
                    settings={"lightweight_deletes_sync": 2})
                self._resum_hours(start, end, sealed_at)
        self.refresh_read_undelivered(sealed_at, full=True)
        return counted

    def _resum_hours(self, start: datetime, end: datetime, sealed_at: datetime) -> None:
        """Sum again the summed hours that minutes in [start, end) belong to; drop keys not summed now."""
        hours_until = progress(self.client, DELIVERY_HOURS)
        if hours_until is None:
            return
        first, last = _hour(start), min(hours_until, _hour(end - timedelta(microseconds=1)) + HOUR)
        self._sum_hours(first, last, sealed_at, record=False)
        if first < last:
            self.writer.command(
                f"DELETE FROM {MESSAGE_STATUS_HOUR_COUNTS_TABLE} WHERE hour >= {{start:DateTime('UTC')}} "
                "AND hour < {end:DateTime('UTC')} AND sealed_at < {sealed_at:DateTime64(3, 'UTC')}",
                parameters={"start": first, "end": last, "sealed_at": sealed_at},
                settings={"lightweight_deletes_sync": 2})

    def refresh_read_undelivered(self, version: datetime, *, full: bool = False) -> int:
        """Bring ``messages_read_undelivered`` up to date; returns the rows written (new, moved or deleted).

        Incremental once it has run: the reads inserted since the previous refresh (``message_read_touches``,
        less the touch margin) and the current members are looked up by key in ``message_delivered_index``;
        reads without a delivered status join, members that got one leave. Cost: the new reads, not the
        history. ``full`` (and the first refresh) recompute the set from every status stored.
        """
        checked = None if full else progress(self.client, READS_CHECKED)
        # (phone number, wamid) → (read_at, country): the earliest read, the largest country its reads carried.
        stored = {(pnid, wamid): (read_at, country) for pnid, wamid, read_at, country in
                  self.client.query(_READ_UNDELIVERED_STORED).result_rows}
        if checked is None:
            now = {(pnid, wamid): (read_at, country) for pnid, wamid, read_at, country in
                   self.client.query(_READ_UNDELIVERED_NOW).result_rows}
        else:
            since = {"since": checked - self.touch_margin}
            now = dict(stored)
            for pnid, wamid in self.client.query(_MEMBERS_DELIVERED).result_rows:
                now.pop((pnid, wamid), None)
            for pnid, wamid, read_at, country in self.client.query(
                    _NEW_READS_UNDELIVERED, parameters=since).result_rows:
                key = (pnid, wamid)
                old_at, old_country = now.get(key, (read_at, country))
                now[key] = (min(read_at, old_at), max(country, old_country))
        rows: list[Sequence[Any]] = [
            (pnid, wamid, read_at, country, version, 0) for (pnid, wamid), (read_at, country) in now.items()
            if stored.get((pnid, wamid)) != (read_at, country)
        ]
        rows += [(pnid, wamid, read_at, country, version, 1) for (pnid, wamid), (read_at, country) in stored.items()
                 if (pnid, wamid) not in now]
        if rows:
            self.writer.insert(MESSAGES_READ_UNDELIVERED_TABLE, rows, column_names=list(READ_UNDELIVERED_COLUMNS))
        self._set_progress(READS_CHECKED, version, version)
        return len(rows)

    def _first_minute(self) -> datetime | None:
        rows = self.client.query(f"SELECT min(minute), count() FROM {MESSAGE_STATUS_MINUTE_TABLE}").result_rows
        return _naive(rows[0][0]) if rows and rows[0][1] else None

    def _write_counts(self, rows: Sequence[Sequence[Any]], sealed_at: datetime, *,
                      table: str = MESSAGE_STATUS_COUNTS_TABLE) -> None:
        """Minute counts (or, with ``table``, hour counts: the same columns with ``hour`` for ``minute``)."""
        if rows:
            columns = COUNT_COLUMNS if table == MESSAGE_STATUS_COUNTS_TABLE else HOUR_COUNT_COLUMNS
            self.writer.insert(table, [(*row, sealed_at) for row in rows], column_names=list(columns))

    def _set_progress(self, task: str, until: datetime, updated_at: datetime) -> None:
        self.writer.insert(ROLLUP_PROGRESS_TABLE, [(task, until, updated_at)],
                           column_names=["task", "until", "updated_at"])


def _minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def _hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _naive(moment: datetime) -> datetime:
    """Naive UTC, as the driver's parameters and the tables' DateTime('UTC') columns expect."""
    return moment.replace(tzinfo=None) if moment.tzinfo is not None else moment
