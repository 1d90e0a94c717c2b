"""Resolved sessions: one row per Flow session in ``flow_session_rows``, kept up to date by the rollup.

Flow queries used to merge, per query, every session of the range (its screen events, send, completion) and
join its message's statuses. Now the rollup does that once per session and *touch*: every insert that
concerns a session (a send, a screen event, a completion, a status of its Flow message, found by key in
``flow_message_index``) records the session in ``flow_session_touches``, and a pass (:meth:`SessionRollup.run_once`)
merges the sessions touched since the previous pass with :func:`warehouse.flows.merged_sessions`, the same
query the dashboards merge live with, and writes their rows. A session whose send moved (another flow or send
time) leaves a deleted row where it was (``flow_session_keys`` says where that was). Then the pass records how
far it got (``sessions_resolved``), after summing again the hours of the sessions it resolved
(:mod:`warehouse.flow_hours`); queries read rows for sessions untouched since then and merge the rest
live, so figures are exact whether or not the rollup has caught up.

Passes are idempotent (a merge of everything stored, whatever was merged before). The rollup reads as the
analyst and inserts the rows it computed as the writer; :func:`rebuild_rows` (for ``flowscope warehouse
rebuild``, as the admin) resolves sessions with one ``INSERT … SELECT``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from clickhouse_connect.driver.client import Client

from warehouse import flow_hours
from warehouse.flows import SESSIONS_RESOLVED, TOUCH_MARGIN_S, merged_sessions
from warehouse.rollup import progress
from warehouse.tables import (
    FLOW_SENDS_BY_TIME_TABLE,
    FLOW_SESSION_KEYS_TABLE,
    FLOW_SESSION_ROWS_TABLE,
    FLOW_SESSION_TOUCHES_TABLE,
    ROLLUP_PROGRESS_TABLE,
)

logger = logging.getLogger(__name__)

ROW_COLUMNS = ("flow_token", "flow_id", "flow_version", "campaign", "country", "wamid", "sent_at", "completed_at",
               "last_activity", "has_events", "delivered", "read", "failed", "reached", "last_screen",
               "visit_screens", "visit_ms")
# A pass resolves the touched sessions this many touches at a time.
CHUNK_TOUCHES = 100_000
# More touches than this since the previous pass (a bulk load, a first pass over history): every session is
# resolved instead, a hash bucket of about BULK_SESSIONS sessions at a time (each bucket reads the sessions
# table once, where a set of random tokens would make every chunk read it).
BULK_TOUCHES = 500_000
BULK_SESSIONS = 1_000_000
_EPOCH = datetime(1970, 1, 1)


def resolve_sql(which: str) -> str:
    """The resolved rows (:data:`ROW_COLUMNS`) of the sent sessions whose flow_token satisfies ``which``."""
    return f"WITH {merged_sessions(which)} SELECT {', '.join(ROW_COLUMNS)} FROM live"


_TOUCHED_BETWEEN = (f"flow_token IN (SELECT flow_token FROM {FLOW_SESSION_TOUCHES_TABLE} "
                    "WHERE touched_at >= {since:DateTime64(3, 'UTC')} AND touched_at < {until:DateTime64(3, 'UTC')})")


@dataclass(frozen=True)
class SessionPass:
    """What one pass did."""

    resolved_until: datetime  # every session touched before it (less the margin) has its row
    sessions: int  # rows written
    moved: int  # sessions whose row moved (a deleted row left behind)


class SessionRollup:
    """Resolves touched sessions into ``flow_session_rows``; see the module docstring."""

    def __init__(self, client: Client, *, writer: Client | None = None,
                 touch_margin: timedelta = timedelta(seconds=TOUCH_MARGIN_S)) -> None:
        """``client`` reads; ``writer`` (default: ``client``) inserts the rows computed."""
        self.client = client
        self.writer = writer if writer is not None else client
        self.touch_margin = touch_margin

    def run_once(self, began: datetime) -> SessionPass:
        """Resolve the sessions touched since the previous pass (every session the first time, or after a bulk
        load), in chunks; then record the pass."""
        done = progress(self.client, SESSIONS_RESOLVED)
        since = done - self.touch_margin if done is not None else _EPOCH
        touches = int(self.client.command(
            f"SELECT count() FROM {FLOW_SESSION_TOUCHES_TABLE} WHERE touched_at >= {{since:DateTime64(3, 'UTC')}}",
            parameters={"since": since}))  # type: ignore[arg-type]
        parts: list[tuple[str, dict[str, Any]]]
        if done is None or touches > BULK_TOUCHES:
            sessions = int(self.client.command(f"SELECT count() FROM {FLOW_SENDS_BY_TIME_TABLE}"))  # type: ignore[arg-type]
            hashes = max(1, -(-sessions // BULK_SESSIONS))
            parts = [(f"cityHash64(flow_token) % {hashes} = {k}", {}) for k in range(hashes)]
        else:
            parts = [(_TOUCHED_BETWEEN, {"since": start, "until": end}) for start, end in self._chunks(since, began)]
        written = moved = 0
        buckets: set[tuple[str, datetime]] = set()
        for which, parameters in parts:
            rows = self.client.query(resolve_sql(which), parameters=parameters).result_rows
            moved += self._write(rows, which, parameters, began, buckets)
            written += len(rows)
        flow_hours.refresh(self.client, self.writer, buckets, began)
        self.writer.insert(ROLLUP_PROGRESS_TABLE,
                           [(SESSIONS_RESOLVED, began, began), (flow_hours.FLOW_HOURS, began, began)],
                           column_names=["task", "until", "updated_at"])
        if written:
            logger.info("rollup: resolved %d sessions (%d moved) touched until %s", written, moved, began)
        return SessionPass(began, written, moved)

    def _chunks(self, since: datetime, until: datetime) -> list[tuple[datetime, datetime]]:
        """[start, end) ranges of touch time, each of about :data:`CHUNK_TOUCHES` touches at most."""
        bounds = [row[0].replace(tzinfo=None) for row in self.client.query(
            f"SELECT touched_at FROM (SELECT touched_at, row_number() OVER (ORDER BY touched_at) AS n "
            f"FROM {FLOW_SESSION_TOUCHES_TABLE} WHERE touched_at >= {{since:DateTime64(3, 'UTC')}} "
            "AND touched_at < {until:DateTime64(3, 'UTC')}) WHERE n % {chunk:UInt32} = 0 ORDER BY touched_at",
            parameters={"since": since, "until": until, "chunk": CHUNK_TOUCHES}).result_rows]
        edges = [since, *[b for b in bounds if since < b < until], until]
        return [(a, b) for a, b in zip(edges, edges[1:], strict=False) if a < b]

    def _write(self, rows: Sequence[Sequence[Any]], which: str, parameters: dict[str, Any],
               resolved_at: datetime, buckets: set[tuple[str, datetime]]) -> int:
        """Insert the rows (and deleted rows where moved sessions were); returns the sessions moved. Adds to
        ``buckets`` the (flow_id, hour of the send) of every row written, deleted ones included."""
        if not rows:
            return 0
        previous = {token: (flow_id, sent_at.replace(tzinfo=None)) for token, flow_id, sent_at in self.client.query(
            f"SELECT flow_token, flow_id, sent_at FROM {FLOW_SESSION_KEYS_TABLE} WHERE {which}",
            parameters=parameters).result_rows}
        index = {name: i for i, name in enumerate(ROW_COLUMNS)}
        out: list[Sequence[Any]] = []
        keys: list[Sequence[Any]] = []
        moved = 0
        for row in rows:
            token, flow_id, sent_at = row[index["flow_token"]], row[index["flow_id"]], row[index["sent_at"]]
            key = (flow_id, sent_at.replace(tzinfo=None))
            old = previous.get(token)
            if old is not None and old != key:
                out.append((token, old[0], "", "", "", "", old[1], old[1], old[1], 0, 0, 0, 0, [], "", [], [],
                            resolved_at, 1))
                buckets.add((old[0], _hour(old[1])))
                moved += 1
            out.append((*row, resolved_at, 0))
            buckets.add((flow_id, _hour(key[1])))
            keys.append((token, flow_id, sent_at))
        self.writer.insert(FLOW_SESSION_ROWS_TABLE, out, column_names=[*ROW_COLUMNS, "resolved_at", "is_deleted"])
        self.writer.insert(FLOW_SESSION_KEYS_TABLE, keys, column_names=["flow_token", "flow_id", "sent_at"])
        return moved


def _hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def rebuild_rows(began: datetime, *, which: str = "1", progress: bool = True) -> list[str]:
    """The statements that resolve every session satisfying ``which`` in the warehouse (as the admin): rows,
    their keys, and (``progress``, when every session is resolved) the rollup's progress at ``began``."""
    columns = ", ".join(ROW_COLUMNS)
    moment = f"toDateTime64('{began:%Y-%m-%d %H:%M:%S.%f}', 3, 'UTC')"
    statements = [
        f"INSERT INTO {FLOW_SESSION_ROWS_TABLE} ({columns}, resolved_at, is_deleted) "
        f"SELECT {columns}, {moment}, 0 FROM ({resolve_sql(which)})",
        f"INSERT INTO {FLOW_SESSION_KEYS_TABLE} (flow_token, flow_id, sent_at) "
        f"SELECT flow_token, flow_id, sent_at FROM {FLOW_SESSION_ROWS_TABLE} FINAL WHERE {which}",
    ]
    if progress:
        statements.append(f"INSERT INTO {ROLLUP_PROGRESS_TABLE} (task, until, updated_at) "
                          f"SELECT '{SESSIONS_RESOLVED}', {moment}, {moment}")
    return statements
