from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from contract.events import FlowSent, NodeEvent, event_id
from contract.privacy import Pseudonymiser
from ingest.exceptions import MalformedPayloadError
from ingest.first_party import FirstPartyParser

NOW_MS = int(time.time()) * 1000
TS = NOW_MS / 1000 - 60
HASH = Pseudonymiser("k")
COMMON = {"flow_token": "ft_1", "flow_id": "F1", "flow_version": "2"}


def parse(body: Any) -> Any:
    parser = FirstPartyParser(pseudonymise=HASH, form_fields_allowlist=("plan",))
    return parser.parse(orjson.dumps(body), received_at_ms=NOW_MS)


def test_flow_sent_and_node_events_become_canonical() -> None:
    result = parse([
        {"type": "flow_sent", "wamid": "wamid.1", "campaign": "spring", "recipient": "5511", "timestamp": TS,
         **COMMON},
        {"type": "node", "screen": "PLAN", "action": "submit", "node_type": "list", "timestamp": TS + 1.25,
         "data": {"plan": "pro", "email": "a@b.c"}, **COMMON},
    ])
    assert result.problems == []
    sent, node = result.events
    assert sent == FlowSent(event_id=event_id("flow_sent", "wamid.1"), wamid="wamid.1", flow_id="F1",
                            flow_version="2", flow_token="ft_1", campaign="spring", recipient_hash=HASH("5511"),
                            occurred_at_ms=round(TS * 1000), received_at_ms=NOW_MS)
    assert isinstance(node, NodeEvent)
    assert (node.screen, node.action, node.node_type, node.occurred_at_ms) == ("PLAN", "submit", "list",
                                                                                round((TS + 1.25) * 1000))
    assert (node.field_keys, node.fields) == (["email", "plan"], {"plan": "pro"})


def test_endpoint_actions_map_onto_screen_events() -> None:
    result = parse({"events": [
        {"type": "endpoint", "action": "INIT", "timestamp": TS, **COMMON},
        {"type": "endpoint", "action": "data_exchange", "screen": "PLAN", "timestamp": TS + 1, **COMMON},
        {"type": "endpoint", "action": "BACK", "screen": "CONFIRM", "timestamp": TS + 2, **COMMON},
        {"type": "endpoint", "action": "ping", "timestamp": TS},
    ]})
    assert [(e.screen, e.action, e.source) for e in result.events] == [
        ("", "view", "endpoint"), ("PLAN", "submit", "endpoint"), ("CONFIRM", "back", "endpoint"),
    ]
    assert result.ignored == 1


def test_a_duplicate_has_the_same_event_id() -> None:
    item = {"type": "node", "screen": "PLAN", "action": "view", "timestamp": TS, **COMMON}
    first, again = parse([item, item]).events
    assert first.event_id == again.event_id


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ({"type": "click"}, "type must be one of flow_sent, node, endpoint; got 'click'"),
        ({"type": "node", "screen": "PLAN", "action": "view", "timestamp": TS, "flow_id": "F1",
          "flow_version": "2"}, "flow_token must be a non-empty string"),
        ({"type": "node", "screen": "PLAN 2", "action": "view", "timestamp": TS, **COMMON},
         "screen 'PLAN 2' is not a Flow screen id (letters and underscores)"),
        ({"type": "node", "screen": "PLAN", "action": "tap", "timestamp": TS, **COMMON},
         "action must be one of view, submit, back, error; got 'tap'"),
        ({"type": "node", "screen": "PLAN", "action": "view", "node_type": "carousel", "timestamp": TS, **COMMON},
         "node_type must be one of buttons, list, form, media, logic, other; got 'carousel'"),
        ({"type": "node", "screen": "PLAN", "action": "view", "timestamp": "soon", **COMMON},
         "timestamp must be Unix seconds"),
        ({"type": "node", "screen": "PLAN", "action": "view", "timestamp": TS + 86400, **COMMON},
         f"timestamp {TS + 86400} is in the future"),
        ({"type": "endpoint", "action": "EXIT", "timestamp": TS, **COMMON},
         "action must be one of INIT, data_exchange, BACK, ping; got 'EXIT'"),
        ({"type": "node", "screen": "PLAN", "action": "view", "timestamp": TS, "data": [1], **COMMON},
         "data must be an object"),
        ("just a string", "event must be a JSON object"),
    ],
)
def test_invalid_items_are_reported_by_index_and_kept(item: Any, reason: str) -> None:
    good = {"type": "node", "screen": "PLAN", "action": "view", "timestamp": TS, **COMMON}
    result = parse([good, item])
    assert result.problems == [{"index": 1, "reason": reason}]
    assert len(result.events) == 1
    (rejected,) = result.rejected
    assert (rejected.reason, rejected.source) == (reason, "first_party")


def test_rejected_items_keep_no_phone_number_or_free_text() -> None:
    result = parse([{"type": "flow_sent", "recipient": "5511999990000", "timestamp": TS, **COMMON},
                    {"type": "node", "screen": "P", "action": "view", "timestamp": "x", "data": {"email": "a@b.c"},
                     **COMMON}])
    raw = "".join(r.raw for r in result.rejected)
    assert "5511999990000" not in raw and "a@b.c" not in raw


@pytest.mark.parametrize(("body", "reason"), [(b"nope", "body is not valid JSON"), (b"[]", "no events in the request"),
                                              (b'{"events": 3}', "'events' must be a list")])
def test_unreadable_requests_are_malformed(body: bytes, reason: str) -> None:
    with pytest.raises(MalformedPayloadError) as info:
        FirstPartyParser(pseudonymise=HASH).parse(body, received_at_ms=NOW_MS)
    assert info.value.reason.startswith(reason)
