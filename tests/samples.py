"""Sample Flow JSON shared by tests: A → B → C, with a selection on B."""

from __future__ import annotations

from typing import Any


def screen(screen_id: str, title: str, action: dict[str, Any], *extra: dict[str, Any],
           terminal: bool = False) -> dict[str, Any]:
    footer = {"type": "Footer", "label": "Next", "on-click-action": action}
    return {"id": screen_id, "title": title, "terminal": terminal,
            "layout": {"type": "SingleColumnLayout", "children": [*extra, footer]}}


def navigate(target: str) -> dict[str, Any]:
    return {"name": "navigate", "next": {"type": "screen", "name": target}}


FLOW_JSON: dict[str, Any] = {
    "version": "6.0",
    "screens": [
        screen("A", "Start", navigate("B")),
        screen("B", "Plan", navigate("C"),
               {"type": "RadioButtonsGroup", "name": "plan", "data-source": [{"id": "pro", "title": "Pro"}]}),
        screen("C", "Done", {"name": "complete", "payload": {}}, terminal=True),
    ],
}
