from __future__ import annotations

from typing import Any

import pytest

from contract.exceptions import FlowDefinitionError
from contract.flowjson import parse_flow_json
from tests.samples import FLOW_JSON, navigate, screen


def test_static_flow_screens_follow_navigate_actions() -> None:
    definition = parse_flow_json(FLOW_JSON, flow_id="F1", version="1")
    assert [(s.id, s.position, s.title, s.terminal) for s in definition.screens] == [
        ("A", 0, "Start", False), ("B", 1, "Plan", False), ("C", 2, "Done", True),
    ]
    assert definition.entry == "A"
    b = definition.screens[1]
    assert (b.component_types, b.next_screens, b.selection_fields) == (("Footer", "RadioButtonsGroup"), ("C",),
                                                                      ("plan",))


def test_routing_model_orders_branches_breadth_first() -> None:
    document: dict[str, Any] = {
        "version": "6.0", "data_api_version": "3.0",
        "routing_model": {"PLAN": ["PRO", "BASIC"], "PRO": ["SUMMARY"], "BASIC": ["SUMMARY"], "SUMMARY": []},
        "screens": [
            screen("SUMMARY", "Summary", {"name": "complete", "payload": {}}, terminal=True),
            screen("BASIC", "Basic", {"name": "data_exchange", "payload": {}}),
            screen("PRO", "Pro", {"name": "data_exchange", "payload": {}}),
            screen("PLAN", "Plan", {"name": "data_exchange", "payload": {}}),
        ],
    }
    definition = parse_flow_json(document, flow_id="F2", version="3")
    assert [s.id for s in definition.screens] == ["PLAN", "PRO", "BASIC", "SUMMARY"]
    assert definition.screens[0].next_screens == ("PRO", "BASIC")


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ("not json", "Flow JSON is not valid JSON"),
        ({"screens": []}, "Flow JSON needs a non-empty 'screens' list"),
        ({"screens": [{"title": "x"}]}, "screens[0] needs a string 'id'"),
        ({"screens": [screen("A1", "x", {"name": "complete"}, terminal=True)]}, "screen id 'A1' may contain only"),
        ({"screens": [screen("A", "x", {"name": "complete"}, terminal=True)] * 2}, "screen id 'A' appears twice"),
        ({"screens": [screen("A", "x", navigate("B"))]}, "screen 'A' navigates to unknown screen 'B'"),
        ({"screens": [screen("A", "x", {"name": "complete"})]}, "Flow JSON has no terminal screen"),
        ({"routing_model": {"A": ["Z"]}, "screens": [screen("A", "x", {"name": "complete"}, terminal=True)]},
         "routing_model['A'] names unknown screen 'Z'"),
    ],
)
def test_invalid_flow_json_is_refused_with_a_reason(document: Any, reason: str) -> None:
    with pytest.raises(FlowDefinitionError) as info:
        parse_flow_json(document, flow_id="F", version="1")
    assert str(info.value).startswith(reason)
