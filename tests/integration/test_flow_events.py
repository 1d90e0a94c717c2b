"""First-party events and flow registration through the receiver, stream and warehouse processes."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

import httpx
import orjson

from tests.samples import FLOW_JSON
from tests.stack import Stack, poll
from warehouse import flow_names, flows, screens
from warehouse.client import connect


def base(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.settings.ingest_port}"


def auth(stack: Stack) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.settings.events_token}"}


def test_registration_validates_and_needs_the_token(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory("broker", "receiver")
    url = f"{base(stack)}/flows/F1/versions/1"
    assert httpx.put(url, content=orjson.dumps(FLOW_JSON)).status_code == 401
    assert httpx.put(url, content=orjson.dumps(FLOW_JSON), headers={"Authorization": "Bearer nope"}).status_code == 401
    broken = httpx.put(url, content=b'{"screens": []}', headers=auth(stack))
    assert (broken.status_code, broken.json()) == (400, {"error": "Flow JSON needs a non-empty 'screens' list"})
    ok = httpx.put(url, content=orjson.dumps(FLOW_JSON), headers=auth(stack))
    assert (ok.status_code, ok.json()) == (200, {"flow_id": "F1", "version": "1", "name": "",
                                                 "screens": ["A", "B", "C"]})
    named = httpx.put(url, params={"name": "Lead form"}, content=orjson.dumps(FLOW_JSON), headers=auth(stack))
    assert (named.status_code, named.json()["name"]) == (200, "Lead form")
    too_long = httpx.put(url, params={"name": "x" * 201}, content=orjson.dumps(FLOW_JSON), headers=auth(stack))
    assert (too_long.status_code, too_long.json()) == (
        400, {"error": "name must be printable text of at most 200 characters"})


def test_events_are_validated_resolved_and_checked_against_the_flow(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory("broker", "warehouse", "receiver", "stream", form_fields_allowlist=("plan",))
    registered = httpx.put(f"{base(stack)}/flows/F1/versions/1", content=orjson.dumps(FLOW_JSON), headers=auth(stack),
                           params={"name": "Plan picker"})
    assert registered.status_code == 200
    client = connect(stack.settings.warehouse_url_for("analyst"))
    assert poll(lambda: screens.load_catalog(client), want={("F1", "1"): ("A", frozenset({"A", "B", "C"}))}) == {
        ("F1", "1"): ("A", frozenset({"A", "B", "C"}))
    }
    assert flow_names.flow_names(client) == {"F1": "Plan picker"}
    assert flow_names.label("F1", flow_names.flow_names(client)) == "Plan picker (F1)"
    assert flow_names.label("F9", {}) == "F9"
    now = time.time() - 60
    common = {"flow_token": "tok1", "flow_id": "F1", "flow_version": "1"}
    batch = [
        {"type": "flow_sent", "wamid": "wamid.1", "campaign": "spring", "recipient": "5511999990000",
         "timestamp": now, **common},
        {"type": "endpoint", "action": "INIT", "timestamp": now + 1, **common},
        {"type": "endpoint", "action": "data_exchange", "screen": "A", "timestamp": now + 5, **common},
        {"type": "node", "screen": "B", "action": "submit", "node_type": "list", "timestamp": now + 9,
         "data": {"plan": "pro", "email": "ana@example.com"}, **common},
        {"type": "node", "screen": "Z", "action": "view", "timestamp": now + 10, **common},
        {"type": "node", "screen": "B", "action": "view", "timestamp": now + 11, "flow_id": "F1", "flow_version": "1"},
        {"type": "endpoint", "action": "ping", "timestamp": now},
    ]
    response = httpx.post(f"{base(stack)}/events", content=orjson.dumps(batch), headers=auth(stack))
    assert (response.status_code, response.json()) == (
        207, {"accepted": 5, "rejected": [{"index": 5, "reason": "flow_token must be a non-empty string"}],
              "ignored": 1}
    )
    assert httpx.post(f"{base(stack)}/events", content=orjson.dumps(batch)).status_code == 401

    stored = poll(lambda: client.query(
        "SELECT screen, action, source, fields FROM flow_node_events ORDER BY occurred_at").result_rows,
        want=[("A", "view", "endpoint", {}), ("A", "submit", "endpoint", {}), ("B", "submit", "node", {"plan": "pro"})])
    assert stored == [("A", "view", "endpoint", {}), ("A", "submit", "endpoint", {}),
                      ("B", "submit", "node", {"plan": "pro"})]
    reasons = poll(lambda: sorted(r[0] for r in client.query("SELECT reason FROM rejected_events").result_rows),
                   want=["flow_token must be a non-empty string", "screen 'Z' is not in flow F1 version 1"])
    assert reasons == ["flow_token must be a non-empty string", "screen 'Z' is not in flow F1 version 1"]
    assert b"ana@example.com" not in orjson.dumps(client.query("SELECT raw FROM rejected_events").result_rows)

    window = flows.FlowFilter(start=datetime(2014, 1, 1), end=datetime(2100, 1, 1),
                              timeout_s=stack.settings.session_timeout_s)
    funnel = flows.funnel(client, window)
    assert funnel[["flow_id", "sent", "opened", "completed", "ongoing"]].to_dict("records") == [
        {"flow_id": "F1", "sent": 1, "opened": 1, "completed": 0, "ongoing": 1}
    ]
