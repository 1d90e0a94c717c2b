from __future__ import annotations

import re

from warehouse.migrate import load_migrations
from warehouse.tables import NEVER_DATETIME, NEVER_DATETIME64


def test_migrations_have_unique_increasing_numbers() -> None:
    versions = [m.version for m in load_migrations()]
    assert versions == sorted(set(versions))
    assert versions[0] == 1


def test_every_migration_only_lists_statements() -> None:
    for migration in load_migrations():
        assert migration.statements, migration.name
        for statement in migration.statements:
            assert not statement.rstrip().endswith(";")
            assert statement.split()[0].upper() in {"CREATE", "ALTER", "DROP", "RENAME", "INSERT"}, statement[:40]


def test_first_migration_creates_statuses_and_minute_aggregate() -> None:
    first = load_migrations()[0]
    created = [re.match(r"CREATE (?:TABLE|MATERIALIZED VIEW) IF NOT EXISTS (\w+)", s) for s in first.statements]
    assert [m.group(1) if m else None for m in created] == [
        "message_statuses", "message_status_minute", "message_status_minute_mv",
    ]


def test_the_never_times_the_queries_compare_against_are_the_migrations() -> None:
    sessions = next(m for m in load_migrations() if m.name == "0004_flow_sessions.sql")
    datetime64 = set(re.findall(r"toDateTime64\('([^']*)', 3, 'UTC'\)", sessions.sql))
    datetime = set(re.findall(r"toDateTime\('([^']*)', 'UTC'\)", sessions.sql))
    assert datetime64 == {NEVER_DATETIME64}
    assert datetime == {NEVER_DATETIME}
    for migration in load_migrations():  # no other migration writes another "never"
        assert set(re.findall(r"toDateTime(?:64)?\('([^']*)'", migration.sql)) <= {NEVER_DATETIME64, NEVER_DATETIME}
