"""The warehouse's write path: which table each kind of contract event goes to, and its insert data.

Insert data is column-oriented (one list per column, in the order :mod:`warehouse.tables` gives),
the cheapest shape for clickhouse-connect's Native inserts. Events of one kind are transposed once,
in C (``zip(*rows)``), and each column is picked by name: nothing here knows a table's width.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from clickhouse_connect.driver.client import Client

from contract.events import (
    FlowCompletion,
    FlowDefinitionRegistered,
    FlowHealth,
    FlowSent,
    IdentityLink,
    MessageStatus,
    NodeEvent,
    RejectedEvent,
    UserPreference,
    WebhookError,
)
from contract.exceptions import FlowDefinitionError
from contract.flowjson import FlowDefinition, parse_flow_json
from warehouse import tables

# Column → event field, where the names differ (times in milliseconds are ``*_ms`` in the contract).
_RECEIVED = {"received_at": "received_at_ms"}
_OCCURRED_MS = {"occurred_at": "occurred_at_ms", "received_at": "received_at_ms"}
_SENT_MS = {"sent_at": "occurred_at_ms", "received_at": "received_at_ms"}


@dataclass(frozen=True, slots=True)
class FlowRegistration:
    """A registered Flow version, parsed once: its definition, the Flow JSON as registered, and when."""

    definition: FlowDefinition
    flow_json: str
    registered_at_ms: int
    flow_name: str = ""

    @classmethod
    def parse(cls, registered: FlowDefinitionRegistered) -> FlowRegistration | None:
        """The parsed registration; None when its Flow JSON is invalid (the receiver refuses those already)."""
        try:
            definition = parse_flow_json(registered.flow_json, flow_id=registered.flow_id,
                                         version=registered.flow_version)
        except FlowDefinitionError:
            return None
        return cls(definition, registered.flow_json, registered.received_at_ms, registered.flow_name)


@dataclass(frozen=True, slots=True)
class Insert:
    """One table's rows of a batch, column-oriented: ``data[i]`` holds column ``columns[i]``."""

    table: str
    columns: tuple[str, ...]
    data: list[list[Any]]
    rows: int


def inserts(
    *,
    statuses: Sequence[MessageStatus] = (),
    completions: Sequence[FlowCompletion] = (),
    flow_sends: Sequence[FlowSent] = (),
    node_events: Sequence[NodeEvent] = (),
    definitions: Sequence[FlowRegistration] = (),
    flow_health: Sequence[FlowHealth] = (),
    preferences: Sequence[UserPreference] = (),
    identity_links: Sequence[IdentityLink] = (),
    webhook_errors: Sequence[WebhookError] = (),
    rejected: Sequence[RejectedEvent] = (),
) -> list[Insert]:
    """The inserts that store these events: one per table that gets rows, registrations first."""
    out: list[Insert] = []
    if definitions:
        out.append(_from_rows(tables.FLOW_DEFINITIONS_TABLE, tables.FLOW_DEFINITION_COLUMNS,
                              [_definition_row(r) for r in definitions]))
        out.append(_from_rows(tables.FLOW_SCREENS_TABLE, tables.FLOW_SCREEN_COLUMNS,
                              [row for r in definitions for row in _screen_rows(r)]))
    for table, columns, events, renames in (
        (tables.FLOW_SENDS_TABLE, tables.FLOW_SEND_COLUMNS, flow_sends, _SENT_MS),
        (tables.FLOW_NODE_EVENTS_TABLE, tables.NODE_EVENT_COLUMNS, node_events, _OCCURRED_MS),
        (tables.MESSAGE_STATUSES_TABLE, tables.STATUS_COLUMNS, statuses, _RECEIVED),
        (tables.FLOW_COMPLETIONS_TABLE, tables.COMPLETION_COLUMNS, completions, _RECEIVED),
        (tables.FLOW_HEALTH_EVENTS_TABLE, tables.FLOW_HEALTH_COLUMNS, flow_health, _RECEIVED),
        (tables.USER_PREFERENCES_TABLE, tables.USER_PREFERENCE_COLUMNS, preferences, _RECEIVED),
        (tables.IDENTITY_LINKS_TABLE, tables.IDENTITY_LINK_COLUMNS, identity_links, _RECEIVED),
        (tables.WEBHOOK_ERRORS_TABLE, tables.WEBHOOK_ERROR_COLUMNS, webhook_errors, _RECEIVED),
        (tables.REJECTED_EVENTS_TABLE, tables.REJECTED_COLUMNS, rejected, _RECEIVED),
    ):
        if events:
            out.append(Insert(table, columns, _columns(events, columns, renames), len(events)))
    return [insert for insert in out if insert.rows]


def write(client: Client, *batch: Insert) -> None:
    """Store the inserts in order; raises :class:`~warehouse.exceptions.WarehouseError` when the warehouse fails."""
    for insert in batch:
        client.insert(insert.table, insert.data, column_names=list(insert.columns), column_oriented=True,
                      column_type_names=_wire_types(client, insert))


# Each client's tables' column types as sent: described once per client, not before every insert.
_DESCRIBED: weakref.WeakKeyDictionary[Client, dict[str, dict[str, str]]] = weakref.WeakKeyDictionary()
_LOW_CARDINALITY = re.compile(r"LowCardinality\(((?:[^()]|\([^()]*\))*)\)")


def wire_type(column_type: str) -> str:
    """The type a column's values are sent as: ``LowCardinality(T)`` as plain ``T`` (the server builds the
    dictionary, in C++, instead of the client, in Python), every other type as it is."""
    return _LOW_CARDINALITY.sub(r"\1", column_type)


def _wire_types(client: Client, insert: Insert) -> list[str]:
    tables = _DESCRIBED.setdefault(client, {})
    types = tables.get(insert.table)
    if types is None or any(name not in types for name in insert.columns):
        rows = client.query(f"DESCRIBE TABLE {insert.table}").result_rows
        types = tables[insert.table] = {row[0]: wire_type(row[1]) for row in rows}
    return [types[name] for name in insert.columns]


def _columns(events: Sequence[Any], names: Sequence[str], renames: Mapping[str, str]) -> list[list[Any]]:
    """One C-level transpose of the structs' fields (all of one type), then each column by name."""
    fields = type(events[0]).__struct_fields__
    transposed = list(zip(*map(msgspec.structs.astuple, events), strict=True))
    return [list(transposed[fields.index(renames.get(name, name))]) for name in names]


def _from_rows(table: str, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> Insert:
    return Insert(table, columns, [[row[name] for row in rows] for name in columns], len(rows))


def _definition_row(registration: FlowRegistration) -> dict[str, Any]:
    definition = registration.definition
    return {"flow_id": definition.flow_id, "flow_version": definition.version, "flow_json": registration.flow_json,
            "registered_at": registration.registered_at_ms, "flow_name": registration.flow_name}


def _screen_rows(registration: FlowRegistration) -> list[dict[str, Any]]:
    definition = registration.definition
    return [
        {"flow_id": definition.flow_id, "flow_version": definition.version, "screen": screen.id,
         "position": screen.position, "title": screen.title, "terminal": int(screen.terminal),
         "success": int(screen.success), "component_types": list(screen.component_types),
         "next_screens": list(screen.next_screens), "selection_fields": list(screen.selection_fields),
         "registered_at": registration.registered_at_ms}
        for screen in definition.screens
    ]
