"""Numbered SQL migrations, applied in order, each at most once (versions recorded in a table)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

from clickhouse_connect.driver.client import Client

from warehouse.client import connect, database_of
from warehouse.retention import apply_retention
from warehouse.tables import SCHEMA_MIGRATIONS_TABLE

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
        applied = _apply(client)
        if retention_days is not None:
            apply_retention(client, retention_days)
        return applied
    finally:
        client.close()


def _apply(client: Client) -> list[Migration]:
    client.command(
        f"CREATE TABLE IF NOT EXISTS {SCHEMA_MIGRATIONS_TABLE} "
        "(version UInt32, name String, applied_at DateTime('UTC') DEFAULT now()) "
        "ENGINE = ReplacingMergeTree ORDER BY version"
    )
    query = f"SELECT version FROM {SCHEMA_MIGRATIONS_TABLE} FINAL"
    applied = {row[0] for row in client.query(query).result_rows}
    done = []
    for migration in load_migrations():
        if migration.version in applied:
            continue
        for statement in migration.statements:
            client.command(statement)
        client.insert(SCHEMA_MIGRATIONS_TABLE, [[migration.version, migration.name]], column_names=["version", "name"])
        logger.info("applied migration %s", migration.name)
        done.append(migration)
    return done
