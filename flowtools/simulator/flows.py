"""The simulated WhatsApp Flows users walk: screens per version, and each version's Meta Flow JSON."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

ALLOWLIST = ("plan", "service", "slot")  # the selection fields the warehouse may store (never free text)


@dataclass(frozen=True)
class SimScreen:
    id: str
    title: str
    node_type: str
    drop: float  # chance a user leaves on this screen
    field: str = ""  # a selection field answered here
    options: tuple[str, ...] = ()
    next: tuple[str, ...] = ()  # one target, or one per option (branches)
    free_text: str = ""  # a personal field (never stored)

    @property
    def terminal(self) -> bool:
        return not self.next


@dataclass(frozen=True)
class SimFlow:
    """A Flow the session simulator plays: its screens per version, walked by simulated users.

    Not the traffic generator's :class:`~flowtools.simulator.businesses.BusinessFlow` (a Flow's id, name
    and owner, tagging delivery traffic) nor ``contract.flowjson.FlowDefinition`` (parsed Flow JSON).
    """

    flow_id: str
    name: str
    versions: dict[str, tuple[SimScreen, ...]]
    endpoint: bool = False  # uses data-endpoint events (INIT / data_exchange / BACK)
    back_ratio: float = 0.0


def _lead(drop_details: float) -> tuple[SimScreen, ...]:
    return (
        SimScreen("WELCOME", "Welcome", "buttons", 0.10, next=("DETAILS",)),
        SimScreen("DETAILS", "Your details", "form", drop_details, free_text="email", next=("CONFIRM",)),
        SimScreen("CONFIRM", "Confirm", "buttons", 0.05),
    )


def _plans(drop_pro: float) -> tuple[SimScreen, ...]:
    return (
        SimScreen("PLAN_SELECT", "Pick a plan", "list", 0.12, field="plan", options=("pro", "basic"),
                  next=("PRO_DETAILS", "BASIC_DETAILS")),
        SimScreen("PRO_DETAILS", "Pro seats", "form", drop_pro, field="seats", options=("5", "10", "25"),
                  next=("SUMMARY",)),
        SimScreen("BASIC_DETAILS", "Basic details", "form", 0.10, free_text="company", next=("SUMMARY",)),
        SimScreen("SUMMARY", "Summary", "logic", 0.04),
    )


def _booking(with_media: bool) -> tuple[SimScreen, ...]:
    screens = [
        SimScreen("SERVICE", "Choose a service", "list", 0.08, field="service", options=("cut", "colour", "spa"),
                  next=("DATE",)),
        SimScreen("DATE", "Pick a day", "form", 0.15, field="slot", options=("mon", "tue", "wed", "thu"),
                  next=("CONTACT",)),
        SimScreen("CONTACT", "Contact", "form", 0.12, free_text="name", next=("MEDIA" if with_media else "DONE",)),
    ]
    if with_media:
        screens.append(SimScreen("MEDIA", "Our salon", "media", 0.06, next=("DONE",)))
    screens.append(SimScreen("DONE", "Booked", "buttons", 0.02))
    return tuple(screens)


FLOWS: tuple[SimFlow, ...] = (
    SimFlow("1100000000000001", "lead_form", {"1": _lead(0.25), "2": _lead(0.12)}),
    SimFlow("1100000000000002", "plan_picker", {"1": _plans(0.30), "2": _plans(0.15)}, endpoint=True),
    SimFlow("1100000000000003", "booking", {"1": _booking(False), "2": _booking(True)}, back_ratio=0.12),
)


def flow_json(flow: SimFlow, version: str) -> dict[str, Any]:
    """The version's Flow JSON in Meta's format (routing_model for the endpoint flow)."""
    screens = []
    for screen in flow.versions[version]:
        children: list[dict[str, Any]] = []
        if screen.field:
            children.append({"type": "RadioButtonsGroup", "name": screen.field, "label": screen.title,
                             "required": True, "data-source": [{"id": o, "title": o} for o in screen.options]})
        if screen.free_text:
            children.append({"type": "TextInput", "name": screen.free_text, "label": screen.free_text})
        if screen.terminal:
            action: dict[str, Any] = {"name": "complete", "payload": {}}
        elif flow.endpoint:
            action = {"name": "data_exchange", "payload": {}}
        else:
            action = {"name": "navigate", "next": {"type": "screen", "name": screen.next[0]}, "payload": {}}
        children.append({"type": "Footer", "label": "Continue", "on-click-action": action})
        screens.append({"id": screen.id, "title": screen.title, "terminal": screen.terminal,
                        **({"success": True} if screen.terminal else {}),
                        "layout": {"type": "SingleColumnLayout",
                                   "children": [{"type": "Form", "name": "form", "children": children}]}})
    document: dict[str, Any] = {"version": "6.0", "screens": screens}
    if flow.endpoint:
        document["data_api_version"] = "3.0"
        document["routing_model"] = {s.id: list(dict.fromkeys(s.next)) for s in flow.versions[version]}
    return document


def write_flow_jsons(directory: Path) -> list[tuple[str, str, Path]]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for flow in FLOWS:
        for version in flow.versions:
            path = directory / f"{flow.name}_v{version}.json"
            path.write_bytes(orjson.dumps(flow_json(flow, version), option=orjson.OPT_INDENT_2))
            written.append((flow.flow_id, version, path))
    return written
