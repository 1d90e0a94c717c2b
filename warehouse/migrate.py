"""Numbered SQL migrations, applied in order, each at most once (versions recorded in a table)."""

from __future__ import annotations

import logging
import re
from collections.abc import Collection
from dataclasses import dataclass
from importlib import resources

from clickhouse_connect.driver.client import Client

from warehouse.client import connect, database_of
from warehouse.rebuild import DERIVED, SOURCE_TIME, rebuild
from warehouse.retention import apply_retention
from warehouse.tables import (
    FLOW_HOUR_PATHS_TABLE,
    FLOW_HOUR_VISITS_TABLE,
    FLOW_SESSION_ROWS_TABLE,
    MESSAGE_HOUR_COUNTS_TABLE,
    MESSAGE_ROWS_TABLE,
    MESSAGE_STATUS_COUNTS_TABLE,
    MESSAGE_STATUS_HOUR_COUNTS_TABLE,
    MESSAGE_STATUS_MINUTE_TABLE,
    MESSAGES_READ_UNDELIVERED_TABLE,
    PERSON_HOUR_SETS_TABLE,
    SCHEMA_MIGRATIONS_TABLE,
)

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class MigrationError(Exception):
    """The migration files are inconsistent (e.g. two share a number)."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def statements(self) -> list[str]:
        """The file's statements; they are separated by a ``;`` at the end of a line."""
        chunks = re.split(r";\s*(?:\n|$)", self.sql)
        return [code for code in map(_without_comment_lines, chunks) if code]


def _without_comment_lines(chunk: str) -> str:
    return "\n".join(line for line in chunk.splitlines() if not line.strip().startswith("--")).strip()


def load_migrations() -> list[Migration]:
    found: dict[int, Migration] = {}
    for entry in resources.files("warehouse").joinpath("migrations").iterdir():
        match = _NAME.match(entry.name)
        if not match:
            if entry.name.endswith(".sql"):
                raise MigrationError(f"migration file {entry.name!r} is not named NNNN_name.sql")
            continue
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"migrations {found[version].name!r} and {entry.name!r} share number {version}")
        found[version] = Migration(version, entry.name, entry.read_text())
    return [found[v] for v in sorted(found)]


def migrate(url: str, *, retention_days: int | None = None) -> list[Migration]:
    """Create the database if needed and apply every migration not applied yet; returns those applied.

    With ``retention_days`` (``Settings.warehouse_retention_days``), then set every table's TTL for it
    (:mod:`warehouse.retention`; 0 removes them); without, TTLs are left as they are.
    """
    database = database_of(url)
    if not _IDENTIFIER.match(database):
        raise MigrationError(f"unsupported database name {database!r}")
    admin = connect(url, database="default")
    try:
        admin.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    finally:
        admin.close()
    client = connect(url)
    try:
        applied = apply_and_backfill(client, database)
        if retention_days is not None:
            apply_retention(client, retention_days)
        return applied
    finally:
        client.close()


def apply_and_backfill(client: Client, database: str, *, upto: int | None = None) -> list[Migration]:
    """Apply every migration not applied yet (``upto``: only those numbered up to it), then backfill the derived
    tables they created or gave new columns (:func:`backfill_new_derived_tables`); returns those applied."""
    before = _columns(client, database)
    applied = _apply(client, upto=upto)
    after = _columns(client, database)
    backfill_new_derived_tables(client, database, created=set(after) - set(before),
                                altered={table for table in before if table in after and after[table] != before[table]})
    return applied


def backfill_new_derived_tables(client: Client, database: str, *, created: set[str],
                                altered: Collection[str] = ()) -> list[str]:
    """Fill the derived tables a migration just created, or gave new columns (``altered``), from the raw rows
    already stored (a warehouse with history), through :mod:`warehouse.rebuild`, the code ``flowscope warehouse
    rebuild`` runs. The rollup's delivery tables are refilled by rebuilding ``message_status_minute`` (whose rebuild
    reseals them)."""
    changed = created | set(altered)
    if changed & {MESSAGE_STATUS_COUNTS_TABLE, MESSAGE_STATUS_HOUR_COUNTS_TABLE, MESSAGES_READ_UNDELIVERED_TABLE}:
        changed = changed | {MESSAGE_STATUS_MINUTE_TABLE}
    new = tuple(d.table for d in DERIVED if d.table in changed) + tuple(
        table for table in (FLOW_SESSION_ROWS_TABLE, FLOW_HOUR_PATHS_TABLE, FLOW_HOUR_VISITS_TABLE, MESSAGE_ROWS_TABLE,
                            MESSAGE_HOUR_COUNTS_TABLE, PERSON_HOUR_SETS_TABLE)
        if table in changed)
    if new and before_any_raw_row(client, database):
        return []
    if new:
        rebuild(client, database, tables=new)
    return list(new)


def before_any_raw_row(client: Client, database: str) -> bool:
    """True for a warehouse that holds no raw row yet (a first migrate): nothing to backfill."""
    counts = client.query(
        "SELECT sum(total_rows) FROM system.tables WHERE database = {db:String} AND has({raw:Array(String)}, name)",
        parameters={"db": database, "raw": list(SOURCE_TIME)}).result_rows
    return not counts or not counts[0][0]


def _columns(client: Client, database: str) -> dict[str, tuple[str, ...]]:
    """Every table of ``database`` with its columns."""
    rows = client.query("SELECT table, groupArray(name) FROM (SELECT table, name FROM system.columns "
                        "WHERE database = {db:String} ORDER BY table, position) GROUP BY table",
                        parameters={"db": database}).result_rows
    return {name: tuple(columns) for name, columns in rows}


def _apply(client: Client, *, upto: int | None = None) -> list[Migration]:
    client.command(
        f"CREATE TABLE IF NOT EXISTS {SCHEMA_MIGRATIONS_TABLE} "
        "(version UInt32, name String, applied_at DateTime('UTC') DEFAULT now()) "
        "ENGINE = ReplacingMergeTree ORDER BY version"
    )
    query = f"SELECT version FROM {SCHEMA_MIGRATIONS_TABLE} FINAL"
    applied = {row[0] for row in client.query(query).result_rows}
    done = []
    for migration in load_migrations():
        if migration.version in applied or (upto is not None and migration.version > upto):
            continue
        for statement in migration.statements:
            client.command(statement)
        client.insert(SCHEMA_MIGRATIONS_TABLE, [[migration.version, migration.name]], column_names=["version", "name"])
        logger.info("applied migration %s", migration.name)
        done.append(migration)
    return done
