"""A batch groups events by kind and parses each Flow registration once, for the catalog and the writer alike."""

from __future__ import annotations

import asyncio

import msgspec
import orjson

from contract.events import FlowDefinitionRegistered, NodeEvent, RejectedEvent
from stream.catalog import FlowCatalog
from stream.sink import Batch
from tests.samples import FLOW_JSON
from warehouse import tables, writer


def registered(flow_json: str, version: str) -> FlowDefinitionRegistered:
    return FlowDefinitionRegistered(event_id=f"def.{version}", flow_id="F1", flow_version=version,
                                    flow_json=flow_json, received_at_ms=1_790_000_000_000)


def node(screen: str) -> NodeEvent:
    return NodeEvent(event_id=f"n.{screen}", flow_token="tok", flow_id="F1", flow_version="1", screen=screen,
                     action="view", occurred_at_ms=1_790_000_000_000, received_at_ms=1_790_000_000_000)


def test_a_registration_is_parsed_once_and_serves_the_catalog_and_the_writer() -> None:
    batch = Batch()
    batch.add(registered(orjson.dumps(FLOW_JSON).decode(), "1"))
    batch.add(registered('{"screens": []}', "2"))  # the receiver refuses these; one slipping through is skipped
    assert len(batch) == 2
    assert [(r.definition.flow_id, r.definition.version) for r in batch.definitions] == [("F1", "1")]

    catalog = FlowCatalog(dict)
    catalog.learn(batch.definitions[0].definition)
    asyncio.run(catalog.refresh_for({("F1", "1")}))
    init = node("")
    assert catalog.resolve(init) == msgspec.structs.replace(init, screen="A")  # an endpoint INIT: the entry screen
    assert isinstance(catalog.resolve(node("Z")), RejectedEvent)

    inserts = writer.inserts(definitions=batch.definitions)
    assert [(insert.table, insert.rows) for insert in inserts] == [
        (tables.FLOW_DEFINITIONS_TABLE, 1), (tables.FLOW_SCREENS_TABLE, 3)]
