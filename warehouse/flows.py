"""Flows in the warehouse: the typed queries the dashboards run over registered definitions and sessions.

A session is a flow_token. ``flow_sessions`` holds one mergeable row per session fed by every source
(sends, screen events, completions); ``message_state`` one per Flow message (statuses). The rollup resolves
each session into one row of ``flow_session_rows`` (:mod:`warehouse.resolution`) and sums them per hour of
the send into ``flow_hour_paths`` and ``flow_hour_visits`` (:mod:`warehouse.flow_hours`). A query reads the
sums of the whole hours of its range that are *summed* (see ``_SUMMED_UNTIL``), the resolved rows of the
rest, and merges live only the sessions touched since the rollup's last pass and sent in its range.
Stages and states, exactly:

- sent: the session has a ``flow_sent``; the funnel counts sessions whose send is in the time range.
- delivered: its Flow message has a delivered or a read status (read implies delivered).
- read / failed: a read / failed status.
- opened: at least one screen event (an endpoint INIT of an unregistered version included), or a completion.
- completed: an ``nfm_reply`` completion carrying the flow_token.
- abandoned: not completed, not failed, and no activity for ``timeout_s`` before ``now``; ongoing: the rest.

Per screen: reached = sessions with any event on it; dropped = abandoned sessions whose last event
is on it; completed_after = completed sessions that reached it. A visit is a run of consecutive
events on one screen; its time is until the next visit starts (or the completion, after the last
visit of a completed session); median and p90 are ClickHouse's ``quantileExact``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from clickhouse_connect.driver.client import Client

from warehouse.flow_hours import FLOW_HOURS
from warehouse.tables import (
    FLOW_DEFINITIONS_TABLE,
    FLOW_HOUR_PATHS_TABLE,
    FLOW_HOUR_VISITS_TABLE,
    FLOW_SELECTIONS_TABLE,
    FLOW_SESSION_KEYS_TABLE,
    FLOW_SESSION_ROWS_TABLE,
    FLOW_SESSION_TOUCHES_TABLE,
    FLOW_SESSIONS_TABLE,
    FLOW_VARIANTS_TABLE,
    MESSAGE_STATE_TABLE,
    NEVER_DATETIME,
    NEVER_DATETIME64,
    OUTBOUND_MESSAGES_TABLE,
    ROLLUP_PROGRESS_TABLE,
)

# rollup_progress task: every session touched before its ``until`` (less TOUCH_MARGIN_S) has its resolved row.
SESSIONS_RESOLVED = "sessions_resolved"

# Touches this long before the rollup's last pass are read again: an insert may become visible a little late.
TOUCH_MARGIN_S = 60

_HOUR = timedelta(hours=1)
STAGES = ("sent", "delivered", "read", "opened", "completed")
STATES = ("completed", "abandoned", "ongoing", "failed")

_NEVER = f"toDateTime64('{NEVER_DATETIME64}', 3, 'UTC')"  # flow_sessions' "never"
_NEVER_DT = f"toDateTime('{NEVER_DATETIME}', 'UTC')"  # message_state's "never"

# The sessions of ``which`` (an SQL condition on flow_token) merged from every source, each with its Flow
# message's statuses: one row per sent session with the columns of ``flow_session_rows`` (less resolved_at).
# The rollup resolves touched sessions with it (warehouse/resolution.py); the queries merge with it the
# sessions touched since the rollup's last pass.
def merged_sessions(which: str, *, materialized: bool = False) -> str:
    """``materialized``: computed once per query (a handful of touched sessions, read several times)."""
    once = " MATERIALIZED" if materialized else ""
    return f"""
merged AS{once} (
    SELECT flow_token,
           max(flow_id) AS flow_id, max(flow_version) AS flow_version, max(campaign) AS campaign,
           max(wamid) AS wamid, min(sent_at) AS sent_at, min(completed_at) AS completed_at,
           max(last_activity_at) AS last_activity_at,
           arraySort(groupUniqArrayMerge(node_events)) AS all_events
    FROM {FLOW_SESSIONS_TABLE}
    WHERE {which}
    GROUP BY flow_token
    HAVING sent_at < {_NEVER}
),
states AS (
    SELECT wamid, min(delivered_at) AS delivered_at, min(read_at) AS read_at, min(failed_at) AS failed_at
    FROM {MESSAGE_STATE_TABLE}
    WHERE wamid IN (SELECT wamid FROM merged)
    GROUP BY wamid
),
countries AS (  -- the Flow message recipient's country: the largest its statuses carried, whatever their order
    SELECT wamid, max(country) AS country FROM {OUTBOUND_MESSAGES_TABLE} WHERE wamid IN (SELECT wamid FROM merged)
    GROUP BY wamid
),
live AS{once} (
    SELECT m.flow_token AS flow_token, m.flow_id AS flow_id, m.flow_version AS flow_version,
           m.campaign AS campaign, c.country AS country, m.wamid AS wamid, m.sent_at AS sent_at,
           m.completed_at AS completed_at,
           greatest(m.last_activity_at,
                    if(st.wamid != '' AND st.read_at < {_NEVER_DT}, toDateTime64(st.read_at, 3, 'UTC'), m.sent_at),
                    if(st.wamid != '' AND st.delivered_at < {_NEVER_DT},
                       toDateTime64(st.delivered_at, 3, 'UTC'), m.sent_at)) AS last_activity,
           toUInt8(length(m.all_events) > 0) AS has_events,
           toUInt8(st.wamid != '' AND (st.delivered_at < {_NEVER_DT} OR st.read_at < {_NEVER_DT})) AS delivered,
           toUInt8(st.wamid != '' AND st.read_at < {_NEVER_DT}) AS read,
           toUInt8(st.wamid != '' AND st.failed_at < {_NEVER_DT}) AS failed,
           arrayMap(e -> e.2, arrayFilter(e -> e.2 != '', m.all_events)) AS screens,
           arrayMap(e -> toUnixTimestamp64Milli(e.1), arrayFilter(e -> e.2 != '', m.all_events)) AS times,
           arrayFilter(i -> i = 1 OR screens[i] != screens[i - 1], arrayEnumerate(screens)) AS starts,
           arrayDistinct(screens) AS reached,
           if(length(screens) > 0, screens[-1], '') AS last_screen,
           arrayMap(i -> screens[i], starts) AS visit_screens,
           arrayMap(k -> if(k < length(starts), times[starts[k + 1]] - times[starts[k]],
                            if(m.completed_at < {_NEVER}, toUnixTimestamp64Milli(m.completed_at) - times[starts[k]],
                               -1)),
                    arrayEnumerate(starts)) AS visit_ms
    FROM merged AS m
    LEFT JOIN states AS st ON m.wamid = st.wamid
    LEFT JOIN countries AS c ON m.wamid = c.wamid
)"""


# The filter of a FlowFilter on a session's columns.
_FILTER = """
    sent_at >= {start:DateTime64(3, 'UTC')} AND sent_at <= {end:DateTime64(3, 'UTC')}
    AND ({flow_id:String} = '' OR flow_id = {flow_id:String})
    AND ({flow_version:String} = '' OR flow_version = {flow_version:String})
    AND ({campaign:String} = '' OR campaign = {campaign:String})
    AND (empty({countries:Array(String)}) OR has({countries:Array(String)}, country))
"""
# Sessions touched since the rollup's last pass (a minute's worth once it keeps up), merged whatever their
# range: looking their sends up by time first would read every send of the range.
_TOUCHED = "flow_token IN (SELECT flow_token FROM touched)"
_GROUP_FILTER = """
    ({flow_id:String} = '' OR flow_id = {flow_id:String})
    AND ({flow_version:String} = '' OR flow_version = {flow_version:String})
    AND ({campaign:String} = '' OR campaign = {campaign:String})
    AND (empty({countries:Array(String)}) OR has({countries:Array(String)}, country))
"""
# The end of the summed hours: the sums answer for the whole hours of the range from hours_from up to it.
# Every session untouched since the rollup's last pass (less the margin) is resolved *and* summed in its hour
# (the pass sums before it records its progress), so an hour is summed unless a touched session is, or was,
# in it, or an open session of it (neither completed nor failed) may still be ongoing at ``now``. The first
# such hour ends the summed ones: one scalar, so that the rows read are two ranges of the primary key. Computed
# once per query (CTE ``summed_until``), read as a scalar subquery wherever it bounds a read.
_SUMMED_UNTIL = "(SELECT until FROM summed_until)"
_SUMMED_UNTIL_CTE = f"""summed_until AS MATERIALIZED (
    SELECT least(ifNull(minOrNull(h), {{hours_to:DateTime('UTC')}}),
                 if((SELECT count() FROM {ROLLUP_PROGRESS_TABLE} FINAL WHERE task = '{FLOW_HOURS}') = 0,
                    {{hours_from:DateTime('UTC')}}, {{hours_to:DateTime('UTC')}})) AS until
    FROM (
        SELECT toStartOfHour(sent_at) AS h FROM {FLOW_SESSION_KEYS_TABLE}
        WHERE flow_token IN (SELECT flow_token FROM touched)
          AND ({{flow_id:String}} = '' OR flow_id = {{flow_id:String}})
        UNION ALL
        SELECT toStartOfHour(sent_at) AS h FROM live WHERE {_GROUP_FILTER}
        UNION ALL
        SELECT hour AS h FROM {FLOW_HOUR_PATHS_TABLE} FINAL
        WHERE hour >= {{hours_from:DateTime('UTC')}} AND hour < {{hours_to:DateTime('UTC')}} AND {_GROUP_FILTER}
          AND open > 0
          AND open_last_activity >= {{now:DateTime64(3, 'UTC')}} - toIntervalSecond({{timeout_s:UInt32}})
    )
    WHERE h >= {{hours_from:DateTime('UTC')}}
)"""
_SUMMED = f"hour >= {{hours_from:DateTime('UTC')}} AND hour < {_SUMMED_UNTIL} AND {_GROUP_FILTER}"
# A session's columns as the queries read them (resolved rows and live merges alike).
_SESSION_COLUMNS = ("flow_token, flow_id, flow_version, campaign, sent_at, completed_at, last_activity, has_events, "
                    "delivered, read, failed, reached, last_screen, visit_screens, visit_ms")
# Sessions touched since the rollup's last pass (less a margin for inserts still in flight), and those
# sessions merged live from the raw rows (``live``).
_TOUCHED_LIVE = f"""
touched AS MATERIALIZED (
    SELECT DISTINCT flow_token FROM {FLOW_SESSION_TOUCHES_TABLE}
    WHERE touched_at >= (SELECT max(until) FROM {ROLLUP_PROGRESS_TABLE} FINAL WHERE task = '{SESSIONS_RESOLVED}')
                        - toIntervalSecond({TOUCH_MARGIN_S})
),
{merged_sessions(_TOUCHED, materialized=True)}
"""
# The sessions a query reads: resolved rows (flow_session_rows) for sessions untouched since the rollup's
# last pass, merged live for the others. Exact whether or not the rollup has caught up; cheap when it has.
# Then each session's state at ``now`` and its visits.
_SESSIONS = f"""
{_TOUCHED_LIVE},
{_SUMMED_UNTIL_CTE},
sessions AS (
    SELECT {_SESSION_COLUMNS} FROM live WHERE {_FILTER}
    UNION ALL
    SELECT {_SESSION_COLUMNS} FROM {FLOW_SESSION_ROWS_TABLE} FINAL
    WHERE {_FILTER} AND flow_token NOT IN (SELECT flow_token FROM touched)
      AND (sent_at < {{hours_from:DateTime('UTC')}} OR sent_at >= {_SUMMED_UNTIL})
),
summed_paths AS (
    SELECT flow_id, hour, flow_version, campaign, path, sessions, delivered, read, opened, completed, failed, open
    FROM {FLOW_HOUR_PATHS_TABLE} FINAL WHERE {_SUMMED}
),
summed_visits AS (
    SELECT flow_id, flow_version, screen, visit_ms, visit_counts FROM {FLOW_HOUR_VISITS_TABLE} FINAL WHERE {_SUMMED}
),
resolved AS (
    SELECT flow_token, flow_id, flow_version, campaign, sent_at, completed_at, reached, last_screen,
           visit_screens, visit_ms,
           delivered = 1 AS delivered, read = 1 AS read, failed = 1 AS failed,
           completed_at < {_NEVER} AS completed,
           has_events = 1 OR completed AS opened,
           NOT completed AND NOT failed
               AND last_activity < {{now:DateTime64(3, 'UTC')}} - toIntervalSecond({{timeout_s:UInt32}}) AS abandoned,
           NOT completed AND NOT failed AND NOT abandoned AS ongoing
    FROM sessions
)
"""

# Every session of the filter, one row each with its Flow message's wamid, never from the hour sums: for figures
# that are not sums of sessions (distinct persons, costs joined by message, times to complete). Resolved rows for
# sessions untouched since the rollup's last pass, merged live for the others, as in ``_SESSIONS``.
_EVERY_COLUMNS = ("flow_token, flow_id, flow_version, campaign, wamid, sent_at, completed_at, has_events, delivered, "
                  "read, failed")
EVERY_SESSION = f"""
{_TOUCHED_LIVE},
every_session AS MATERIALIZED (
    SELECT {_EVERY_COLUMNS}, completed_at < {_NEVER} AS completed, has_events = 1 OR completed AS opened
    FROM (
        SELECT {_EVERY_COLUMNS} FROM live WHERE {_FILTER}
        UNION ALL
        SELECT {_EVERY_COLUMNS} FROM {FLOW_SESSION_ROWS_TABLE} FINAL
        WHERE {_FILTER} AND flow_token NOT IN (SELECT flow_token FROM touched)
    )
)
"""


@dataclass(frozen=True, kw_only=True)
class FlowFilter:
    """Which sessions: sent within [start, end] (UTC), optionally one flow, version and campaign, and recipient
    countries (of the Flow message, ``""`` for unknown; empty = all).

    ``timeout_s`` is the abandonment timeout: callers pass ``Settings.session_timeout_s``.
    """

    start: datetime
    end: datetime
    flow_id: str = ""
    flow_version: str = ""
    campaign: str = ""
    countries: tuple[str, ...] = ()
    timeout_s: int
    now: datetime | None = None

    @property
    def parameters(self) -> dict[str, Any]:
        now = self.now or datetime.now(UTC).replace(tzinfo=None)
        return {
            "start": self.start, "end": self.end, "flow_id": self.flow_id, "flow_version": self.flow_version,
            "campaign": self.campaign, "countries": list(self.countries), "timeout_s": self.timeout_s, "now": now,
            **self.hours(),
        }

    def hours(self, *, whole: bool = True) -> dict[str, datetime]:
        """The whole hours of the range (every send time of them in it) as hours_from / hours_to; none
        unless ``whole`` (a caller bucketing by less than an hour)."""
        start = self.start.replace(minute=0, second=0, microsecond=0)
        if start < self.start:
            start += _HOUR
        # Send times have milliseconds: an hour is whole when its last millisecond is at or before ``end``.
        end = (self.end + timedelta(milliseconds=1)).replace(minute=0, second=0, microsecond=0)
        return {"hours_from": start, "hours_to": end if whole and end > start else start}


def flow_versions(client: Client) -> pd.DataFrame:
    """Every (flow_id, flow_version, campaign) seen in sends or registrations.

    Sends, not sessions: only sent sessions are ever counted; ``flow_variants`` holds each sent
    (flow, version, campaign) once, so no send is read.
    """
    # The ORDER BY sorts the whole union: inside it, it would bind to the last SELECT only.
    sql = f"""
        SELECT flow_id, flow_version, campaign FROM (
            SELECT DISTINCT flow_id, flow_version, campaign FROM {FLOW_VARIANTS_TABLE}
            UNION DISTINCT
            SELECT flow_id, flow_version, '' AS campaign FROM {FLOW_DEFINITIONS_TABLE}
        )
        ORDER BY flow_id, flow_version, campaign
    """
    return _frame(client, sql, {}, ("flow_id", "flow_version", "campaign"))


def funnel(client: Client, where: FlowFilter, *, by: tuple[str, ...] = ("flow_id", "flow_version"),
           bucket_minutes: int = 0) -> pd.DataFrame:
    """Sessions per stage and state, grouped by ``by`` (flow_id, flow_version, campaign), and by ``bucket`` of
    the send (``bucket_minutes`` wide, as :func:`funnel_over_time`) unless ``bucket_minutes`` is 0."""
    group = _group(by)
    keys = f"bucket, {group}" if bucket_minutes else group
    bucketed = "toStartOfInterval(at, toIntervalMinute({bucket:UInt32})) AS bucket, " if bucket_minutes else ""
    sql = f"""
        WITH {_SESSIONS}
        SELECT {bucketed}{group}, sum(n) AS sent, sum(d) AS delivered, sum(r) AS read, sum(o) AS opened,
               sum(c) AS completed, sum(a) AS abandoned, sum(g) AS ongoing, sum(f) AS failed
        FROM (
            SELECT {group}, sent_at AS at, toUInt64(1) AS n, toUInt64(delivered) AS d, toUInt64(read) AS r,
                   toUInt64(opened) AS o, toUInt64(completed) AS c, toUInt64(abandoned) AS a, toUInt64(ongoing) AS g,
                   toUInt64(failed) AS f
            FROM resolved
            UNION ALL
            SELECT {group}, toDateTime64(hour, 3, 'UTC'), sessions, delivered, read, opened, completed, open, 0, failed
            FROM summed_paths
        )
        GROUP BY {keys}
        ORDER BY {keys}
    """
    # Hour sums fit buckets of whole hours only (the buckets start on the hour).
    hours = where.hours(whole=bucket_minutes % 60 == 0)
    columns = ("sent", "delivered", "read", "opened", "completed", "abandoned", "ongoing", "failed")
    return _frame(client, sql, {**where.parameters, **hours, "bucket": bucket_minutes},
                  (*(("bucket",) if bucket_minutes else ()), *by, *columns))


def regroup(funnel_rows: pd.DataFrame, by: tuple[str, ...], *, flow_version: str = "") -> pd.DataFrame:
    """A finer :func:`funnel` (grouped by more columns) summed into groups of ``by``, of one version unless
    ``flow_version`` is empty: the same figures as asking :func:`funnel` for them (every column is a count of
    sessions, and a session is in one group), without another query."""
    _group(by)
    rows = funnel_rows if not flow_version else funnel_rows[funnel_rows["flow_version"] == flow_version]
    counts = list(dict.fromkeys((*STAGES, *STATES)))  # the funnel's columns: completed is a stage and a state
    if rows.empty:
        return pd.DataFrame(columns=[*by, *counts])
    summed = rows.groupby(list(by), as_index=False, sort=True)[counts].sum()
    return summed[[*by, *counts]].astype({column: "int64" for column in counts})


def over_time(funnel_rows: pd.DataFrame, *, flow_version: str = "") -> pd.DataFrame:
    """A bucketed :func:`funnel` (``bucket_minutes`` > 0) summed per bucket, of one version unless ``flow_version``
    is empty: sessions per stage by time bucket of the send, as :func:`funnel_over_time` gives them."""
    rows = funnel_rows if not flow_version else funnel_rows[funnel_rows["flow_version"] == flow_version]
    if rows.empty:
        return pd.DataFrame(columns=["bucket", *STAGES])
    summed = rows.groupby("bucket", as_index=False, sort=True)[list(STAGES)].sum()
    return summed[["bucket", *STAGES]].astype({column: "int64" for column in STAGES})


def funnel_over_time(client: Client, where: FlowFilter, *, bucket_minutes: int = 60) -> pd.DataFrame:
    """Sessions per stage by time bucket of the send."""
    if bucket_minutes <= 0:
        raise ValueError(f"bucket_minutes must be positive, got {bucket_minutes}")
    return over_time(funnel(client, where, by=("flow_id",), bucket_minutes=bucket_minutes))


def pick(level: float) -> str:
    """The ``level`` quantile of the values ``pairs`` (sorted (value, count)) hold, ``counted`` being the running
    sum of their counts and ``visits`` its total: the value ``quantileExact(level)`` returns for them."""
    return f"pairs[arrayFirstIndex(k -> k > toUInt64(floor({level} * visits)), counted)].1"


def node_stats(client: Client, where: FlowFilter) -> pd.DataFrame:
    """Per flow version and screen: reached, dropped, completed_after, visits, median_ms, p90_ms.

    One pass over the sessions: each yields its reach items (length -1) and its visits (length, 1); the hour
    sums yield theirs with counts. Per screen, the visit lengths are counted, then the quantiles picked from
    the sorted (length, count) pairs exactly as ``quantileExact`` picks them (the value at index
    floor(level x visits) of the sorted lengths).
    """
    sql = f"""
        WITH {_SESSIONS},
        items AS (
            SELECT flow_id, flow_version, item.1 AS screen, item.2 AS n, item.3 AS d, item.4 AS c, item.5 AS ms,
                   item.6 AS visits
            FROM resolved
            ARRAY JOIN arrayConcat(
                arrayMap(s -> (s, toUInt64(1), toUInt64(abandoned AND s = last_screen), toUInt64(completed),
                               toInt64(-1), toUInt64(0)), reached),
                arrayFilter(v -> v.5 >= 0, arrayMap((s, t) -> (s, toUInt64(0), toUInt64(0), toUInt64(0), t,
                                                               toUInt64(1)), visit_screens, visit_ms))) AS item
            UNION ALL
            SELECT flow_id, flow_version, screen, sessions, if(screen = screens[-1], open, 0), completed,
                   toInt64(-1), toUInt64(0)
            FROM (SELECT *, splitByChar('>', path) AS screens FROM summed_paths WHERE path != '')
            ARRAY JOIN arrayDistinct(screens) AS screen
            UNION ALL
            SELECT flow_id, flow_version, screen, toUInt64(0), toUInt64(0), toUInt64(0), ms, visits
            FROM summed_visits ARRAY JOIN visit_ms AS ms, visit_counts AS visits
        ),
        lengths AS (
            SELECT flow_id, flow_version, screen, ms, sum(n) AS n, sum(d) AS d, sum(c) AS c, sum(visits) AS visits
            FROM items
            GROUP BY flow_id, flow_version, screen, ms
        )
        SELECT flow_id, flow_version, screen, reached, dropped, completed_after, visits,
               toInt64({pick(0.5)}) AS median_ms, toInt64({pick(0.9)}) AS p90_ms
        FROM (
            SELECT flow_id, flow_version, screen, sum(n) AS reached, sum(d) AS dropped, sum(c) AS completed_after,
                   sum(lengths.visits) AS visits, arraySort(groupArrayIf((ms, lengths.visits), ms >= 0)) AS pairs,
                   arrayCumSum(arrayMap(p -> p.2, pairs)) AS counted
            FROM lengths
            GROUP BY flow_id, flow_version, screen
        )
        WHERE reached > 0
        ORDER BY flow_id, flow_version, screen
    """
    return _frame(client, sql, where.parameters, ("flow_id", "flow_version", "screen", "reached", "dropped",
                                                  "completed_after", "visits", "median_ms", "p90_ms"))


def paths(client: Client, where: FlowFilter, *, limit: int = 1000) -> pd.DataFrame:
    """Paths (visits joined by '>') of opened sessions with screen events, with their outcomes."""
    sql = f"""
        WITH {_SESSIONS}
        SELECT flow_id, flow_version, path, sum(c) AS completed, sum(a) AS abandoned, sum(g) AS ongoing,
               sum(n) AS sessions
        FROM (
            SELECT flow_id, flow_version, arrayStringConcat(visit_screens, '>') AS path, toUInt64(completed) AS c,
                   toUInt64(abandoned) AS a, toUInt64(ongoing) AS g, toUInt64(1) AS n
            FROM resolved
            WHERE length(visit_screens) > 0
            UNION ALL
            SELECT flow_id, flow_version, path, completed, open, 0, sessions FROM summed_paths WHERE path != ''
        )
        GROUP BY flow_id, flow_version, path
        ORDER BY sessions DESC, path
        LIMIT {{limit:UInt32}}
    """
    return _frame(client, sql, {**where.parameters, "limit": limit},
                  ("flow_id", "flow_version", "path", "completed", "abandoned", "ongoing", "sessions"))


def transitions(client: Client, where: FlowFilter) -> pd.DataFrame:
    """Moves between consecutive visits, numbered by step, plus each session's exit: for path diagrams."""
    sql = f"""
        WITH {_SESSIONS}
        SELECT step, source, target, sum(n) AS sessions
        FROM (
            SELECT move.1 AS step, move.2 AS source, move.3 AS target, toUInt64(1) AS n
            FROM (
                SELECT arrayJoin(arrayMap(k -> (k, visit_screens[k],
                           if(k < length(visit_screens), visit_screens[k + 1],
                              if(completed, 'completed', if(abandoned, 'dropped', 'ongoing')))),
                       arrayEnumerate(visit_screens))) AS move
                FROM resolved
                WHERE length(visit_screens) > 0
            )
            UNION ALL
            -- Summed sessions of one path: every move of the path, then the exits by outcome (an open
            -- session of a summed hour is abandoned; a failed one not completed is "ongoing", as above).
            SELECT move.1 AS step, move.2 AS source, move.3 AS target, move.4 AS n
            FROM (
                SELECT arrayJoin(arrayConcat(
                           arrayMap(k -> (k, screens[k], screens[k + 1], sessions),
                                    arrayEnumerate(arrayPopBack(screens))),
                           arrayFilter(m -> m.4 > 0, [
                               (length(screens), screens[-1], 'completed', completed),
                               (length(screens), screens[-1], 'dropped', open),
                               (length(screens), screens[-1], 'ongoing',
                                toUInt64(sessions - completed - open))]))) AS move
                FROM (SELECT *, splitByChar('>', path) AS screens FROM summed_paths WHERE path != '')
            )
        )
        GROUP BY step, source, target
        ORDER BY step, sessions DESC
    """
    return _frame(client, sql, where.parameters, ("step", "source", "target", "sessions"))


def selections(client: Client, *, flow_id: str, flow_version: str = "") -> pd.DataFrame:
    """Sessions per submitted option of allow-listed fields: screen, field, value, sessions."""
    sql = f"""
        SELECT flow_version, screen, field, value, uniqExactMerge(sessions) AS sessions
        FROM {FLOW_SELECTIONS_TABLE}
        WHERE flow_id = {{flow_id:String}} AND ({{flow_version:String}} = '' OR flow_version = {{flow_version:String}})
        GROUP BY flow_version, screen, field, value
        ORDER BY flow_version, screen, field, sessions DESC, value
    """
    return _frame(client, sql, {"flow_id": flow_id, "flow_version": flow_version},
                  ("flow_version", "screen", "field", "value", "sessions"))


def _frame(client: Client, sql: str, parameters: dict[str, Any], columns: tuple[str, ...]) -> pd.DataFrame:
    """query_df, with the expected columns even when no row matches."""
    frame = client.query_df(sql, parameters=parameters)
    return frame if len(frame.columns) else pd.DataFrame(columns=list(columns))


def _group(by: tuple[str, ...]) -> str:
    allowed = ("flow_id", "flow_version", "campaign")
    if not by or any(column not in allowed for column in by):
        raise ValueError(f"group by a non-empty subset of {allowed}, got {by}")
    return ", ".join(by)
