"""First-party events (``POST /events``): the business's sends and its Flow runtime's screen events.

Body: one event object, a JSON array of them, or ``{"events": [...]}``. Each item is validated on its
own: a valid one becomes a canonical event, an invalid one is reported back by index with the reason
and kept as a :class:`RejectedEvent` (dead-letter topic, ``rejected_events``), never dropped silently.

Item types (timestamps: Unix seconds, int, float or numeric string, millisecond precision kept)::

    {"type": "flow_sent", "wamid", "flow_id", "flow_version", "flow_token", "timestamp",
     "campaign"?, "phone_number_id"?, "recipient"?}
    {"type": "node", "flow_token", "flow_id", "flow_version", "screen", "action": view|submit|back|error,
     "timestamp", "node_type"?: buttons|list|form|media|logic|other, "data"?: {field: value}, "error"?}
    {"type": "endpoint", "flow_token", "flow_id", "flow_version", "action": INIT|data_exchange|BACK|ping,
     "screen" (not for INIT), "timestamp", "data"?}
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from contract.events import (
    ENDPOINT_ACTIONS,
    NODE_ACTIONS,
    NODE_TYPES,
    SOURCE_ENDPOINT,
    SOURCE_FIRST_PARTY,
    SOURCE_NODE,
    AnyEvent,
    FlowSent,
    NodeEvent,
    RejectedEvent,
    event_id,
)
from contract.flowjson import SCREEN_ID
from contract.limits import MAX_DEPTH, raw_deeper_than
from contract.privacy import Pseudonymiser
from ingest.exceptions import MalformedPayloadError
from ingest.payload import EARLIEST_TIMESTAMP, MAX_FUTURE_SKEW_S

MAX_ITEMS = 10_000


class ItemError(Exception):
    """One item of a batch is invalid."""


@dataclass(slots=True)
class FirstPartyResult:
    events: list[AnyEvent] = field(default_factory=list)
    rejected: list[RejectedEvent] = field(default_factory=list)
    problems: list[dict[str, Any]] = field(default_factory=list)  # {"index": i, "reason": "..."}
    ignored: int = 0


class FirstPartyParser:
    def __init__(self, *, pseudonymise: Pseudonymiser, form_fields_allowlist: tuple[str, ...] = ()) -> None:
        self._hash = pseudonymise
        self._allow = frozenset(form_fields_allowlist)

    def parse(self, body: bytes, *, received_at_ms: int | None = None) -> FirstPartyResult:
        received = int(time.time() * 1000) if received_at_ms is None else received_at_ms
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise MalformedPayloadError(f"body is not valid JSON: {exc}") from None
        if raw_deeper_than(body, payload):
            raise MalformedPayloadError(f"body is nested deeper than {MAX_DEPTH} levels")
        if isinstance(payload, dict) and "events" in payload:
            payload = payload["events"]
            if not isinstance(payload, list):
                raise MalformedPayloadError("'events' must be a list")
        items = payload if isinstance(payload, list) else [payload]
        if not items:
            raise MalformedPayloadError("no events in the request")
        if len(items) > MAX_ITEMS:
            raise MalformedPayloadError(f"at most {MAX_ITEMS} events per request, got {len(items)}")
        result = FirstPartyResult()
        for index, item in enumerate(items):
            try:
                event = self._item(item, received)
            except ItemError as exc:
                reason = str(exc)
                result.problems.append({"index": index, "reason": reason})
                result.rejected.append(self._reject(reason, item, received))
                continue
            if event is None:
                result.ignored += 1
            else:
                result.events.append(event)
        return result

    def _item(self, item: Any, received: int) -> AnyEvent | None:
        if not isinstance(item, dict):
            raise ItemError("event must be a JSON object")
        kind = item.get("type")
        if kind == "flow_sent":
            return self._flow_sent(item, received)
        if kind == "node":
            action = _choice(item, "action", NODE_ACTIONS)
            return self._node(item, received, screen=_screen(item), action=action, source=SOURCE_NODE)
        if kind == "endpoint":
            raw_action = item.get("action")
            if raw_action == "ping":
                return None  # health checks say nothing about sessions
            if not isinstance(raw_action, str) or raw_action not in ENDPOINT_ACTIONS:
                raise ItemError(f"action must be one of INIT, data_exchange, BACK, ping; got {raw_action!r}")
            screen = "" if raw_action == "INIT" else _screen(item)
            return self._node(item, received, screen=screen, action=ENDPOINT_ACTIONS[raw_action],
                              source=SOURCE_ENDPOINT)
        raise ItemError(f"type must be one of flow_sent, node, endpoint; got {kind!r}")

    def _flow_sent(self, item: dict[str, Any], received: int) -> FlowSent:
        wamid = _text(item, "wamid")
        flow_token = _text(item, "flow_token")
        return FlowSent(
            event_id=event_id("flow_sent", wamid),
            wamid=wamid,
            flow_id=_text(item, "flow_id"),
            flow_version=_text(item, "flow_version"),
            flow_token=flow_token,
            campaign=_text(item, "campaign", required=False),
            phone_number_id=_text(item, "phone_number_id", required=False),
            recipient_hash=self._hash(_text(item, "recipient", required=False)),
            occurred_at_ms=_timestamp_ms(item, received),
            received_at_ms=received,
        )

    def _node(self, item: dict[str, Any], received: int, *, screen: str, action: str, source: str) -> NodeEvent:
        flow_token = _text(item, "flow_token")
        occurred = _timestamp_ms(item, received)
        node_type = item.get("node_type", "other")
        if node_type not in NODE_TYPES:
            raise ItemError(f"node_type must be one of {', '.join(NODE_TYPES)}; got {node_type!r}")
        data = item.get("data", {})
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ItemError("data must be an object")
        error = item.get("error", "")
        if not isinstance(error, str):
            raise ItemError("error must be a string")
        return NodeEvent(
            event_id=event_id("node", flow_token, screen, action, str(occurred)),
            flow_token=flow_token,
            flow_id=_text(item, "flow_id"),
            flow_version=_text(item, "flow_version"),
            screen=screen,
            node_type=str(node_type),
            action=action,
            occurred_at_ms=occurred,
            received_at_ms=received,
            source=source,
            field_keys=sorted(str(k) for k in data),
            fields={str(k): _answer(v) for k, v in data.items() if k in self._allow},
            error=error[:500],
        )

    def _reject(self, reason: str, item: Any, received: int) -> RejectedEvent:
        scrubbed = self._hash.scrub(item)
        if isinstance(scrubbed, dict):
            if "recipient" in scrubbed:
                scrubbed["recipient"] = self._hash.hide(scrubbed["recipient"])
            if isinstance(scrubbed.get("data"), dict):
                scrubbed["data"] = {k: v for k, v in scrubbed["data"].items() if k in self._allow}
        raw = orjson.dumps(scrubbed, option=orjson.OPT_SORT_KEYS).decode()
        return RejectedEvent(
            event_id=event_id("rejected", SOURCE_FIRST_PARTY, reason, raw),
            source=SOURCE_FIRST_PARTY,
            reason=reason,
            raw=raw,
            received_at_ms=received,
        )


def _text(item: dict[str, Any], key: str, *, required: bool = True) -> str:
    value = item.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise ItemError(f"{key} must be a non-empty string" if required else f"{key} must be a string")
    if len(value) > 256:
        raise ItemError(f"{key} is longer than 256 characters")
    return value


def _screen(item: dict[str, Any]) -> str:
    screen = _text(item, "screen")
    if not SCREEN_ID.match(screen):
        raise ItemError(f"screen {screen!r} is not a Flow screen id (letters and underscores)")
    return screen


def _choice(item: dict[str, Any], key: str, allowed: tuple[str, ...]) -> str:
    value = item.get(key)
    if value not in allowed:
        raise ItemError(f"{key} must be one of {', '.join(allowed)}; got {value!r}")
    return str(value)


def _timestamp_ms(item: dict[str, Any], received_ms: int) -> int:
    raw = item.get("timestamp")
    if isinstance(raw, str):
        try:
            raw = float(raw)
        except ValueError:
            raise ItemError("timestamp must be Unix seconds") from None
    if not isinstance(raw, (int, float)) or isinstance(raw, bool) or raw != raw:
        raise ItemError("timestamp must be Unix seconds")
    if raw < EARLIEST_TIMESTAMP:
        raise ItemError(f"timestamp {raw} is before 2014")
    if raw > received_ms / 1000 + MAX_FUTURE_SKEW_S:
        raise ItemError(f"timestamp {raw} is in the future")
    return round(raw * 1000)


def _answer(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()
