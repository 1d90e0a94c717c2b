"""Hours of resolved Flow sessions: ``flow_hour_paths`` and ``flow_hour_visits``, summed by the rollup.

A 30-day flow query over a busy flow reads millions of resolved sessions; summed per (flow, hour of the send,
version, campaign, path, recipient country) they are a few rows an hour. Whenever the rollup resolves sessions
(:mod:`warehouse.resolution`) it sums again every (flow, hour) bucket those sessions are in, or were in before
their send moved, from ``flow_session_rows``: the sums are a function of the resolved rows, so a pass run
twice, or after a crash, writes the same sums. A key a bucket no longer has gets a deleted row.

What a sum cannot hold is a session's state at the time of the query: a session neither completed nor failed
is *open*, abandoned once its last activity is older than the timeout and ongoing before that. So readers
(:mod:`warehouse.flows`) take a group's sums only when its latest open activity (``open_last_activity``) is
older than the timeout, and only for whole hours of their range with no session touched since the rollup's
last pass; every other session they read from ``flow_session_rows`` or merge live, exactly as before.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from clickhouse_connect.driver.client import Client

from warehouse.tables import (
    FLOW_HOUR_PATHS_TABLE,
    FLOW_HOUR_VISITS_TABLE,
    FLOW_SESSION_ROWS_TABLE,
    NEVER_DATETIME64,
    ROLLUP_PROGRESS_TABLE,
)

# rollup_progress task: the hours are kept (written after each rollup pass and by a rebuild of them); before it
# exists, queries read no sums.
FLOW_HOURS = "flow_hours"

PATH_COLUMNS = ("flow_id", "hour", "flow_version", "campaign", "path", "country", "sessions", "delivered", "read",
                "opened", "completed", "failed", "open", "open_last_activity", "last_activity")
VISIT_COLUMNS = ("flow_id", "hour", "flow_version", "campaign", "screen", "country", "visit_ms", "visit_counts",
                 "last_activity")
PATH_KEY = 6  # the first six columns are the key
VISIT_KEY = 6
_NEVER = f"toDateTime64('{NEVER_DATETIME64}', 3, 'UTC')"
_OPEN = f"completed_at >= {_NEVER} AND failed = 0"
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def paths_sql(which: str) -> str:
    """The rows of ``flow_hour_paths`` (:data:`PATH_COLUMNS`, by position) summed from the resolved sessions of
    ``which``. No aggregate has an alias: it would hide the session column of that name from the others."""
    return f"""
        SELECT flow_id, toStartOfHour(sent_at) AS hour, flow_version, campaign,
               arrayStringConcat(visit_screens, '>') AS path, country, count(), countIf(delivered = 1),
               countIf(read = 1),
               countIf(has_events = 1 OR completed_at < {_NEVER}), countIf(completed_at < {_NEVER}),
               countIf(failed = 1), countIf({_OPEN}), maxIf(last_activity, {_OPEN}), max(last_activity)
        FROM {FLOW_SESSION_ROWS_TABLE} FINAL
        WHERE {which}
        GROUP BY flow_id, hour, flow_version, campaign, path, country
    """


def visits_sql(which: str) -> str:
    """The rows of ``flow_hour_visits`` (:data:`VISIT_COLUMNS`, by position) from the resolved sessions of
    ``which``: each visit length once, with its count (exact quantiles from far fewer values)."""
    return f"""
        SELECT flow_id, hour, flow_version, campaign, screen, country, arrayMap(x -> x.1, pairs),
               arrayMap(x -> x.2, pairs), latest
        FROM (
            SELECT flow_id, hour, flow_version, campaign, screen, country, arraySort(groupArray((ms, visits))) AS pairs,
                   max(latest_of_length) AS latest
            FROM (
                SELECT flow_id, toStartOfHour(sent_at) AS hour, flow_version, campaign, screen, country, ms,
                       count() AS visits, max(last_activity) AS latest_of_length
                FROM {FLOW_SESSION_ROWS_TABLE} FINAL
                ARRAY JOIN visit_screens AS screen, visit_ms AS ms
                WHERE {which} AND ms >= 0
                GROUP BY flow_id, hour, flow_version, campaign, screen, country, ms
            )
            GROUP BY flow_id, hour, flow_version, campaign, screen, country
        )
    """


def _in_buckets(hour: str) -> str:
    """``{hour}`` of a row and its flow_id among the buckets of the parameters (flows, hours, first, last)."""
    return (f"flow_id IN {{flows:Array(String)}} AND {hour} >= {{first:DateTime('UTC')}} "
            f"AND {hour} <= {{last:DateTime('UTC')}} "
            f"AND (flow_id, {hour}) IN (SELECT t.1, t.2 FROM (SELECT arrayJoin(arrayZip("
            "{flows:Array(String)}, {hours:Array(DateTime('UTC'))})) AS t))")


def refresh(reader: Client, writer: Client, buckets: Iterable[tuple[str, datetime]], computed_at: datetime) -> int:
    """Sum again the (flow_id, hour) ``buckets`` from ``flow_session_rows``, a day of buckets at a time, reading
    as ``reader`` and inserting the rows as ``writer``; returns the rows written."""
    by_day: dict[datetime, list[tuple[str, datetime]]] = {}
    for flow_id, hour in buckets:
        by_day.setdefault(hour.replace(hour=0), []).append((flow_id, hour))
    written = 0
    for day in sorted(by_day):
        chunk = sorted(set(by_day[day]))
        parameters: dict[str, Any] = {"flows": [f for f, _ in chunk], "hours": [h for _, h in chunk],
                                      "first": chunk[0][1], "last": max(h for _, h in chunk)}
        # The rows' hour is the hour of the send: the first + last bounds let the primary key narrow the read.
        sessions = (f"{_in_buckets('toStartOfHour(sent_at)')} AND sent_at >= {{first:DateTime('UTC')}} "
                    "AND sent_at < {last:DateTime('UTC')} + INTERVAL 1 HOUR")
        for table, sql, columns, key in (
                (FLOW_HOUR_PATHS_TABLE, paths_sql(sessions), PATH_COLUMNS, PATH_KEY),
                (FLOW_HOUR_VISITS_TABLE, visits_sql(sessions), VISIT_COLUMNS, VISIT_KEY)):
            rows = reader.query(sql, parameters=parameters).result_rows
            written += _write(reader, writer, table, rows, columns, key, parameters, computed_at)
    return written


def _write(reader: Client, writer: Client, table: str, rows: Sequence[Sequence[Any]], columns: tuple[str, ...],
           key: int, parameters: dict[str, Any], computed_at: datetime) -> int:
    """Insert the ``rows`` that differ from the stored ones, and a deleted row for every key the buckets had
    and no longer have. Rows summed again unchanged (most of them after a bulk load) are not written again:
    fewer versions for ``FINAL`` to merge away."""
    old = {_key(row[:key]): _key(row) for row in reader.query(
        f"SELECT {', '.join(columns)} FROM {table} FINAL WHERE {_in_buckets('hour')}",
        parameters=parameters).result_rows}
    new = {_key(row[:key]) for row in rows}
    blank = [_blank(columns[i]) for i in range(key, len(columns))]
    out: list[Sequence[Any]] = [(*row, computed_at, 0) for row in rows if old.get(_key(row[:key])) != _key(row)]
    out += [(*k, *blank, computed_at, 1) for k in old if k not in new]
    if out:
        writer.insert(table, out, column_names=[*columns, "computed_at", "is_deleted"])
    return len(out)


def _key(values: Iterable[Any]) -> tuple[Any, ...]:
    """Values as comparable plain Python: naive datetimes, tuples for arrays."""
    return tuple(v.replace(tzinfo=None) if isinstance(v, datetime) else tuple(v) if isinstance(v, list) else v
                 for v in values)


def _blank(column: str) -> Any:
    if column in ("visit_ms", "visit_counts"):
        return []
    if column.endswith("last_activity"):
        return datetime(1970, 1, 1)
    return 0


def rebuild_statements(began: datetime) -> list[tuple[str, str]]:
    """(what, statement) pairs (as the admin) that sum every hour again from ``flow_session_rows``."""
    moment = f"toDateTime64('{began:%Y-%m-%d %H:%M:%S.%f}', 3, 'UTC')"
    return [
        *((f"{table}: empty it", f"TRUNCATE TABLE {table}")
          for table in (FLOW_HOUR_PATHS_TABLE, FLOW_HOUR_VISITS_TABLE)),
        (f"{FLOW_HOUR_PATHS_TABLE} ← {FLOW_SESSION_ROWS_TABLE} (summed per hour)",
         f"INSERT INTO {FLOW_HOUR_PATHS_TABLE} ({', '.join(PATH_COLUMNS)}, computed_at, is_deleted) "
         f"SELECT *, {moment}, 0 FROM ({paths_sql('1')})"),
        (f"{FLOW_HOUR_VISITS_TABLE} ← {FLOW_SESSION_ROWS_TABLE} (summed per hour)",
         f"INSERT INTO {FLOW_HOUR_VISITS_TABLE} ({', '.join(VISIT_COLUMNS)}, computed_at, is_deleted) "
         f"SELECT *, {moment}, 0 FROM ({visits_sql('1')})"),
        (f"{FLOW_HOUR_VISITS_TABLE}, rollup progress",
         f"INSERT INTO {ROLLUP_PROGRESS_TABLE} (task, until, updated_at) SELECT '{FLOW_HOURS}', {moment}, {moment}"),
    ]
