"""Warehouse-derived gauges: values per refresh, and label sets that disappear are removed."""

from __future__ import annotations

from datetime import datetime

from prometheus_client import REGISTRY

from stream.gauges import GaugePublisher, GaugeValues, health_values, session_values
from warehouse.health import FlowState


def value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_status_is_a_state_set_and_alerts_carry_their_values() -> None:
    values = GaugeValues()
    since = datetime(2026, 11, 1)
    health_values([
        FlowState("f-state", "THROTTLED", since, {"endpoint_latency": True, "endpoint_error_rate": False},
                  {"endpoint_latency": 6.2, "endpoint_error_rate": 0.025}, since),
        FlowState("f-nostatus", "", None, {"client_error_rate": True}, {}, since),
    ], values)
    GaugePublisher().publish(values)
    statuses = {s: value("flowscope_stream_flow_status", flow_id="f-state", status=s)
                for s in ("DRAFT", "PUBLISHED", "DEPRECATED", "THROTTLED", "BLOCKED")}
    assert statuses == {"DRAFT": 0, "PUBLISHED": 0, "DEPRECATED": 0, "THROTTLED": 1, "BLOCKED": 0}
    assert value("flowscope_stream_flow_status", flow_id="f-nostatus", status="DRAFT") is None
    assert value("flowscope_stream_flow_alert_active", flow_id="f-state", alert="endpoint_latency") == 1
    assert value("flowscope_stream_flow_alert_active", flow_id="f-state", alert="endpoint_error_rate") == 0
    assert value("flowscope_stream_flow_alert_active", flow_id="f-nostatus", alert="client_error_rate") == 1
    assert value("flowscope_stream_flow_endpoint_latency_p90_seconds", flow_id="f-state") == 6.2
    assert value("flowscope_stream_flow_endpoint_error_ratio", flow_id="f-state") == 0.025
    assert value("flowscope_stream_flow_client_error_ratio", flow_id="f-nostatus") is None


def test_a_refresh_replaces_values_and_removes_vanished_label_sets() -> None:
    publisher = GaugePublisher()
    first = GaugeValues()
    session_values([("f-gone", {"completed": 3}), ("f-kept", {"ongoing": 2, "abandoned": 1})], first)
    publisher.publish(first)
    assert value("flowscope_stream_flow_sessions", flow_id="f-gone", state="completed") == 3
    assert value("flowscope_stream_flow_sessions", flow_id="f-gone", state="failed") == 0
    second = GaugeValues()
    session_values([("f-kept", {"ongoing": 1, "completed": 1, "abandoned": 1})], second)
    publisher.publish(second)
    assert value("flowscope_stream_flow_sessions", flow_id="f-gone", state="completed") is None
    kept = {s: value("flowscope_stream_flow_sessions", flow_id="f-kept", state=s)
            for s in ("ongoing", "completed", "abandoned", "failed")}
    assert kept == {"ongoing": 1, "completed": 1, "abandoned": 1, "failed": 0}
