"""Property-based tests of every parser the receiver runs on untrusted bytes, and of the signatures.

Each parser either raises its documented error or accounts for every part of its input: a status
becomes an event or a rejected event, an item of ``/events`` an event, a rejection or an ignored
ping, a change of another field an ignored count. Inputs are arbitrary bytes and JSON as well as
webhooks built around Meta's real envelope with random values in every slot; the typed path of status webhooks
makes exactly what the general walk makes. Examples in total: 3,000 + 3,000 + 2,500 + 2,000 + 1,500 + 1,000 + 500
= 13,500 (derandomized, so CI sees the same ones).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
from hypothesis import event, given, settings
from hypothesis import strategies as st

from contract.codec import encode
from contract.events import MESSAGE_STATUSES, FlowCompletion, FlowHealth, MessageStatus
from contract.exceptions import FlowDefinitionError
from contract.flowjson import parse_flow_json
from contract.privacy import Pseudonymiser
from ingest.exceptions import MalformedPayloadError
from ingest.first_party import FirstPartyParser
from ingest.parsing import WHATSAPP_OBJECT, WebhookParser
from ingest.signatures import sign, verify

RECEIVED_MS = 1_767_000_500_000
NOW_S = RECEIVED_MS // 1000
HASH = Pseudonymiser("property-key")
WEBHOOKS = WebhookParser(pseudonymise=HASH, form_fields_allowlist=("plan", "flow_token"))
FIRST_PARTY = FirstPartyParser(pseudonymise=HASH, form_fields_allowlist=("plan",))

# --- strategies ----------------------------------------------------------------------------------------

SCALARS = (
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
)
JSON = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=6,
)
# A value of the wrong type for a slot (cheaper to draw than JSON, so the typed slots stay fast).
WRONG = SCALARS | st.lists(SCALARS, max_size=2) | st.dictionaries(st.text(max_size=3), SCALARS, max_size=2)


def _wrong_one_in(n: int, strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    # Explicit weights: st.one_of flattens nested one_ofs, so repeating a branch would not weigh it.
    return st.integers(min_value=1, max_value=n).flatmap(lambda k: WRONG if k == 1 else strategy)


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A plausible value four times in five, else a value of any other type."""
    return _wrong_one_in(5, strategy)


def _rarely_wrong(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """For the envelope's slots: wrong one time in a hundred, so most bodies get past them to the statuses."""
    return _wrong_one_in(100, strategy)


# Values Meta sends in timestamps, and the ones it should never send.
VALID_SECONDS = st.integers(min_value=NOW_S - 10**8, max_value=NOW_S + 3600)
TIMESTAMPS = st.integers(min_value=1, max_value=10).flatmap(lambda k: (
    VALID_SECONDS.map(str) if k <= 6 else VALID_SECONDS if k <= 8 else WRONG if k == 9 else st.sampled_from(
        ["", "1388534399", "1388534400", str(NOW_S + 3600), str(NOW_S + 3601), "²³", "١٧٦٧٠٠٠٠٠٠", "9" * 5000, "-1",
         "1.5e9", " 1767000000", 10**15, -1, 1.5e9])))
PHONE = _maybe(st.sampled_from(["5511999990000", "15550001111", 5511999990000]))
WAMID = _rarely_wrong(st.sampled_from(["wamid.A", "wamid.B", "wamid.C", "wamid.D", "wamid.E", "wamid.F", ""]))
# The rest of a status drawn whole from examples (one choice, cheap), wrong types included.
STATUS_EXTRAS = st.sampled_from([
    {},
    {"recipient_id": "5511999990000", "recipient_type": "individual", "biz_opaque_callback_data": "flow=lead;tok=ft_1",
     "pricing": {"billable": True, "pricing_model": "PMP", "type": "regular", "category": "marketing"},
     "conversation": {"id": "c1", "origin": {"type": "marketing"}}},
    {"recipient_id": "5511999990000", "errors": [
        {"code": 131049, "title": "not delivered", "error_data": {"details": "healthy ecosystem"}}]},
    {"recipient_id": 5511999990000, "errors": [{"code": 2**40, "message": "huge code"}, "x"]},
    {"recipient_id": None, "errors": [{"code": -1}], "pricing": {"billable": "no", "category": 7}},
    {"errors": [{"code": True, "error_data": "x"}], "conversation": {"id": 5, "origin": "x"}},
    {"errors": "x", "pricing": "x", "conversation": None, "recipient_type": 3, "biz_opaque_callback_data": {}},
    {"errors": [{"code": "131049", "title": None, "error_data": {"details": 5}}], "recipient_participant_id": "1"},
])
STATUS = st.tuples(
    st.fixed_dictionaries({
        "id": WAMID, "timestamp": TIMESTAMPS,
        "status": _rarely_wrong(st.sampled_from([*MESSAGE_STATUSES, *MESSAGE_STATUSES, "opened", "SENT"]))}),
    STATUS_EXTRAS,
).map(lambda parts: {**parts[0], **parts[1]})
# Inbound messages: Flow completions (valid and broken) and the kinds we only count.
RESPONSES = ['{"flow_token":"ft_1","plan":"pro","email":"a@b.c"}', '{"flow_token":7}', '[1]', "not json", "{",
             '{"flow_token":"ft_2","plan":[[[1]]]}']
MESSAGE_EXAMPLES = [
    *({"type": "interactive", "id": "wamid.R1", "from": "5511999990000", "context": {"id": "wamid.A"},
       "interactive": {"type": "nfm_reply", "nfm_reply": {"name": "flow", "response_json": response}}}
      for response in RESPONSES),
    {"type": "interactive", "id": "wamid.R2", "context": {"id": "wamid.B"},
     "interactive": {"type": "nfm_reply", "nfm_reply": {"response_json": {"flow_token": "ft_1"}}}},
    {"type": "interactive", "id": "wamid.R3", "interactive": {"type": "nfm_reply", "nfm_reply": {}}},
    {"type": "interactive", "context": {"id": "wamid.C"}, "interactive": {"type": "nfm_reply"}},
    {"type": "interactive", "id": "wamid.R4", "context": {"id": "wamid.C"}, "interactive": {"type": "nfm_reply"}},
    {"type": "interactive", "interactive": {"type": "button_reply"}}, {"type": "interactive", "interactive": "x"},
    {"type": "text", "from": "5511999990000", "text": {"body": "hi"}}, {"type": "weird"}, {"type": ["text"]}, {},
]
MESSAGE = st.tuples(st.sampled_from(MESSAGE_EXAMPLES), TIMESTAMPS).map(
    lambda parts: {**parts[0], "timestamp": parts[1]})
MESSAGES_VALUE = st.fixed_dictionaries(
    {"metadata": _rarely_wrong(st.fixed_dictionaries(
        {"phone_number_id": _rarely_wrong(st.sampled_from(["990000000000001", "990000000000002"]))},
        optional={"display_phone_number": st.just("15550001111")})),
     "statuses": _rarely_wrong(st.lists(_maybe(STATUS), min_size=1, max_size=4))},
    optional={
        "messaging_product": st.just("whatsapp"),
        "messages": _rarely_wrong(st.lists(_maybe(MESSAGE), max_size=2)),
        "errors": _rarely_wrong(st.lists(WRONG, max_size=2)),
        "contacts": st.lists(st.fixed_dictionaries({"wa_id": PHONE}), max_size=1),
    },
)
FLOWS_VALUE = st.fixed_dictionaries(
    {"event": _maybe(st.sampled_from(["FLOW_STATUS_CHANGE", "ENDPOINT_LATENCY", "CLIENT_ERROR_RATE", "lower", ""])),
     "flow_id": _maybe(st.sampled_from(["1234", "1234", " ", ""]))},
    optional={
        "new_status": _maybe(st.sampled_from(["DRAFT", "PUBLISHED"])), "error_rate": WRONG, "p90_latency": WRONG,
        "requests_count": WRONG, "alert_state": _maybe(st.sampled_from(["ACTIVATED", "DEACTIVATED"])),
        "errors": _maybe(st.lists(st.sampled_from([
            {"error_type": "invalid-screen-transition", "error_rate": 12.5, "error_count": 3},
            {"error_type": 5, "error_rate": "x", "error_count": None}, "x"]), max_size=2)),
    },
)
CHANGE = st.one_of(
    st.fixed_dictionaries({"field": st.just("messages"), "value": _rarely_wrong(MESSAGES_VALUE)}),
    st.fixed_dictionaries({"field": st.just("messages"), "value": _rarely_wrong(MESSAGES_VALUE)}),
    st.fixed_dictionaries({"field": st.just("flows"), "value": _rarely_wrong(FLOWS_VALUE)}),
    st.fixed_dictionaries({"field": _maybe(st.sampled_from(["message_template_status_update", "security", "nope"])),
                           "value": _rarely_wrong(st.dictionaries(st.text(max_size=4), WRONG, max_size=2))}),
)
ENTRY = st.fixed_dictionaries(
    {"changes": _rarely_wrong(st.lists(_rarely_wrong(CHANGE), min_size=1, max_size=2))},
    optional={"id": _maybe(st.text(max_size=8)), "time": TIMESTAMPS},
)
ENVELOPE = st.fixed_dictionaries(
    {"object": _rarely_wrong(st.just(WHATSAPP_OBJECT)),
     "entry": _rarely_wrong(st.lists(_rarely_wrong(ENTRY), min_size=1, max_size=2))}
)


@st.composite
def _mangled(draw: st.DrawFn, documents: st.SearchStrategy[Any]) -> bytes:
    """A JSON document cut short or with one byte replaced: truncated and corrupted bodies."""
    body = orjson.dumps(draw(documents))
    at = draw(st.integers(min_value=0, max_value=len(body)))
    if draw(st.booleans()):
        return body[:at]
    return body[:at] + bytes([draw(st.integers(0, 255))]) + body[at + 1:]


def _bodies(documents: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """Plausible documents seven times in ten, else arbitrary bytes, arbitrary JSON or a mangled document."""
    others = (st.binary(max_size=64), JSON.map(orjson.dumps), _mangled(documents))
    return st.integers(min_value=0, max_value=9).flatmap(
        lambda k: others[k] if k < len(others) else documents.map(orjson.dumps))


# --- WhatsApp webhooks ---------------------------------------------------------------------------------


def _units(payload: dict[str, Any]) -> tuple[int, list[Any]]:
    """(parts the parser must account for, the statuses among them) of a webhook it accepted."""
    units, statuses = 0, []
    for entry in payload["entry"]:
        for change in entry["changes"]:
            value = change["value"]
            if change.get("field") != "messages":
                units += 1  # a flows event or rejection, or an ignored field
                continue
            metadata = value.get("metadata")
            has_number = isinstance(metadata, dict) and bool(metadata.get("phone_number_id"))
            found, messages = value.get("statuses") or [], value.get("messages") or []
            if not has_number and (found or messages):
                units += 1  # the whole change is rejected, its statuses inside the raw fragment
                continue
            statuses += found
            units += len(found) + len(messages) + len(value.get("errors") or [])
    return units, statuses


@settings(max_examples=3_000, deadline=None, derandomize=True)
@given(_bodies(ENVELOPE))
def test_webhook_parser_raises_only_its_error_and_accounts_for_every_part(body: bytes) -> None:
    try:
        result = WEBHOOKS.parse(body, received_at_ms=RECEIVED_MS)
    except MalformedPayloadError as exc:
        assert exc.reason
        event("malformed")
        return
    payload = orjson.loads(body)
    units, statuses = _units(payload)
    event(f"parsed: {'with' if statuses else 'no'} statuses, {'some' if result.events else 'no'} events, "
          f"{'some' if result.rejected else 'no'} rejections")
    assert len(result.events) + len(result.rejected) + sum(result.ignored.values()) == units
    # Each status is an event or a rejection carrying it; equal statuses share one fate.
    made = Counter((e.wamid, e.status) for e in result.events if isinstance(e, MessageStatus))
    refused = Counter(r.raw for r in result.rejected)
    for raw, count in Counter(orjson.dumps(HASH.scrub(s), option=orjson.OPT_SORT_KEYS).decode()
                              for s in statuses).items():
        status = orjson.loads(raw)
        key = (status.get("id"), status.get("status")) if isinstance(status, dict) else None
        key = key if key and all(isinstance(part, str) for part in key) else None
        assert refused[raw] >= count or made[key] >= count
    assert sum(made.values()) <= len(statuses)
    for written in [*result.events, *result.rejected]:
        encode(written)  # every event can go to Kafka
    for rejected in result.rejected:
        assert rejected.reason
        for number in ("5511999990000", "15550001111"):
            assert number not in rejected.raw or number in _non_phone_strings(payload)
    for made_event in result.events:
        if isinstance(made_event, MessageStatus | FlowCompletion):
            assert 0 <= made_event.occurred_at <= NOW_S + 3600
        if isinstance(made_event, MessageStatus):
            assert 0 <= made_event.error_code < 2**32
        if isinstance(made_event, FlowHealth):
            assert made_event.flow_id.strip()


GENERAL = WebhookParser(pseudonymise=HASH, form_fields_allowlist=("plan", "flow_token"), typed_statuses=False)
# Status webhooks as Meta sends them, so that most take the typed path, with a wrong value here and there.
CLEAN_STATUS = st.tuples(
    st.fixed_dictionaries({
        "id": st.sampled_from(["wamid.A", "wamid.B", "wamid.C"]), "status": st.sampled_from(MESSAGE_STATUSES),
        "timestamp": _rarely_wrong(st.one_of(VALID_SECONDS.map(str), VALID_SECONDS))}),
    st.integers(min_value=0, max_value=9).flatmap(lambda k: STATUS_EXTRAS if k == 0 else st.sampled_from([
        {}, {"recipient_id": "5511999990000"},
        {"recipient_id": "5511999990000", "recipient_type": "individual", "biz_opaque_callback_data": "c=1",
         "pricing": {"billable": False, "pricing_model": "CBP", "type": "regular", "category": "utility"},
         "conversation": {"id": "c2", "origin": {"type": "service"}, "expiration_timestamp": "1767000000"}},
        {"pricing": {}, "conversation": {}, "errors": []},
        {"pricing": {"billable": None, "category": None}, "conversation": {"origin": None}, "recipient_id": ""},
        {"pricing": {"billable": True}, "conversation": {"id": None, "origin": {"type": None}}, "recipient_type": ""},
        {"conversation": {"origin": {}}, "errors": [{"code": 131026}], "biz_opaque_callback_data": None},
    ])),
).map(lambda parts: {**parts[0], **parts[1]})
CLEAN_VALUE = st.fixed_dictionaries(
    {"metadata": _rarely_wrong(st.fixed_dictionaries({"phone_number_id": st.just("990000000000001")})),
     "statuses": st.lists(CLEAN_STATUS, max_size=4)},
    optional={"messaging_product": st.just("whatsapp"), "messages": st.sampled_from([[], [], [{"type": "text"}]]),
              "errors": st.sampled_from([[], [], [{"code": 130429}]])},
)
CLEAN_CHANGE = st.fixed_dictionaries({"field": _rarely_wrong(st.just("messages")), "value": CLEAN_VALUE})
CLEAN_ENTRY = st.fixed_dictionaries(
    {"changes": st.lists(CLEAN_CHANGE, min_size=1, max_size=2)},
    optional={"id": _rarely_wrong(st.sampled_from(["1", "116797434004560", ""]))},
)
CLEAN_STATUSES = st.fixed_dictionaries(
    {"object": st.just(WHATSAPP_OBJECT), "entry": st.lists(CLEAN_ENTRY, min_size=1, max_size=2)})


@settings(max_examples=3_000, deadline=None, derandomize=True)
@given(_bodies(ENVELOPE) | _bodies(CLEAN_STATUSES))
def test_typed_statuses_parse_exactly_as_the_general_walk(body: bytes) -> None:
    try:
        expected = GENERAL.parse(body, received_at_ms=RECEIVED_MS)
    except MalformedPayloadError as general_error:
        try:
            WEBHOOKS.parse(body, received_at_ms=RECEIVED_MS)
        except MalformedPayloadError as exc:
            assert exc.reason == general_error.reason
            return
        raise AssertionError("the typed path accepted a body the general walk refuses") from None
    result = WEBHOOKS.parse(body, received_at_ms=RECEIVED_MS)
    event(f"{len(result.events)} events, {len(result.rejected)} rejected")
    assert result == expected
    assert [encode(e) for e in result.events] == [encode(e) for e in expected.events]


def _status_webhook(statuses: int, **extra: Any) -> bytes:
    value = {"metadata": {"phone_number_id": "990000000000001"}, **extra,
             "statuses": [{"id": f"wamid.{i}", "status": "delivered", "timestamp": "1767000000",
                           "recipient_id": "5511999990000"} for i in range(statuses)]}
    return orjson.dumps({"object": WHATSAPP_OBJECT, "entry": [{"id": "1", "changes": [
        {"field": "messages", "value": value}]}]})


def test_a_large_status_webhook_reads_as_the_general_walk() -> None:
    # 120 statuses: more brackets than MAX_DEPTH, so the typed shape is checked on the parsed body instead.
    body = _status_webhook(120)
    assert body.count(b"{") + body.count(b"[") > 100
    result = WEBHOOKS.parse(body, received_at_ms=RECEIVED_MS)
    assert len(result.events) == 120
    assert result == GENERAL.parse(body, received_at_ms=RECEIVED_MS)


def test_invalid_utf8_in_a_field_the_typed_shape_skips_is_refused() -> None:
    body = _status_webhook(1).replace(b'"metadata"', b'"meta\xbfdata_x":1,"metadata"')
    for parser in (WEBHOOKS, GENERAL):
        try:
            parser.parse(body, received_at_ms=RECEIVED_MS)
        except MalformedPayloadError as exc:
            assert exc.reason.startswith("body is not valid JSON")
        else:
            raise AssertionError("a body with invalid UTF-8 was accepted")


def test_deep_nesting_in_a_field_the_typed_shape_skips_is_refused() -> None:
    deep: Any = "x"
    for _ in range(120):
        deep = [deep]
    body = _status_webhook(1, messaging_product=deep)
    for parser in (WEBHOOKS, GENERAL):
        try:
            parser.parse(body, received_at_ms=RECEIVED_MS)
        except MalformedPayloadError as exc:
            assert exc.reason == "body is nested deeper than 100 levels"
        else:
            raise AssertionError("a body nested 120 levels deep was accepted")


def _non_phone_strings(node: Any) -> set[str]:
    """Strings that are not under a phone-number key (those may legitimately repeat a number)."""
    if isinstance(node, dict):
        found = {k for k in node}
        for k, v in node.items():
            if k not in ("recipient_id", "wa_id", "from", "recipient_participant_id"):
                found |= _non_phone_strings(v)
        return found
    if isinstance(node, list):
        return set().union(*(_non_phone_strings(v) for v in node)) if node else set()
    return {node} if isinstance(node, str) else set()


# --- first-party events --------------------------------------------------------------------------------

COMMON = {"flow_token": _rarely_wrong(st.sampled_from(["ft_1", "ft_2", "ft_3", ""])),
          "flow_id": _rarely_wrong(st.just("F1")), "flow_version": _rarely_wrong(st.sampled_from(["1", "2", 2])),
          "timestamp": st.one_of(st.floats(min_value=NOW_S - 10**8, max_value=NOW_S + 3600), TIMESTAMPS)}
ITEM = _wrong_one_in(10, st.one_of(
    st.fixed_dictionaries({"type": st.just("flow_sent"), "wamid": WAMID, **COMMON},
                          optional={"campaign": _maybe(st.text(max_size=6)),
                                    "phone_number_id": _maybe(st.just("990000000000001")), "recipient": PHONE}),
    st.fixed_dictionaries({"type": st.just("node"), "screen": _maybe(st.sampled_from(["PLAN", "DONE", "a-b"])),
                           "action": _maybe(st.sampled_from(["view", "submit", "back", "error", "x"])), **COMMON},
                          optional={"node_type": _maybe(st.sampled_from(["list", "form", "x"])),
                                    "data": _maybe(st.dictionaries(st.sampled_from(["plan", "email"]), JSON)),
                                    "error": _maybe(st.text(max_size=8))}),
    st.fixed_dictionaries({"type": st.just("endpoint"),
                           "action": _maybe(st.sampled_from(["INIT", "data_exchange", "BACK", "ping", "x"])),
                           **COMMON}, optional={"screen": _maybe(st.just("PLAN")), "data": _maybe(JSON)}),
))
FIRST_PARTY_BODY = st.one_of(ITEM, st.lists(ITEM, max_size=5), st.lists(ITEM, max_size=5),
                             st.fixed_dictionaries({"events": _rarely_wrong(st.lists(ITEM, max_size=5))}))


def _items(payload: Any) -> list[Any]:
    if isinstance(payload, dict) and "events" in payload:
        payload = payload["events"]
    return payload if isinstance(payload, list) else [payload]


@settings(max_examples=2_500, deadline=None, derandomize=True)
@given(_bodies(FIRST_PARTY_BODY))
def test_first_party_parser_raises_only_its_error_and_accounts_for_every_item(body: bytes) -> None:
    try:
        result = FIRST_PARTY.parse(body, received_at_ms=RECEIVED_MS)
    except MalformedPayloadError as exc:
        assert exc.reason
        event("malformed")
        return
    items = _items(orjson.loads(body))
    event(f"parsed: {'some' if result.events else 'no'} events, {'some' if result.rejected else 'no'} rejections")
    assert len(result.events) + len(result.rejected) + result.ignored == len(items)
    assert len(result.problems) == len(result.rejected)
    indices = [problem["index"] for problem in result.problems]
    assert indices == sorted(set(indices))
    assert all(0 <= i < len(items) for i in indices)
    assert [p["reason"] for p in result.problems] == [r.reason for r in result.rejected]
    for written in [*result.events, *result.rejected]:
        encode(written)
    for rejected in result.rejected:
        assert "5511999990000" not in rejected.raw


# --- Flow JSON -----------------------------------------------------------------------------------------

SCREEN_IDS = st.sampled_from(["A", "B", "C", "PLAN_SELECT", "bad-id", ""])
# Components as Meta writes them, and broken ones (drawn whole: one choice each).
COMPONENT = st.sampled_from([
    {"type": "TextBody", "text": "Pick a plan"},
    {"type": "RadioButtonsGroup", "name": "plan", "data-source": [{"id": "pro", "title": "Pro"}]},
    {"type": "Footer", "label": "Done", "on-click-action": {"name": "complete", "payload": {}}},
    {"type": "Footer", "on-click-action": {"name": "navigate", "next": {"type": "screen", "name": "NOWHERE"}}},
    {"type": "Footer", "on-click-action": {"name": "navigate", "next": "A"}},
    {"type": "Form", "name": "form", "children": [{"type": "TextInput", "name": "email"},
                                                  {"type": "If", "then": [{"type": "Dropdown", "name": 7}]}]},
    {"type": 5, "children": [None, "x", {"type": None}]}, {"on-select-action": None}, "TextBody", None,
])
SCREEN = st.fixed_dictionaries(
    {"id": _maybe(SCREEN_IDS)},
    optional={"title": WRONG, "terminal": _maybe(st.booleans()), "success": WRONG,
              "layout": _maybe(st.fixed_dictionaries({"type": st.just("SingleColumnLayout"),
                                                      "children": st.lists(COMPONENT, max_size=3)}))},
)


@st.composite
def _plausible_flow(draw: st.DrawFn) -> dict[str, Any]:
    """A Flow JSON that is valid more often than not: unique ids, routes between them, a terminal screen."""
    ids = draw(st.lists(st.sampled_from(["A", "B", "C", "PLAN_SELECT", "DONE"]), min_size=1, max_size=4, unique=True))
    targets = st.sampled_from(ids)
    navigate = st.fixed_dictionaries({"type": st.sampled_from(["Footer", "EmbeddedLink"]), "on-click-action":
                                      st.fixed_dictionaries({"name": st.just("navigate"),
                                                             "next": st.fixed_dictionaries({"name": targets})})})
    screens = [{"id": screen_id, "terminal": draw(st.booleans()) or screen_id == ids[-1],
                "layout": {"type": "SingleColumnLayout",
                           "children": draw(st.lists(st.one_of(navigate, COMPONENT), max_size=3))}}
               for screen_id in ids]
    document: dict[str, Any] = {"version": "6.0", "screens": screens}
    if draw(st.booleans()):
        document["routing_model"] = draw(st.dictionaries(targets, st.lists(targets, max_size=2)))
    return document


FLOW_JSON = st.one_of(_plausible_flow(), st.fixed_dictionaries(
    {"version": st.just("6.0"), "screens": _maybe(st.lists(SCREEN, max_size=4))},
    optional={"routing_model": _maybe(st.dictionaries(SCREEN_IDS, _maybe(st.lists(SCREEN_IDS, max_size=3))))},
))


@settings(max_examples=2_000, deadline=None, derandomize=True)
@given(_bodies(FLOW_JSON))
def test_flow_json_parser_raises_only_its_error(body: bytes) -> None:
    try:
        definition = parse_flow_json(body, flow_id="F1", version="1")
    except FlowDefinitionError as exc:
        assert str(exc)
        event("refused")
        return
    event("registered")
    screens = orjson.loads(body)["screens"]
    assert sorted(s.id for s in definition.screens) == sorted(s["id"] for s in screens)
    assert [s.position for s in definition.screens] == list(range(len(screens)))
    assert any(s.terminal for s in definition.screens)


# --- signatures ----------------------------------------------------------------------------------------

SECRETS = st.text(min_size=1, max_size=32)


@settings(max_examples=1_500, deadline=None, derandomize=True)
@given(body=st.binary(max_size=256), secret=SECRETS, data=st.data())
def test_a_signature_verifies_and_any_changed_body_byte_breaks_it(body: bytes, secret: str, data: st.DataObject
                                                                  ) -> None:
    header = sign(body, secret)
    assert verify(body, header, secret) is True
    if body:
        at = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
        byte = data.draw(st.integers(min_value=0, max_value=255).filter(lambda b: b != body[at]))
        assert verify(body[:at] + bytes([byte]) + body[at + 1:], header, secret) is False
    assert verify(body + data.draw(st.binary(min_size=1, max_size=4)), header, secret) is False


@settings(max_examples=1_000, deadline=None, derandomize=True)
@given(body=st.binary(max_size=256), secret=SECRETS, data=st.data())
def test_any_changed_signature_character_breaks_it(body: bytes, secret: str, data: st.DataObject) -> None:
    header = sign(body, secret)
    at = data.draw(st.integers(min_value=0, max_value=len(header) - 1))
    # Any other character, except the same hex digit in upper case (the same signature, accepted).
    char = data.draw(st.characters(codec="latin-1").filter(lambda c: c.lower() != header[at]))
    assert verify(body, header[:at] + char + header[at + 1:], secret) is False


@settings(max_examples=500, deadline=None, derandomize=True)
@given(body=st.binary(max_size=64), header=st.one_of(st.none(), st.text(max_size=80),
                                                     st.text(max_size=70).map(lambda h: "sha256=" + h)))
def test_a_forged_header_is_refused_without_raising(body: bytes, header: str | None) -> None:
    assert verify(body, header, "secret") is _same_signature(header, sign(body, "secret"))


def _same_signature(header: str | None, good: str) -> bool:
    prefix = "sha256="
    return header is not None and header.startswith(prefix) and header[len(prefix):].strip().lower() == good[
        len(prefix):]
