"""The data dictionary (docs/warehouse.md) against a migrated warehouse server: every table and column with its
type and meaning (= its ClickHouse comment), every materialized view, and every example query, which must run.

The document's format, which these tests read: a table's section opens with a heading "### `name`", holds the
lines "- **Fed by:** ..." and "- **Retention:** raw|derived|forever|own...", and one row per column,
"| `column` | `type` | meaning |", in the table's column order. Views are the rows
"| `view` | `reads` | `writes` | what it adds |" under "## Materialized views"; example queries are the
```sql blocks.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from clickhouse_connect.driver.client import Client

from contract.events import FlowCompletion, FlowSent, MessageStatus, NodeEvent, UserPreference, event_id
from tests.conftest import WarehouseServer
from warehouse import writer
from warehouse.migrate import migrate
from warehouse.retention import DERIVED, RAW

ServerFactory = Callable[..., WarehouseServer]

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "warehouse.md"
DATABASE = "flowscope"

_TABLE_HEADING = re.compile(r"^### `(\w+)`$")
_HEADING = re.compile(r"^#{1,6} ")
_RETENTION = re.compile(r"^- \*\*Retention:\*\* (raw|derived|forever|own)\b")
_FED_BY = re.compile(r"^- \*\*Fed by:\*\* \S")
_CODE = re.compile(r"^`([^`]+)`$")
_SQL = re.compile(r"^```sql\n(.*?)^```$", re.DOTALL | re.MULTILINE)


@dataclass(frozen=True)
class DocumentedTable:
    name: str
    retention: str  # raw, derived, forever or own (a TTL its DDL sets)
    columns: list[tuple[str, str, str]]  # (name, type, meaning), in the table's order


def _cells(row: str) -> list[str]:
    return [cell.strip() for cell in row.strip().removeprefix("|").removesuffix("|").split("|")]


def _code(cell: str, row: str) -> str:
    match = _CODE.match(cell)
    assert match, f"expected a `code` cell, got {cell!r} in: {row}"
    return match.group(1)


def documented_tables(text: str) -> dict[str, DocumentedTable]:
    """Every table section of the document, by table name."""
    tables: dict[str, DocumentedTable] = {}
    name = ""
    sections: dict[str, list[str]] = {}
    for line in text.splitlines():
        heading = _TABLE_HEADING.match(line)
        if heading:
            name = heading.group(1)
            assert name not in sections, f"table {name} documented twice"
            sections[name] = []
        elif _HEADING.match(line):
            name = ""
        elif name:
            sections[name].append(line)
    for name, lines in sections.items():
        retention = [m.group(1) for m in map(_RETENTION.match, lines) if m]
        assert len(retention) == 1, f"{name}: one '- **Retention:** raw|derived|forever|own' line"
        assert sum(1 for line in lines if _FED_BY.match(line)) == 1, f"{name}: one '- **Fed by:**' line"
        rows = [line for line in lines if line.startswith("|")]
        assert rows[:2] == ["| column | type | meaning |", "|---|---|---|"], f"{name}: a | column | type | meaning |"
        columns = []
        for row in rows[2:]:
            cells = _cells(row)
            assert len(cells) == 3, f"{name}: three cells (no '|' in a meaning): {row}"
            column, type_, meaning = _code(cells[0], row), _code(cells[1], row), cells[2]
            assert meaning, f"{name}.{column} has no meaning"
            columns.append((column, type_, meaning))
        tables[name] = DocumentedTable(name, retention[0], columns)
    return tables


def documented_views(text: str) -> dict[str, tuple[str, str]]:
    """view → (the table it reads, the table it writes), from the "## Materialized views" section."""
    section = text.split("\n## Materialized views\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    views = {}
    for row in rows:
        cells = _cells(row)
        assert len(cells) == 4, row
        views[_code(cells[0], row)] = (_code(cells[1], row), _code(cells[2], row))
    return views


def example_queries(text: str) -> list[str]:
    return [match.group(1).strip() for match in _SQL.finditer(text)]


def _migrated(factory: ServerFactory) -> WarehouseServer:
    server = factory()
    migrate(server.url_for("admin", DATABASE))
    return server


def _engines(client: Client) -> dict[str, str]:
    return dict(client.query(f"SELECT name, engine FROM system.tables WHERE database = '{DATABASE}'").result_rows)


def test_the_document_the_comments_and_the_live_schema_agree(warehouse_server_factory: ServerFactory) -> None:
    server = _migrated(warehouse_server_factory)
    client = server.client(database=DATABASE)
    documented = documented_tables(DOCUMENT.read_text())
    engines = _engines(client)
    tables = {name for name, engine in engines.items() if engine != "MaterializedView"}
    assert set(documented) == tables, "documented tables (left) differ from the live ones (right)"

    live: dict[str, list[tuple[str, str, str]]] = {}
    for table, column, type_, comment in client.query(
        f"SELECT table, name, type, comment FROM system.columns WHERE database = '{DATABASE}' "
        "ORDER BY table, position"
    ).result_rows:
        if table in tables:
            live.setdefault(table, []).append((column, type_, comment))
    for name in sorted(tables):
        columns = documented[name].columns
        assert [(c, t) for c, t, _ in columns] == [(c, t) for c, t, _ in live[name]], f"{name}: columns and types"
        assert [(c, m) for c, _, m in columns] == [(c, m) for c, _, m in live[name]], f"{name}: comments"
    # Migrated without the retention setting, only the tables with a TTL of their own have one.
    ttls = {name: " TTL " in engine_full for name, engine_full in client.query(
        f"SELECT name, engine_full FROM system.tables WHERE database = '{DATABASE}'").result_rows}
    assert {name for name in tables if ttls[name]} == {name for name in tables if documented[name].retention == "own"}


def test_the_document_says_how_long_each_table_keeps_its_rows() -> None:
    documented = documented_tables(DOCUMENT.read_text())
    raw, derived = {r.table for r in RAW}, {r.table for r in DERIVED}
    for name, table in documented.items():
        expected = {"raw"} if name in raw else {"derived"} if name in derived else {"forever", "own"}
        assert table.retention in expected, name
    assert raw | derived <= set(documented)


def test_the_document_lists_every_materialized_view_with_what_it_reads_and_writes(
    warehouse_server_factory: ServerFactory,
) -> None:
    server = _migrated(warehouse_server_factory)
    client = server.client(database=DATABASE)
    rows = client.query(
        f"SELECT name, engine, create_table_query, dependencies_table FROM system.tables WHERE database = '{DATABASE}'"
    ).result_rows
    reads = {view: table for table, _, _, dependents in rows for view in dependents}
    live = {}
    for name, engine, ddl, _ in rows:
        if engine == "MaterializedView":
            writes = re.match(r"CREATE MATERIALIZED VIEW \S+ TO (?:\w+\.)?(\w+)", ddl)
            assert writes, ddl
            live[name] = (reads[name], writes.group(1))
    assert documented_views(DOCUMENT.read_text()) == live


def test_every_example_query_runs_as_the_analyst_and_answers(warehouse_server_factory: ServerFactory) -> None:
    server = _migrated(warehouse_server_factory)
    writer.write(server.client("writer", database=DATABASE), *writer.inserts(**_sample_events()))
    analyst = server.client("analyst", database=DATABASE)
    queries = example_queries(DOCUMENT.read_text())
    assert len(queries) >= 5
    for sql in queries:
        rows = analyst.query(sql).result_rows
        assert rows, f"no row on the sample events:\n{sql}"


def _sample_events() -> dict[str, list[object]]:
    """Three sessions sent two hours ago: completed, abandoned on screen B, and failed."""
    t0 = (int(time.time()) - 7200) * 1000
    sends, statuses, nodes, completions = [], [], [], []
    for n, outcome in enumerate(("completed", "abandoned", "failed"), start=1):
        wamid, token = f"wamid.{n}", f"token-{n}"
        sends.append(FlowSent(event_id=event_id("flow_sent", wamid), wamid=wamid, flow_id="F1", flow_version="2",
                              flow_token=token, campaign="spring", phone_number_id="P1", occurred_at_ms=t0,
                              received_at_ms=t0))
        for value, offset_s in (("sent", 1), ("failed", 2)) if outcome == "failed" else (
                ("sent", 1), ("delivered", 2), ("read", 30)):
            statuses.append(MessageStatus(
                event_id=event_id("status", wamid, value), waba_id="W1", phone_number_id="P1", wamid=wamid,
                status=value, occurred_at=t0 // 1000 + offset_s, received_at_ms=t0, recipient_hash="h",
                error_code=131049 if value == "failed" else 0,
                error_title="Message not delivered" if value == "failed" else "", person_hash="h", country="BR",
                pricing_category="" if value == "failed" else "marketing",
                pricing_type="" if value == "failed" else "regular", billable=-1 if value == "failed" else 1))
        if outcome == "failed":
            continue
        for screen, action, offset_s in (("A", "view", 40), ("A", "submit", 50), ("B", "view", 51)):
            at = t0 + offset_s * 1000
            nodes.append(NodeEvent(event_id=event_id("node", token, screen, action, str(at)), flow_token=token,
                                   flow_id="F1", flow_version="2", screen=screen, action=action,
                                   occurred_at_ms=at, received_at_ms=at))
        if outcome == "completed":
            completions.append(FlowCompletion(
                event_id=event_id("nfm_reply", f"reply.{n}"), waba_id="W1", phone_number_id="P1",
                wamid=f"reply.{n}", flow_wamid=wamid, flow_token=token, occurred_at=t0 // 1000 + 90,
                received_at_ms=t0, user_hash="u"))
    stop = UserPreference(event_id=event_id("user_preference", "h", "stop"), waba_id="W1", phone_number_id="P1",
                          category="marketing_messages", value="stop", occurred_at=t0 // 1000 + 3600,
                          received_at_ms=t0 + 3_600_000, phone_hash="h", person_hash="h", country="BR")
    return {"flow_sends": sends, "statuses": statuses, "node_events": nodes, "completions": completions,
            "preferences": [stop]}
