"""Meta's Flow JSON → the flow's screens in routing order, with titles, component types and routes.

Routing comes from ``routing_model`` when the flow has one (endpoint flows), else from the
``navigate`` actions of its components (static flows). The entry screen is the one no route leads
to (the first listed screen when every screen is a target). Screens are ordered breadth-first from
the entry, so dashboards show them in the order a user meets them; unreachable screens come last.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson

from contract.exceptions import FlowDefinitionError
from contract.limits import MAX_DEPTH, deeper_than

SCREEN_ID = re.compile(r"^[A-Za-z_]+$")
SELECTION_COMPONENTS = frozenset({"RadioButtonsGroup", "CheckboxGroup", "Dropdown", "ChipsSelector", "NavigationList"})


@dataclass(frozen=True)
class Screen:
    id: str
    position: int
    title: str
    terminal: bool
    success: bool
    component_types: tuple[str, ...]
    next_screens: tuple[str, ...]
    selection_fields: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class FlowDefinition:
    flow_id: str
    version: str
    screens: tuple[Screen, ...]

    @property
    def entry(self) -> str:
        return self.screens[0].id

    @property
    def screen_ids(self) -> frozenset[str]:
        return frozenset(screen.id for screen in self.screens)


def parse_flow_json(raw: bytes | str | dict[str, Any], *, flow_id: str, version: str) -> FlowDefinition:
    """Validate a Flow JSON document and derive its screens; raises :class:`FlowDefinitionError`."""
    if not flow_id or not version:
        raise FlowDefinitionError("flow_id and version are required")
    try:
        document = raw if isinstance(raw, dict) else orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise FlowDefinitionError(f"Flow JSON is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise FlowDefinitionError("Flow JSON must be an object")
    if deeper_than(document):
        raise FlowDefinitionError(f"Flow JSON is nested deeper than {MAX_DEPTH} levels")
    screens = document.get("screens")
    if not isinstance(screens, list) or not screens:
        raise FlowDefinitionError("Flow JSON needs a non-empty 'screens' list")
    by_id: dict[str, dict[str, Any]] = {}
    for index, screen in enumerate(screens):
        if not isinstance(screen, dict) or not isinstance(screen.get("id"), str):
            raise FlowDefinitionError(f"screens[{index}] needs a string 'id'")
        screen_id = screen["id"]
        if not SCREEN_ID.match(screen_id):
            raise FlowDefinitionError(f"screen id {screen_id!r} may contain only letters and underscores")
        if screen_id in by_id:
            raise FlowDefinitionError(f"screen id {screen_id!r} appears twice")
        by_id[screen_id] = screen
    routes = _routes(document, by_id)
    entry = _entry(list(by_id), routes)
    order = _breadth_first(entry, routes, list(by_id))
    result = []
    for position, screen_id in enumerate(order):
        screen = by_id[screen_id]
        components = list(_components(screen.get("layout")))
        result.append(
            Screen(
                id=screen_id,
                position=position,
                title=str(screen.get("title") or screen_id),
                terminal=bool(screen.get("terminal")),
                success=bool(screen.get("success")),
                component_types=tuple(sorted({str(c.get("type")) for c in components if c.get("type")})),
                next_screens=tuple(routes.get(screen_id, ())),
                selection_fields=tuple(
                    str(c["name"]) for c in components if c.get("type") in SELECTION_COMPONENTS and c.get("name")
                ),
            )
        )
    if not any(screen.terminal for screen in result):
        raise FlowDefinitionError("Flow JSON has no terminal screen")
    return FlowDefinition(flow_id=flow_id, version=version, screens=tuple(result))


def _routes(document: dict[str, Any], by_id: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    model = document.get("routing_model")
    routes: dict[str, list[str]] = {}
    if isinstance(model, dict) and model:
        for source, targets in model.items():
            if source not in by_id:
                raise FlowDefinitionError(f"routing_model names unknown screen {source!r}")
            if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
                raise FlowDefinitionError(f"routing_model[{source!r}] must be a list of screen ids")
            for target in targets:
                if target not in by_id:
                    raise FlowDefinitionError(f"routing_model[{source!r}] names unknown screen {target!r}")
            routes[source] = list(targets)
        return routes
    for screen_id, screen in by_id.items():
        navigates: list[str] = []
        for action in _actions(screen.get("layout")):
            if action.get("name") != "navigate":
                continue
            target = (action.get("next") or {}).get("name") if isinstance(action.get("next"), dict) else None
            if isinstance(target, str):
                if target not in by_id:
                    raise FlowDefinitionError(f"screen {screen_id!r} navigates to unknown screen {target!r}")
                if target not in navigates:
                    navigates.append(target)
        routes[screen_id] = navigates
    return routes


def _entry(ids: list[str], routes: dict[str, list[str]]) -> str:
    targets = {target for targets in routes.values() for target in targets}
    for screen_id in ids:
        if screen_id not in targets:
            return screen_id
    return ids[0]


def _breadth_first(entry: str, routes: dict[str, list[str]], ids: list[str]) -> list[str]:
    seen = [entry]
    queue = deque([entry])
    while queue:
        for target in routes.get(queue.popleft(), []):
            if target not in seen:
                seen.append(target)
                queue.append(target)
    return seen + [screen_id for screen_id in ids if screen_id not in seen]


def _components(node: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if "type" in node:
            found.append(node)
        for key, value in node.items():
            if key.startswith("on-") or key in {"data-source", "data", "init-values"}:
                continue  # actions and data, not components
            if isinstance(value, (dict, list)):
                found += _components(value)
    elif isinstance(node, list):
        for item in node:
            found += _components(item)
    return [c for c in found if isinstance(c.get("type"), str) and c.get("type") != "SingleColumnLayout"]


def _actions(node: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key.startswith("on-") and isinstance(value, dict):
                found.append(value)
            if isinstance(value, (dict, list)):
                found += _actions(value)
    elif isinstance(node, list):
        for item in node:
            found += _actions(item)
    return found
