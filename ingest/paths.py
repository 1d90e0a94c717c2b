"""The receiver's HTTP paths: the one place the routes, the stack, the simulators and the benchmarks read them."""

from __future__ import annotations

WEBHOOK_PATH = "/webhooks/whatsapp"  # Meta's webhooks: GET verification handshake, POST deliveries
EVENTS_PATH = "/events"  # first-party Flow events (screen views, submits, data-endpoint requests)
FLOW_REGISTRATION_PATH = "/flows/{flow_id}/versions/{version}"  # PUT a version's Flow JSON
HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"


def flow_registration_path(flow_id: str, version: str) -> str:
    return FLOW_REGISTRATION_PATH.format(flow_id=flow_id, version=version)
