"""Resolved messages and their hour sums: ``message_rows`` and ``message_hour_counts``, kept by the rollup.

Spend and per-message delivery figures count messages by their *first* status (the send) and by what all their
statuses say (country, pricing, whether it was delivered, read or failed) and what the first-party send tagged
(campaign, flow). Merging every message's statuses per query costs seconds over 30 days at 100M events. So:

- Every insert of a status stamps its message's ``outbound_messages.touched_at`` (the view that merges statuses
  does it; a minmax index finds the recent ones), and every first-party send with a wamid records the message in
  ``message_touches``. A pass (:meth:`MessageRollup.run_once`) merges the messages touched since the previous one
  from ``outbound_messages`` (:func:`resolve_sql`, the same query the dashboards merge live with) into one row
  each in ``message_rows``, at the hour of its first status. A message whose first status moved earlier (a
  status arrived late, with an earlier time) leaves a deleted row at the hour it was in.
- The pass then sums again every hour a resolved message is in, or was in, into ``message_hour_counts`` (a key
  the hour no longer has gets a deleted row), sets the people of those hours again (:mod:`warehouse.person_sets`),
  and records how far it got (``message_hours``).

Readers (:data:`MESSAGE_COUNTS`) take whole hours of their range from the sums, except the hours of a message
touched since that pass (the hours it has or had a row in, and its hour now); they take every other message of
the range from ``message_rows``, and the touched ones merged live. Every message of the range comes from exactly
one of the three, so figures are exact whether or not the rollup has caught up; only their speed depends on it.
Distinct people (:func:`message_persons`) unite the sets of the same whole hours (less those with a recipient whose
person changed since the pass) with the people of every other message, resolved now.
Passes are idempotent: everything is computed from what the warehouse holds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from clickhouse_connect.driver.client import Client

from warehouse import person_sets
from warehouse.identity import resolved_person
from warehouse.person_sets import PersonSets
from warehouse.rollup import progress
from warehouse.tables import (
    FLOW_SENDS_TABLE,
    MESSAGE_HOUR_COUNTS_TABLE,
    MESSAGE_ROWS_TABLE,
    MESSAGE_TOUCHES_TABLE,
    OUTBOUND_MESSAGES_TABLE,
    PERSON_HOUR_SETS_TABLE,
    PERSON_KEY_HOURS_TABLE,
    PERSON_MAP_TABLE,
    ROLLUP_PROGRESS_TABLE,
)

logger = logging.getLogger(__name__)

# rollup_progress task: every message touched before its ``until`` (less TOUCH_MARGIN_S) has its row, and every
# hour of those rows its sums.
MESSAGE_HOURS = "message_hours"
# Touches stamped up to this long before a pass began are read again: an insert may become visible a little later.
TOUCH_MARGIN_S = 60
CHUNK_TOUCHES = 100_000  # touched messages resolved per query (a hash bucket of them)
# More touches than this since the previous pass (a bulk load, the first pass): every message is resolved, a hash
# bucket of about BULK_MESSAGES at a time.
BULK_TOUCHES = 500_000
BULK_MESSAGES = 2_000_000
HOURS_PER_SUM = 168  # hours summed per query
# The rollup runs a message pass at most this often. Every status touches its message, and a pass sums again every
# hour its messages are in: during a burst (50k statuses/s into the current hour) passes every few seconds would
# sum the same busy hours again and again. Queries merge live what a pass has not resolved yet, so figures stay
# exact; the interval only bounds how much they merge live.
MESSAGE_PASS_INTERVAL_S = 30.0
_EPOCH = datetime(1970, 1, 1)
# Bits of outbound_messages.reached.
SENT, DELIVERED, READ, FAILED = 1, 2, 4, 8
DELIVERED_OR_READ = DELIVERED | READ

ROW_COLUMNS = ("hour", "wamid", "first_at", "last_at", "phone_number_id", "country", "person_hash",
               "pricing_category", "pricing_type", "billable", "campaign", "flow_id", "reached")
KEY_COLUMNS = ("hour", "phone_number_id", "country", "pricing_category", "pricing_type", "billable", "campaign",
               "flow_id")
COUNT_COLUMNS = (*KEY_COLUMNS, "messages", "delivered", "read", "failed", "last_at")

# A message's campaign: the first-party send's, else the ``campaign=`` tag of its callback data; its flow likewise.
CAMPAIGN = "if(sends.campaign != '', sends.campaign, extract(m.callback, '(?:^|;)\\\\s*campaign=([^;]*)'))"
FLOW_ID = "if(sends.flow_id != '', sends.flow_id, extract(m.callback, '(?:^|;)\\\\s*flow_id=([^;]*)'))"
# The hours a message may have a row in: from the hour of its first status to that of its last (an earlier first
# status, its old hour, was one of its statuses).
_HOURS_SPANNED = ("arrayMap(i -> hour + toIntervalHour(i), "
                  "range(toUInt32(dateDiff('hour', hour, toStartOfHour(last_at)) + 1)))")


def resolve_sql(which: str) -> str:
    """The resolved rows (:data:`ROW_COLUMNS`) of the messages whose wamid satisfies ``which``."""
    return f"""
        SELECT toStartOfHour(m.first_at) AS hour, m.wamid AS wamid, m.first_at AS first_at, m.last_at AS last_at,
               m.phone_number_id AS phone_number_id, m.country AS country, m.person_hash AS person_hash,
               m.pricing_category AS pricing_category,
               m.pricing_type AS pricing_type, m.billable AS billable, {CAMPAIGN} AS campaign, {FLOW_ID} AS flow_id,
               m.reached AS reached
        FROM (SELECT wamid, max(phone_number_id) AS phone_number_id, min(first_at) AS first_at,
                     max(last_at) AS last_at, groupBitOr(reached) AS reached, max(country) AS country,
                     max(person_hash) AS person_hash,
                     max(pricing_category) AS pricing_category, max(pricing_type) AS pricing_type,
                     max(billable) AS billable, max(callback) AS callback
              FROM {OUTBOUND_MESSAGES_TABLE} WHERE {which} GROUP BY wamid) AS m
        LEFT JOIN (SELECT wamid, max(campaign) AS campaign, max(flow_id) AS flow_id FROM {FLOW_SENDS_TABLE}
                   WHERE wamid != '' AND {which} GROUP BY wamid) AS sends ON sends.wamid = m.wamid
    """


def sums_sql(which: str) -> str:
    """The rows of ``message_hour_counts`` (:data:`COUNT_COLUMNS`, by position) of the resolved messages whose
    hour satisfies ``which``."""
    return f"""
        SELECT {", ".join(KEY_COLUMNS)}, count(), countIf(bitAnd(reached, {DELIVERED_OR_READ}) != 0),
               countIf(bitAnd(reached, {READ}) != 0), countIf(bitAnd(reached, {FAILED}) != 0), max(last_at)
        FROM {MESSAGE_ROWS_TABLE} FINAL
        WHERE {which}
        GROUP BY {", ".join(KEY_COLUMNS)}
    """


# The resolved rows of ``which``, each with the hours its message has a row in now (before this resolution).
def _resolve_with_old_hours(which: str) -> str:
    return f"""
        WITH live AS MATERIALIZED ({resolve_sql(which)}),
        old AS (
            SELECT wamid, groupUniqArray(hour) AS hours FROM {MESSAGE_ROWS_TABLE} FINAL
            WHERE (hour, wamid) IN (SELECT arrayJoin({_HOURS_SPANNED}), wamid FROM live)
            GROUP BY wamid
        )
        SELECT live.*, old.hours FROM live LEFT JOIN old ON old.wamid = live.wamid
    """


# The messages touched in [since, until): by a status (outbound_messages.touched_at) or by their send.
_TOUCHED_BETWEEN = " UNION DISTINCT ".join(
    f"SELECT wamid FROM {table} WHERE touched_at >= {{since:DateTime64(3, 'UTC')}} "
    "AND touched_at < {until:DateTime64(3, 'UTC')}" for table in (OUTBOUND_MESSAGES_TABLE, MESSAGE_TOUCHES_TABLE))


@dataclass(frozen=True)
class MessagePass:
    """What one pass did."""

    resolved_until: datetime  # every message touched before it (less the margin) has its row and sums
    messages: int  # rows written
    moved: int  # messages whose first status moved to an earlier hour (a deleted row left behind)
    hours: int  # hours summed again


class MessageRollup:
    """Resolves touched messages into ``message_rows`` and sums their hours; see the module docstring."""

    def __init__(self, client: Client, *, writer: Client | None = None,
                 touch_margin: timedelta = timedelta(seconds=TOUCH_MARGIN_S)) -> None:
        """``client`` reads; ``writer`` (default: ``client``) inserts the rows computed."""
        self.client = client
        self.writer = writer if writer is not None else client
        self.touch_margin = touch_margin

    def run_once(self, began: datetime) -> MessagePass:
        """Resolve the messages touched since the previous pass (every message the first time, or after a bulk
        load), in chunks; sum their hours again; then record the pass."""
        done = progress(self.client, MESSAGE_HOURS)
        since = done - self.touch_margin if done is not None else _EPOCH
        bounds = {"since": since, "until": began}
        touched = int(self.client.command(f"SELECT count() FROM ({_TOUCHED_BETWEEN})",
                                          parameters=bounds))  # type: ignore[arg-type]
        if done is None or touched > BULK_TOUCHES:
            messages = int(self.client.command(f"SELECT count() FROM {OUTBOUND_MESSAGES_TABLE}"))  # type: ignore[arg-type]
            hashes, which, parameters = max(1, -(-messages // BULK_MESSAGES)), "1", {}
        else:
            hashes = max(1, -(-touched // CHUNK_TOUCHES))
            which, parameters = f"wamid IN ({_TOUCHED_BETWEEN})", bounds
        parts = [(f"({which}) AND modulo(cityHash64(wamid), {hashes}) = {k}", parameters) for k in range(hashes)]
        written = moved = 0
        hours: set[datetime] = set()
        for which, parameters in parts:
            rows = self.client.query(_resolve_with_old_hours(which), parameters=parameters).result_rows
            moved += self._write(rows, began, hours)
            written += len(rows)
        self._sum(hours, began)
        # The people of the same hours (and of those with a recipient whose person changed), before the progress:
        # readers take the sets of every hour the progress does not call stale.
        PersonSets(self.client, writer=self.writer).run(hours, began,
                                                        remapped_since=since if done is not None else None)
        self.writer.insert(ROLLUP_PROGRESS_TABLE, [(MESSAGE_HOURS, began, began)],
                           column_names=["task", "until", "updated_at"])
        if written:
            logger.info("rollup: resolved %d messages (%d moved), %d hours summed, touched until %s",
                        written, moved, len(hours), began)
        return MessagePass(began, written, moved, len(hours))

    def _write(self, rows: Sequence[Sequence[Any]], resolved_at: datetime, hours: set[datetime]) -> int:
        """Insert the rows, and deleted rows where their messages were; returns the messages moved. Adds to
        ``hours`` every hour written."""
        out: list[Sequence[Any]] = []
        moved = 0
        for *row, old_hours in rows:
            hour = _naive(row[0])
            hours.add(hour)
            out.append((*row, resolved_at, 0))
            left = {_naive(h) for h in old_hours or ()} - {hour}
            moved += bool(left)
            for old in left:
                hours.add(old)
                out.append((old, *row[1:], resolved_at, 1))
        if out:
            self.writer.insert(MESSAGE_ROWS_TABLE, out, column_names=[*ROW_COLUMNS, "resolved_at", "is_deleted"])
        return moved

    def _sum(self, hours: Iterable[datetime], computed_at: datetime) -> None:
        """Sum the hours again from ``message_rows``; a key an hour had and no longer has gets a deleted row."""
        ordered = sorted(hours)
        for i in range(0, len(ordered), HOURS_PER_SUM):
            chunk = {"hours": ordered[i:i + HOURS_PER_SUM]}
            which = "hour IN {hours:Array(DateTime('UTC'))}"
            rows = self.client.query(sums_sql(which), parameters=chunk).result_rows
            keys = {tuple(row[:len(KEY_COLUMNS)]) for row in rows}
            gone = [key for key in self.client.query(
                f"SELECT {', '.join(KEY_COLUMNS)} FROM {MESSAGE_HOUR_COUNTS_TABLE} FINAL WHERE {which}",
                parameters=chunk).result_rows if tuple(key) not in keys]
            out = [(*row, computed_at, 0) for row in rows]
            out += [(*key, 0, 0, 0, 0, key[0], computed_at, 1) for key in gone]
            if out:
                self.writer.insert(MESSAGE_HOUR_COUNTS_TABLE, out,
                                   column_names=[*COUNT_COLUMNS, "computed_at", "is_deleted"])


def _naive(moment: datetime) -> datetime:
    return moment.replace(tzinfo=None)


def rebuild_statements(began: datetime, *, which: str, hashes: int = 1) -> list[tuple[str, str]]:
    """(what, statement) pairs that resolve the messages satisfying ``which`` again (their rows removed first,
    wherever they are), in ``hashes`` buckets, then sum every hour again, as the admin; with ``which`` "1" (every
    message) they also record the rollup's progress at ``began``."""
    moment = f"toDateTime64('{began:%Y-%m-%d %H:%M:%S.%f}', 3, 'UTC')"
    columns = ", ".join(ROW_COLUMNS)
    if which == "1":
        # person_key_hours is refilled by its view as message_rows is.
        statements = [(f"{table}: empty it", f"TRUNCATE TABLE {table}")
                      for table in (MESSAGE_ROWS_TABLE, PERSON_KEY_HOURS_TABLE)]
    else:
        statements = [(f"{MESSAGE_ROWS_TABLE}: remove the messages with statuses in the range",
                       f"DELETE FROM {MESSAGE_ROWS_TABLE} WHERE {which}")]
    for k in range(hashes):
        bucket = f"({which}) AND modulo(cityHash64(wamid), {hashes}) = {k}"
        statements.append((f"{MESSAGE_ROWS_TABLE} ← {OUTBOUND_MESSAGES_TABLE} (resolved, part {k + 1} of {hashes})",
                           f"INSERT INTO {MESSAGE_ROWS_TABLE} ({columns}, resolved_at, is_deleted) "
                           f"SELECT {columns}, {moment}, 0 FROM ({resolve_sql(bucket)})"))
    statements += [
        (f"{MESSAGE_HOUR_COUNTS_TABLE}: empty it", f"TRUNCATE TABLE {MESSAGE_HOUR_COUNTS_TABLE}"),
        (f"{MESSAGE_HOUR_COUNTS_TABLE} ← {MESSAGE_ROWS_TABLE} (every hour)",
         f"INSERT INTO {MESSAGE_HOUR_COUNTS_TABLE} ({', '.join(COUNT_COLUMNS)}, computed_at, is_deleted) "
         f"SELECT *, {moment}, 0 FROM ({sums_sql('1')})"),
        *person_sets.rebuild_statements(moment),
    ]
    if which == "1":
        statements.append((f"{MESSAGE_HOUR_COUNTS_TABLE}, rollup progress",
                           f"INSERT INTO {ROLLUP_PROGRESS_TABLE} (task, until, updated_at) "
                           f"SELECT '{MESSAGE_HOURS}', {moment}, {moment}"))
    return statements


# --- reading -------------------------------------------------------------------------------------------------------

_PROGRESS = f"(SELECT max(until) FROM {ROLLUP_PROGRESS_TABLE} FINAL WHERE task = '{MESSAGE_HOURS}')"
_NO_PASS_YET = f"(SELECT count() FROM {ROLLUP_PROGRESS_TABLE} WHERE task = '{MESSAGE_HOURS}') = 0"
# The filter's business numbers and recipient countries (empty: all).
_FILTER = ("(empty({phone_number_ids:Array(String)}) OR has({phone_number_ids:Array(String)}, phone_number_id)) "
           "AND (empty({countries:Array(String)}) OR has({countries:Array(String)}, country))")
# The touched messages and the stale hours, each a scalar: computed once per query, however often it is read (a
# CTE is computed again at every reference unless the server enables materialized CTEs).
_TOUCHED = "(SELECT groupUniqArray(wamid) FROM message_touched)"
_STALE = "(SELECT groupUniqArray(hour) FROM message_stale_hours)"
# The touched messages' rows (with none, no table is read: not even flow_sends, which is not keyed by wamid).
_TOUCHED_LIVE = f"notEmpty({_TOUCHED}) AND wamid IN (SELECT arrayJoin({_TOUCHED}))"
_IN_RANGE = "first_at >= {start:DateTime('UTC')} AND first_at <= {end:DateTime('UTC')}"
_WHOLE = "hour >= {message_hours_from:DateTime('UTC')} AND hour < {message_hours_to:DateTime('UTC')}"
# The messages first seen in the filter's range, one row each or a sum of many, with the columns of
# message_hour_counts: the sums of whole hours with no message touched since the last pass, the resolved rows of
# the rest, and the messages touched since then merged live (every message until the first pass). Stale hours:
# those a touched message has (or had) a row in, looked up within the hours its statuses span, and its hour
# now. Every condition on message_rows is on hours, its key's prefix, so only those hours are read.
MESSAGE_COUNTS = f"""
message_touched AS (
    SELECT wamid FROM {OUTBOUND_MESSAGES_TABLE} WHERE touched_at >= {_PROGRESS} - toIntervalSecond({TOUCH_MARGIN_S})
    UNION DISTINCT
    SELECT wamid FROM {MESSAGE_TOUCHES_TABLE} WHERE touched_at >= {_PROGRESS} - toIntervalSecond({TOUCH_MARGIN_S})
    UNION DISTINCT
    SELECT wamid FROM {OUTBOUND_MESSAGES_TABLE} WHERE {_NO_PASS_YET}
),
message_live AS MATERIALIZED ({resolve_sql(_TOUCHED_LIVE)}),
message_stale_hours AS (
    SELECT DISTINCT hour FROM {MESSAGE_ROWS_TABLE}
    WHERE (hour, wamid) IN (SELECT arrayJoin({_HOURS_SPANNED}), wamid FROM message_live)
    UNION DISTINCT
    SELECT hour FROM message_live
),
message_counts AS (
    SELECT {", ".join(KEY_COLUMNS)}, messages, delivered, read, failed
    FROM {MESSAGE_HOUR_COUNTS_TABLE} FINAL
    WHERE {_WHOLE} AND NOT has({_STALE}, hour) AND {_FILTER}
    UNION ALL
    SELECT {", ".join(KEY_COLUMNS)}, 1, bitAnd(reached, {DELIVERED_OR_READ}) != 0, bitAnd(reached, {READ}) != 0,
           bitAnd(reached, {FAILED}) != 0
    FROM {MESSAGE_ROWS_TABLE} FINAL
    WHERE hour IN (SELECT arrayJoin(arrayConcat({{message_edge_hours:Array(DateTime('UTC'))}}, arrayFilter(
                       h -> h >= toStartOfHour({{start:DateTime('UTC')}}) AND h <= {{end:DateTime('UTC')}}, {_STALE}))))
      AND {_IN_RANGE} AND NOT has({_TOUCHED}, wamid) AND {_FILTER}
    UNION ALL
    SELECT {", ".join(KEY_COLUMNS)}, 1, bitAnd(reached, {DELIVERED_OR_READ}) != 0, bitAnd(reached, {READ}) != 0,
           bitAnd(reached, {FAILED}) != 0
    FROM message_live
    WHERE {_IN_RANGE} AND {_FILTER}
)
"""
# --- people --------------------------------------------------------------------------------------------------------

# The hours whose sets of people may be out of date (stale_person_hours), a parameter.
_PERSON_STALE = "{person_stale_hours:Array(DateTime('UTC'))}"
# The hours whose messages are read row by row for people: the edges, and the stale hours of the range.
_PERSON_ROW_HOURS = ("arrayConcat({message_edge_hours:Array(DateTime('UTC'))}, arrayFilter("
                     "h -> h >= toStartOfHour({start:DateTime('UTC')}) AND h <= {end:DateTime('UTC')}, "
                     f"{_PERSON_STALE}))")
# Every person key those rows (and the touched messages) can name, and their persons: a superset that keeps the
# lookups in person_map and person_ids to a few keys, without computing the rows again (a CTE is computed at each
# reference).
_ROW_KEYS = f"""
    SELECT person_hash FROM {MESSAGE_ROWS_TABLE} WHERE hour IN (SELECT arrayJoin({_PERSON_ROW_HOURS}))
    UNION ALL
    SELECT person_hash FROM {OUTBOUND_MESSAGES_TABLE} WHERE {_TOUCHED_LIVE}
"""
_PERSON_JOIN, _PERSON = resolved_person("r.person_hash", alias="pm", among=_ROW_KEYS)
_ROW_PEOPLE = f"{_ROW_KEYS} UNION ALL SELECT person FROM {PERSON_MAP_TABLE} WHERE identifier IN ({_ROW_KEYS})"


def stale_person_hours(client: Client, parameters: dict[str, Any]) -> list[datetime]:
    """The hours whose sets of people a query of :func:`message_persons` (``parameters``: those of
    :data:`MESSAGE_COUNTS`) must not use: the stale hours of MESSAGE_COUNTS, and the hours with a message to a person
    key whose person changed (a new row in ``person_map``) since the last pass.

    Read by a query of its own, first, and passed as a parameter: within one query, ClickHouse computes a scalar
    subquery again at each reference when it holds another one, and this list is read at several places. A touch
    between the two reads is harmless: the second query merges live every message touched by then, and a person
    counted both from a set and live is one person."""
    sql = f"""
        WITH {MESSAGE_COUNTS}
        SELECT DISTINCT hour FROM (
            SELECT hour FROM message_stale_hours
            UNION ALL
            {person_sets.remapped_hours_sql(f"{_PROGRESS} - toIntervalSecond({TOUCH_MARGIN_S})")})
    """
    return [_naive(hour) for (hour,) in client.query(sql, parameters=parameters).result_rows]


def message_persons(*, by_country: bool) -> str:
    """CTEs to follow :data:`MESSAGE_COUNTS` (with its parameters, ``person_level``: :func:`person_sets.level_of` the
    filter, or the grouping, and ``person_stale_hours``: :func:`stale_person_hours`): ``message_persons``, the
    distinct people the messages first seen in the filter's range went to (``persons``), per recipient ``country``
    when ``by_country``.

    The sets of the whole hours no message was touched in, and no recipient's person changed in, since the last pass
    (:mod:`warehouse.person_sets`) are united with the numbers of the people of every other message of the range
    (the same rows and live merge as MESSAGE_COUNTS, their keys resolved now); people not numbered yet are in no
    set, and are counted apart."""
    group, group_by = ("country, ", "GROUP BY country") if by_country else ("", "")
    return f"""
person_rows AS (
    SELECT country, person_hash FROM {MESSAGE_ROWS_TABLE} FINAL
    WHERE hour IN (SELECT arrayJoin({_PERSON_ROW_HOURS}))
      AND {_IN_RANGE} AND NOT has({_TOUCHED}, wamid) AND {_FILTER} AND person_hash != ''
    UNION ALL
    SELECT country, person_hash FROM message_live WHERE {_IN_RANGE} AND {_FILTER} AND person_hash != ''
),
person_numbered AS (
    {person_sets.numbered_sql(f"SELECT r.country AS country, {_PERSON} AS person FROM person_rows AS r {_PERSON_JOIN}",
                              among=_ROW_PEOPLE)}
),
message_persons AS (
    SELECT {group}groupBitmapMerge(persons) + sum(unnumbered) AS persons
    FROM (
        SELECT {group}persons, toUInt64(0) AS unnumbered FROM {PERSON_HOUR_SETS_TABLE} FINAL
        WHERE {_WHOLE} AND NOT has({_PERSON_STALE}, hour) AND level = {{person_level:UInt8}} AND {_FILTER}
        UNION ALL
        SELECT {group}groupBitmapStateIf(id, id != 0), uniqExactIf(person, id = 0) FROM person_numbered {group_by}
    )
    {group_by}
)
"""


_HOUR = timedelta(hours=1)


def whole_hours(start: datetime, end: datetime) -> dict[str, Any]:
    """The parameters of :data:`MESSAGE_COUNTS` for [start, end]: its whole hours (those with every second in the
    range) as [message_hours_from, message_hours_to), and the hours only partly in it (message_edge_hours)."""
    first = start.replace(minute=0, second=0, microsecond=0)
    hours_from = first if first == start.replace(microsecond=0) else first + _HOUR
    hours_to = max((end + timedelta(seconds=1)).replace(minute=0, second=0, microsecond=0), hours_from)
    last = end.replace(minute=0, second=0, microsecond=0)
    edges = sorted({h for h in (first, last) if h < hours_from or h >= hours_to} if first <= end else set())
    return {"message_hours_from": hours_from, "message_hours_to": hours_to, "message_edge_hours": edges}
