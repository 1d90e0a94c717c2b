"""Meta's ``flows`` webhooks (section 4 of the webhook reference): a Flow's status change or health alert, as one
:class:`contract.events.FlowHealth` event; the whole value is kept as JSON beside the fields read from it."""

from __future__ import annotations

import re
from typing import Any

import orjson

from contract.events import FlowHealth, event_id
from ingest.payload import ParseResult, Reject, timestamp

# Meta's event names are upper-case identifiers; anything else in ``value.event`` is not a flows event.
_EVENT_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")


def flow_health(value: dict[str, Any], waba_id: str, entry_time: Any, received: int, result: ParseResult,
                reject: Reject) -> None:
    """A Flow's status change or health alert (section 4 of the webhook reference)."""
    flow_id = value.get("flow_id")
    event = value.get("event")
    problem = ""
    if entry_time is None:
        occurred_at = received // 1000
    else:
        occurred_at, problem = timestamp(entry_time, received)
        problem = problem and f"entry.time: {problem}"
    if not isinstance(event, str) or not _EVENT_NAME.fullmatch(event):
        problem = f"flows webhook with unknown event {event!r}"
    if not isinstance(flow_id, str) or not flow_id.strip():
        problem = "flows webhook without flow_id"
    if problem or not isinstance(flow_id, str) or not isinstance(event, str):
        result.rejected.append(reject(problem, value, received, waba_id, ""))
        return
    errors = [e for e in value.get("errors") or () if isinstance(e, dict)] if isinstance(
        value.get("errors"), list) else []
    raw = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    result.events.append(
        FlowHealth(
            event_id=event_id("flow_health", waba_id, flow_id, event, str(occurred_at), raw),
            waba_id=waba_id,
            flow_id=flow_id,
            event=event,
            occurred_at=occurred_at,
            received_at_ms=received,
            message=str(value.get("message") or value.get("warning") or ""),
            old_status=_upper(value.get("old_status")),
            new_status=_upper(value.get("new_status")),
            alert_state=_upper(value.get("alert_state")),
            error_rate=_number(value.get("error_rate")),
            threshold=_number(value.get("threshold")),
            p50_latency_ms=_number(value.get("p50_latency")),
            p90_latency_ms=_number(value.get("p90_latency")),
            requests_count=int(_number(value.get("requests_count"))),
            availability=_number(value.get("availability")),
            error_types=[_error_type(e.get("error_type")) for e in errors],
            error_rates=[_number(e.get("error_rate")) for e in errors],
            error_counts=[int(_number(e.get("error_count"))) for e in errors],
            raw=raw,
        )
    )


def _number(value: Any) -> float:
    """A non-negative number Meta sent (possibly as a string), else -1."""
    if isinstance(value, bool):
        return -1.0
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return -1.0
    else:
        return -1.0
    return number if 0 <= number < 1e15 else -1.0


def _upper(value: Any) -> str:
    return value.strip().upper() if isinstance(value, str) else ""


def _error_type(value: Any) -> str:
    """Meta spells error types both ``INVALID_SCREEN_TRANSITION`` and ``invalid-screen-transition``."""
    if not isinstance(value, str):
        return "unknown"
    return re.sub(r"[^a-z0-9]+", "_", value.strip().lower()).strip("_") or "unknown"
