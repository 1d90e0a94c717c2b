from __future__ import annotations

import re

from warehouse.migrate import load_migrations


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
