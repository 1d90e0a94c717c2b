"""Meta's flows webhooks through the real receiver, broker, stream worker and warehouse, to gauges."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families

from tests.stack import Stack, poll
from warehouse.client import connect
from warehouse.health import flow_states, history

T0 = int(time.time()) - 3600


def flows_webhook(*values: tuple[int, dict[str, Any]]) -> bytes:
    entries = [{"id": "880011223344556", "time": at, "changes": [{"field": "flows", "value": value}]}
               for at, value in values]
    return orjson.dumps({"object": "whatsapp_business_account", "entry": entries})


def post(stack: Stack, body: bytes) -> httpx.Response:
    signature = "sha256=" + hmac.new(stack.settings.app_secret.encode(), body, hashlib.sha256).hexdigest()
    return httpx.post(stack.webhook_url, content=body, timeout=10,
                      headers={"x-hub-signature-256": signature, "content-type": "application/json"})


def samples(port: int, prefix: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text) for s in family.samples if s.name.startswith(prefix)
    }


STATUS_PUBLISHED = (T0, {"event": "FLOW_STATUS_CHANGE", "flow_id": "A", "old_status": "DRAFT",
                         "new_status": "PUBLISHED", "message": "Flow A published"})
STATUS_THROTTLED = (T0 + 60, {"event": "FLOW_STATUS_CHANGE", "flow_id": "A", "old_status": "PUBLISHED",
                              "new_status": "THROTTLED", "message": "Flow A throttled"})
ERRORS_ON = (T0 + 10, {"event": "ENDPOINT_ERROR_RATE", "flow_id": "A", "error_rate": 12.5, "threshold": 10,
                       "alert_state": "ACTIVATED", "errors": [{"error_type": "TIMEOUT", "error_rate": 100,
                                                               "error_count": 5}]})
ERRORS_OFF = (T0 + 100, {"event": "ENDPOINT_ERROR_RATE", "flow_id": "A", "error_rate": 2.5, "threshold": 10,
                         "alert_state": "DEACTIVATED"})
BLOCKED = (T0 + 5, {"event": "FLOW_STATUS_CHANGE", "flow_id": "B", "old_status": "THROTTLED",
                    "new_status": "BLOCKED"})
LATENCY = (T0 + 6, {"event": "ENDPOINT_LATENCY", "flow_id": "B", "p90_latency": 6200, "p50_latency": 900,
                    "requests_count": 41, "threshold": 5000, "alert_state": "ACTIVATED"})
AVAILABILITY = (T0 + 7, {"event": "ENDPOINT_AVAILABILITY", "flow_id": "B", "availability": 80, "threshold": 90,
                         "alert_state": "ACTIVATED"})
CLIENT_ERRORS = (T0 + 8, {"event": "CLIENT_ERROR_RATE", "flow_id": "B", "error_rate": 7.5, "threshold": 5,
                          "alert_state": "ACTIVATED"})
EXPIRY = (T0 + 9, {"event": "FLOW_VERSION_EXPIRY_WARNING", "flow_id": "B", "warning": "freezes in 21 days"})


def test_flows_webhooks_become_exact_state_history_and_gauges(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory("broker", "warehouse", "receiver", "stream", gauge_refresh_s=0.5)
    # Newer status before the older one, one webhook redelivered, one unusable.
    bodies = [
        flows_webhook(STATUS_THROTTLED, ERRORS_OFF), flows_webhook(STATUS_PUBLISHED), flows_webhook(ERRORS_ON),
        flows_webhook(STATUS_THROTTLED), flows_webhook(BLOCKED, LATENCY, AVAILABILITY, CLIENT_ERRORS, EXPIRY),
        flows_webhook((T0, {"event": "FLOW_STATUS_CHANGE", "new_status": "BLOCKED"})),
    ]
    assert [post(stack, body).status_code for body in bodies] == [200] * 6
    sessions = [
        {"type": "flow_sent", "wamid": f"wamid.{token}", "flow_id": "A", "flow_version": "1", "flow_token": token,
         "timestamp": at} for token, at in (("old", time.time() - 7200), ("new", time.time()))
    ]
    answer = httpx.post(f"http://127.0.0.1:{stack.settings.ingest_port}/events", content=orjson.dumps(sessions),
                        headers={"authorization": f"Bearer {stack.settings.events_token}"}, timeout=10)
    assert answer.status_code == 200

    port = stack.settings.stream_metrics_port
    expected = {
        **{("flowscope_stream_flow_status", (("flow_id", "A"), ("status", s))): float(s == "THROTTLED")
           for s in ("DRAFT", "PUBLISHED", "DEPRECATED", "THROTTLED", "BLOCKED")},
        **{("flowscope_stream_flow_status", (("flow_id", "B"), ("status", s))): float(s == "BLOCKED")
           for s in ("DRAFT", "PUBLISHED", "DEPRECATED", "THROTTLED", "BLOCKED")},
        ("flowscope_stream_flow_alert_active", (("alert", "endpoint_error_rate"), ("flow_id", "A"))): 0.0,
        ("flowscope_stream_flow_alert_active", (("alert", "endpoint_latency"), ("flow_id", "B"))): 1.0,
        ("flowscope_stream_flow_alert_active", (("alert", "endpoint_availability"), ("flow_id", "B"))): 1.0,
        ("flowscope_stream_flow_alert_active", (("alert", "client_error_rate"), ("flow_id", "B"))): 1.0,
        ("flowscope_stream_flow_endpoint_error_ratio", (("flow_id", "A"),)): 0.025,
        ("flowscope_stream_flow_endpoint_latency_p90_seconds", (("flow_id", "B"),)): 6.2,
        ("flowscope_stream_flow_endpoint_availability_ratio", (("flow_id", "B"),)): 0.8,
        ("flowscope_stream_flow_client_error_ratio", (("flow_id", "B"),)): 0.075,
        **{("flowscope_stream_flow_sessions", (("flow_id", "A"), ("state", s))): float(s in ("abandoned", "ongoing"))
           for s in ("completed", "abandoned", "ongoing", "failed")},
    }

    def flow_gauges() -> dict[Any, float]:
        return {k: v for k, v in samples(port, "flowscope_stream_flow_").items()
                if not k[0].startswith("flowscope_stream_flow_health_events")}

    assert poll(flow_gauges, want=expected, deadline_s=60) == expected

    health_counts = {k[1]: v for k, v in samples(port, "flowscope_stream_flow_health_events_total").items()}
    # Nine distinct events; the redelivered one is dropped by the worker's dedup before the counter.
    assert health_counts == {
        (("event", "FLOW_STATUS_CHANGE"),): 3.0, (("event", "ENDPOINT_ERROR_RATE"),): 2.0,
        (("event", "ENDPOINT_LATENCY"),): 1.0, (("event", "ENDPOINT_AVAILABILITY"),): 1.0,
        (("event", "CLIENT_ERROR_RATE"),): 1.0, (("event", "FLOW_VERSION_EXPIRY_WARNING"),): 1.0,
    }

    client = connect(stack.settings.warehouse_url_for("analyst"))
    states = {state.flow_id: state for state in flow_states(client)}
    assert (states["A"].status, states["A"].alerts, states["A"].values) == (
        "THROTTLED", {"endpoint_error_rate": False}, {"endpoint_error_rate": 0.025})
    assert (states["B"].status, states["B"].alerts) == (
        "BLOCKED", {"endpoint_latency": True, "endpoint_availability": True, "client_error_rate": True})
    now = datetime.now(UTC).replace(tzinfo=None)
    rows = history(client, start=now - timedelta(days=1), end=now)
    assert len(rows) == 9
    assert list(rows[rows.flow_id == "A"].new_status) == ["", "THROTTLED", "", "PUBLISHED"]
    rejected = client.query("SELECT reason FROM rejected_events FINAL").result_rows
    assert rejected == [("flows webhook without flow_id",)]

    receiver = samples(stack.settings.ingest_port, "flowscope_ingest_")
    assert receiver[("flowscope_ingest_webhooks_total", (("field", "flows"), ("outcome", "accepted")))] == 6.0
    assert receiver[("flowscope_ingest_events_total", (("kind", "flow_health"),))] == 10.0
    assert receiver[("flowscope_ingest_events_total", (("kind", "rejected"),))] == 1.0
