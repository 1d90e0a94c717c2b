"""The flow catalog while the warehouse is down: the reload fails quietly and known versions still check events."""

from __future__ import annotations

import asyncio

from contract.events import NodeEvent, RejectedEvent
from contract.flowjson import parse_flow_json
from stream.catalog import CatalogEntry, FlowCatalog
from tests.samples import FLOW_JSON
from warehouse.exceptions import WarehouseUnavailableError


def node(version: str, screen: str) -> NodeEvent:
    return NodeEvent(event_id=f"n.{version}.{screen}", flow_token="tok", flow_id="F1", flow_version=version,
                     screen=screen, action="view", occurred_at_ms=1, received_at_ms=1)


def test_a_failed_reload_keeps_checking_against_what_is_known() -> None:
    calls = []

    def load() -> dict[tuple[str, str], CatalogEntry]:
        calls.append(1)
        raise WarehouseUnavailableError("connection refused")

    catalog = FlowCatalog(load)
    catalog.learn(parse_flow_json(FLOW_JSON, flow_id="F1", version="1"))
    asyncio.run(catalog.refresh_for({("F1", "1"), ("F1", "2")}))
    assert calls == [1]
    assert isinstance(catalog.resolve(node("1", "Z")), RejectedEvent)
    unknown = node("2", "Z")
    assert catalog.resolve(unknown) is unknown  # nothing to check it against: accepted as it came
