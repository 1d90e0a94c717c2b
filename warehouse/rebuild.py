"""Rebuild: every derived table recomputed from the raw tables, by the same queries that fill it live.

Derived tables are filled by materialized views at every insert into a raw table, and by the rollup
(:mod:`warehouse.rollup`). After a fix to a derivation, or to backfill a derived table a migration adds,
``flowscope warehouse rebuild`` recomputes them: each view's own query (``system.tables.as_select``) runs over
the raw rows again, a partition at a time, and the rollup reseals its counts. Running it twice changes no
number: the result depends only on the raw tables.

- Whole history: each derived table is emptied and refilled from every partition of its sources.
- ``since``/``until`` (rounded down to the minute): time-keyed tables (a row per minute or per send) lose their
  rows of that range and get them back from the raw rows of that range; entity-keyed tables (a row per
  message, session, answer or flow) lose the entities that have raw rows in the range and get them back from
  *all* their raw rows, so an entity is never rebuilt from part of its events.

While a table is rebuilt its figures are incomplete (dashboards read it live); the delivery counts the rollup
sealed stay in place until their replacements are written. The rollup's passes wait meanwhile (task
``rebuilding`` in ``rollup_progress``). Runs as the warehouse admin (it empties and fills tables).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from clickhouse_connect.driver.client import Client

from warehouse import flow_hours, message_hours
from warehouse.exceptions import WarehouseError
from warehouse.resolution import rebuild_rows
from warehouse.rollup import EPOCH, REBUILDING, DeliveryRollup, server_now
from warehouse.tables import (
    FLOW_COMPLETIONS_TABLE,
    FLOW_HEALTH_CURRENT_TABLE,
    FLOW_HEALTH_EVENTS_TABLE,
    FLOW_HOUR_PATHS_TABLE,
    FLOW_HOUR_VISITS_TABLE,
    FLOW_MESSAGE_INDEX_TABLE,
    FLOW_NODE_EVENTS_TABLE,
    FLOW_SELECTIONS_TABLE,
    FLOW_SENDS_BY_TIME_TABLE,
    FLOW_SENDS_TABLE,
    FLOW_SESSION_KEYS_TABLE,
    FLOW_SESSION_OPENS_TABLE,
    FLOW_SESSION_ROWS_TABLE,
    FLOW_SESSIONS_TABLE,
    FLOW_VARIANTS_TABLE,
    IDENTITY_LINKS_TABLE,
    MESSAGE_DELIVERED_INDEX_TABLE,
    MESSAGE_HOUR_COUNTS_TABLE,
    MESSAGE_ROWS_TABLE,
    MESSAGE_STATE_TABLE,
    MESSAGE_STATUS_MINUTE_TABLE,
    MESSAGE_STATUSES_TABLE,
    OUTBOUND_MESSAGES_TABLE,
    PERSON_HOUR_SETS_TABLE,
    PERSON_LINKS_TABLE,
    ROLLUP_PROGRESS_TABLE,
    USER_PREFERENCES_TABLE,
)

logger = logging.getLogger(__name__)

Say = Callable[[str], None]


class RebuildError(WarehouseError):
    """The schema is not what the rebuild knows how to replay (a view over an unknown source, say)."""


@dataclass(frozen=True)
class Derived:
    """A table the views fill: keyed by time (``time_column``) or by entity (``key``, named as in its sources)."""

    table: str
    time_column: str = ""
    key: tuple[str, ...] = ()


DERIVED = (
    Derived(MESSAGE_STATUS_MINUTE_TABLE, time_column="minute"),
    Derived(FLOW_SENDS_BY_TIME_TABLE, time_column="sent_at"),
    Derived(FLOW_VARIANTS_TABLE, key=("flow_id", "flow_version", "campaign")),
    Derived(MESSAGE_STATE_TABLE, key=("wamid",)),
    Derived(FLOW_SESSIONS_TABLE, key=("flow_token",)),
    Derived(FLOW_SELECTIONS_TABLE, key=("flow_id", "flow_version", "screen")),
    Derived(FLOW_HEALTH_CURRENT_TABLE, key=("flow_id", "event")),
    Derived(MESSAGE_DELIVERED_INDEX_TABLE, key=("wamid",)),
    Derived(PERSON_LINKS_TABLE, time_column="seen_at"),
    Derived(OUTBOUND_MESSAGES_TABLE, key=("wamid",)),
    Derived(FLOW_SESSION_OPENS_TABLE, key=("flow_token",)),
)
# The event time of each raw table's rows: what ``since``/``until`` select.
SOURCE_TIME = {
    MESSAGE_STATUSES_TABLE: "occurred_at",
    FLOW_SENDS_TABLE: "sent_at",
    FLOW_NODE_EVENTS_TABLE: "occurred_at",
    FLOW_COMPLETIONS_TABLE: "occurred_at",
    FLOW_HEALTH_EVENTS_TABLE: "occurred_at",
    USER_PREFERENCES_TABLE: "occurred_at",
    IDENTITY_LINKS_TABLE: "occurred_at",
}
# How long the rollup waits for a rebuild that stopped reporting (crashed): each step renews it.
REBUILD_LEASE = timedelta(hours=1)
_TARGET = re.compile(r"\bTO\s+`?(\w+)`?\.`?(\w+)`?")
_RANGE = "{since:DateTime('UTC')}"


@dataclass(frozen=True)
class View:
    """A materialized view: the query that turns rows of ``source`` into rows of ``target``."""

    name: str
    source: str
    target: str
    select: str

    def over(self, database: str, condition: str) -> str:
        """The view's query over the source rows that satisfy ``condition``."""
        needle = f"FROM {database}.{self.source}"
        if self.select.count(needle) != 1:
            raise RebuildError(f"view {self.name}: expected one '{needle}' in its query")
        return self.select.replace(
            needle, f"FROM (SELECT * FROM {database}.{self.source} WHERE {condition}) AS {self.source}")


def views(client: Client, database: str) -> list[View]:
    """Every materialized view of ``database`` that fills a table of :data:`DERIVED`."""
    sources = {
        view: table
        for table, dependents in client.query(
            "SELECT name, dependencies_table FROM system.tables WHERE database = {db:String}",
            parameters={"db": database}).result_rows
        for view in dependents
    }
    found = []
    derived = {d.table for d in DERIVED}
    for name, select, create in client.query(
        "SELECT name, as_select, create_table_query FROM system.tables "
        "WHERE database = {db:String} AND engine = 'MaterializedView' ORDER BY name",
        parameters={"db": database},
    ).result_rows:
        target = _TARGET.search(create)
        if target is None or target.group(2) not in derived:
            continue  # internal views (touches of the rollup) are not rebuilt
        if name not in sources or sources[name] not in SOURCE_TIME:
            raise RebuildError(f"view {name}: its source {sources.get(name)!r} is not a known raw table")
        found.append(View(name, sources[name], target.group(2), select))
    return found


@dataclass(frozen=True)
class Step:
    """One statement of a rebuild, with what it does in words (for the progress line)."""

    what: str
    sql: str


def plan(client: Client, database: str, *, tables: tuple[str, ...] = (), since: datetime | None = None,
         until: datetime | None = None, began: datetime = EPOCH) -> list[Step]:
    """The statements that rebuild ``tables`` (default: every derived table, the resolved sessions and messages) for the
    range (default: all); ``began``: when the rebuild began (the resolved sessions' time)."""
    chosen = [d for d in DERIVED if not tables or d.table in tables]
    all_views = views(client, database)
    # The columns a view writes: all but those filled by a DEFAULT (a view's query names them positionally).
    written: dict[str, list[str]] = {}
    for table, column in client.query(
            "SELECT table, name FROM system.columns WHERE database = {db:String} AND default_kind = '' "
            "ORDER BY table, position", parameters={"db": database}).result_rows:
        written.setdefault(table, []).append(column)
    steps: list[Step] = []
    for derived in chosen:
        mine = [view for view in all_views if view.target == derived.table]
        into = f"INSERT INTO {database}.{derived.table} ({', '.join(written[derived.table])}) "
        if since is None and until is None:
            steps.append(Step(f"{derived.table}: empty it", f"TRUNCATE TABLE {database}.{derived.table}"))
            for view in mine:
                for partition in _partitions(client, database, view.source):
                    steps.append(Step(
                        f"{derived.table} ← {view.source} (partition {partition})",
                        into + view.over(database, f"_partition_id = {_quoted(partition)}"),
                    ))
        elif derived.time_column:
            steps.append(Step(f"{derived.table}: remove the range",
                              f"DELETE FROM {database}.{derived.table} WHERE {_in_range(derived.time_column)}"))
            for view in mine:
                steps.append(Step(f"{derived.table} ← {view.source} (range)",
                                  into + view.over(database, _in_range(SOURCE_TIME[view.source]))))
        else:
            key = ", ".join(derived.key)
            touched = " UNION DISTINCT ".join(
                f"SELECT {key} FROM {database}.{view.source} WHERE {_in_range(SOURCE_TIME[view.source])}"
                for view in mine)
            # The entities are fixed first: the delete below must not change which entities the inserts replay.
            steps.append(Step(f"{derived.table}: remove the entities with events in the range",
                              f"DELETE FROM {database}.{derived.table} WHERE ({key}) IN ({touched})"))
            for view in mine:
                steps.append(Step(f"{derived.table} ← {view.source} (every event of those entities)",
                                  into + view.over(database, f"({key}) IN ({touched})")))
    if not tables or FLOW_SESSION_ROWS_TABLE in tables:
        steps += _session_steps(database, ranged=since is not None or until is not None, began=began)
    if not tables or {FLOW_SESSION_ROWS_TABLE, FLOW_HOUR_PATHS_TABLE, FLOW_HOUR_VISITS_TABLE} & set(tables):
        # Every hour again, whatever the range: a session resolved again may have left another hour.
        steps += [Step(what, sql) for what, sql in flow_hours.rebuild_statements(began)]
    if not tables or {OUTBOUND_MESSAGES_TABLE, MESSAGE_ROWS_TABLE, MESSAGE_HOUR_COUNTS_TABLE,
                         PERSON_HOUR_SETS_TABLE} & set(tables):
        steps += _message_steps(client, database, ranged=since is not None or until is not None, began=began)
    return steps


def _message_steps(client: Client, database: str, *, ranged: bool, began: datetime) -> list[Step]:
    """Resolved messages, after the tables they are resolved from: all of them, or those with a status (or a
    first-party send) in the range; then every hour's sums again (a message resolved again may have left an hour)."""
    which = "1"
    if ranged:
        which = (f"wamid IN (SELECT wamid FROM {database}.{MESSAGE_STATUSES_TABLE} WHERE {_in_range('occurred_at')} "
                 f"UNION DISTINCT SELECT wamid FROM {database}.{FLOW_SENDS_TABLE} WHERE {_in_range('sent_at')})")
    messages = int(client.command(f"SELECT count() FROM {database}.{OUTBOUND_MESSAGES_TABLE}"))  # type: ignore[arg-type]
    hashes = max(1, -(-messages // message_hours.BULK_MESSAGES))
    return [Step(what, sql) for what, sql in message_hours.rebuild_statements(began, which=which, hashes=hashes)]


def _session_steps(database: str, *, ranged: bool, began: datetime) -> list[Step]:
    """Resolved sessions, after the tables they are resolved from: all of them, or those with an event (or a
    status of their Flow message) in the range, which first lose their rows wherever they are."""
    if not ranged:
        which = "1"
        steps = [Step(f"{table}: empty it", f"TRUNCATE TABLE {database}.{table}")
                 for table in (FLOW_SESSION_ROWS_TABLE, FLOW_SESSION_KEYS_TABLE)]
    else:
        which = (f"flow_token IN (SELECT flow_token FROM {database}.{FLOW_SENDS_TABLE} WHERE {_in_range('sent_at')} "
                 + "".join(f"UNION DISTINCT SELECT flow_token FROM {database}.{table} WHERE {_in_range('occurred_at')} "
                           for table in (FLOW_NODE_EVENTS_TABLE, FLOW_COMPLETIONS_TABLE))
                 + f"UNION DISTINCT SELECT flow_token FROM {database}.{FLOW_MESSAGE_INDEX_TABLE} WHERE wamid IN ("
                   f"SELECT wamid FROM {database}.{MESSAGE_STATUSES_TABLE} WHERE {_in_range('occurred_at')}))")
        steps = [Step(f"{FLOW_SESSION_ROWS_TABLE}: remove the sessions with events in the range",
                      f"DELETE FROM {database}.{FLOW_SESSION_ROWS_TABLE} WHERE {which}")]
    statements = rebuild_rows(began, which=which, progress=not ranged)
    steps.append(Step(f"{FLOW_SESSION_ROWS_TABLE} ← {FLOW_SESSIONS_TABLE}, {MESSAGE_STATE_TABLE} (resolved)",
                      statements[0]))
    steps += [Step(f"{FLOW_SESSION_KEYS_TABLE}, rollup progress", sql) for sql in statements[1:]]
    return steps


def rebuild(client: Client, database: str, *, tables: tuple[str, ...] = (), since: datetime | None = None,
            until: datetime | None = None, say: Say = logger.info) -> int:
    """Run the rebuild (see the module docstring) as ``client`` (the admin); returns the statements run."""
    since = _minute(since) if since is not None else None
    until = _minute(until) if until is not None else None
    if since is not None and until is not None and since >= until:
        raise RebuildError(f"--since ({since}) must be before --until ({until})")
    parameters = {"since": since or EPOCH, "until": until or datetime(2200, 1, 1)}
    began = server_now(client)
    steps = plan(client, database, tables=tables, since=since, until=until, began=began)
    _lease(client)
    try:
        for number, step in enumerate(steps, start=1):
            say(f"rebuild [{number}/{len(steps)}] {step.what}")
            client.command(step.sql, parameters=parameters,
                           settings={"mutations_sync": 2, "lightweight_deletes_sync": 2})
            _lease(client)
        if not tables or MESSAGE_STATUS_MINUTE_TABLE in tables:
            say(f"rebuild [{len(steps)}/{len(steps)}] delivery counts: resealing")
            DeliveryRollup(client, seal_after_s=0, reads_interval_s=0).reseal(
                since=since, until=until, sealed_at=began)
    finally:
        client.insert(ROLLUP_PROGRESS_TABLE, [(REBUILDING, EPOCH, server_now(client))],
                      column_names=["task", "until", "updated_at"])
    say(f"rebuild done: {len(steps)} statements")
    return len(steps)


def _lease(client: Client) -> None:
    """Tell the rollup to wait: a rebuild runs until the lease ends (renewed at every step)."""
    now = server_now(client)
    client.insert(ROLLUP_PROGRESS_TABLE, [(REBUILDING, now + REBUILD_LEASE, now)],
                  column_names=["task", "until", "updated_at"])


def _partitions(client: Client, database: str, table: str) -> list[str]:
    rows = client.query(
        "SELECT DISTINCT partition_id FROM system.parts WHERE database = {db:String} AND table = {t:String} "
        "AND active ORDER BY partition_id", parameters={"db": database, "t": table}).result_rows
    return [row[0] for row in rows]


def _quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _in_range(column: str) -> str:
    return f"{column} >= {_RANGE} AND {column} < {{until:DateTime('UTC')}}"


def _minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0, tzinfo=None)
