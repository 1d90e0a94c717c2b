"""A bad-input corpus against the real receiver (with the real broker, warehouse and stream worker).

Every request gets its exact answer; unusable parts of readable input end on the dead-letter topic and
in ``rejected_events`` with the reason, pseudonymised; and after the whole corpus the same receiver
process still answers. The corpus shares one stack (module scope) so that last check means something;
each case marks its payload, so the cases do not depend on each other's order.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from prometheus_client.parser import text_string_to_metric_families

from contract.codec import decode_batch
from contract.events import RejectedEvent
from contract.privacy import Pseudonymiser
from embedded.supervisor import Supervisor
from ingest.signatures import sign
from tests.stack import Stack, poll, stack_settings
from warehouse import rejected
from warehouse.client import connect

NOW = int(time.time())
PHONE = "5511999990000"
WABA_ID = "880011223344556"
PHONE_NUMBER_ID = "990000000000001"
BAD_SIGNATURE = {"error": "missing or invalid X-Hub-Signature-256"}
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One stack for the whole corpus; every process it started must be gone afterwards."""
    settings = stack_settings(tmp_path_factory.mktemp("bad-input"))
    stack = Stack(settings, Supervisor(log_dir=settings.data_dir / "logs", base_env={**os.environ}))
    try:
        for name in ("broker", "warehouse", "receiver", "stream"):
            stack.start(name)
        yield stack
    finally:
        stack.supervisor.stop_all()
        assert [c.spec.name for c in stack.supervisor.children.values() if c.process.poll() is None] == []


def base(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.settings.ingest_port}"


def post(stack: Stack, body: Any, *, headers: dict[str, Any] | None = None) -> httpx.Response:
    """A webhook signed with the app secret and sent as JSON, unless ``headers`` say otherwise."""
    signature = sign(body, stack.settings.app_secret) if isinstance(body, bytes) else ""
    sent = {"Content-Type": "application/json", "X-Hub-Signature-256": signature, **(headers or {})}
    return httpx.post(stack.webhook_url, content=body, headers={k: v for k, v in sent.items() if v is not None},
                      timeout=60)


def webhook(*statuses: Any, field: Any = "messages") -> bytes:
    value = {"messaging_product": "whatsapp", "statuses": list(statuses),
             "metadata": {"display_phone_number": "15550001111", "phone_number_id": PHONE_NUMBER_ID}}
    return orjson.dumps({"object": "whatsapp_business_account",
                         "entry": [{"id": WABA_ID, "changes": [{"field": field, "value": value}]}]})


def padded(body: bytes, size: int) -> bytes:
    """``body`` with trailing whitespace up to exactly ``size`` bytes (still the same JSON)."""
    return body + b" " * (size - len(body))


def chunks(body: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    """The body as a stream of chunks: sent without Content-Length (chunked transfer encoding)."""
    for start in range(0, len(body), size):
        yield body[start:start + size]


def marker() -> str:
    return f"case-{uuid.uuid4().hex}"


def stored_rejections(stack: Stack, mark: str) -> list[tuple[str, str, str, str, str]]:
    """(source, reason, raw, waba_id, phone_number_id) of the rejections whose raw fragment carries ``mark``."""
    client = connect(stack.settings.warehouse_url_for("analyst"))
    end = datetime.now(UTC).replace(tzinfo=None) + timedelta(minutes=1)
    frame = rejected.latest(client, end - timedelta(hours=1), end, 10_000)
    return sorted((r.source, r.reason, r.raw, r.waba_id, r.phone_number_id)
                  for r in frame.itertuples(index=False) if mark in r.raw)


def dead_letters(stack: Stack, mark: str, *, want: int, deadline_s: float = 30) -> list[RejectedEvent]:
    """The events on the dead-letter topic whose raw fragment carries ``mark``, once ``want`` arrived."""

    async def consume() -> list[RejectedEvent]:
        consumer = AIOKafkaConsumer(stack.settings.dead_letter_topic, bootstrap_servers=stack.settings.kafka_bootstrap,
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        found: list[RejectedEvent] = []
        deadline = time.monotonic() + deadline_s
        try:
            while len(found) < want and time.monotonic() < deadline:
                for messages in (await consumer.getmany(timeout_ms=500)).values():
                    found += [e for m in messages for e in decode_batch(m.value)
                              if isinstance(e, RejectedEvent) and mark in e.raw]
        finally:
            await consumer.stop()
        return found

    return asyncio.run(consume())


def ignored(stack: Stack, kind: str) -> float:
    text = httpx.get(f"{base(stack)}/metrics", timeout=10).text
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == "flowscope_ingest_ignored_total" and s.labels == {"kind": kind})


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


# --- signatures and the verification handshake ---------------------------------------------------------


@pytest.mark.parametrize(("signature", "expected"), [
    (None, BAD_SIGNATURE),
    ("", BAD_SIGNATURE),
    ("sha256=", BAD_SIGNATURE),
    ("sha256=" + "0" * 64, BAD_SIGNATURE),
    ("sha256=" + "zz" * 32, BAD_SIGNATURE),
    ("sha1=" + "ab" * 20, BAD_SIGNATURE),
    ("RIGHT_HEX_WITHOUT_PREFIX", BAD_SIGNATURE),
    ("RIGHT_SIGNATURE_TRUNCATED", BAD_SIGNATURE),
    ("RIGHT_SIGNATURE_OF_ANOTHER_SECRET", BAD_SIGNATURE),
    (b"sha256=\xe9" + b"0" * 63, BAD_SIGNATURE),
], ids=["missing", "empty", "prefix-only", "wrong-hex", "non-hex", "sha1", "no-prefix", "truncated",
        "other-secret", "non-ascii-bytes"])
def test_a_missing_or_wrong_signature_is_refused_401(stack: Stack, signature: Any, expected: dict[str, str]) -> None:
    body = webhook({"id": f"wamid.{marker()}", "status": "sent", "timestamp": str(NOW)})
    good = sign(body, stack.settings.app_secret)
    signature = {
        "RIGHT_HEX_WITHOUT_PREFIX": good.removeprefix("sha256="), "RIGHT_SIGNATURE_TRUNCATED": good[:-1],
        "RIGHT_SIGNATURE_OF_ANOTHER_SECRET": sign(body, stack.settings.app_secret + "x"),
    }.get(signature, signature) if isinstance(signature, str) else signature
    response = post(stack, body, headers={"X-Hub-Signature-256": signature})
    assert (response.status_code, response.json()) == (401, expected)


@pytest.mark.parametrize(("params", "expected"), [
    ({"hub.mode": "subscribe", "hub.verify_token": "RIGHT", "hub.challenge": "1158201444"}, (200, "1158201444")),
    ({"hub.mode": "subscribe", "hub.verify_token": "RIGHT"}, (200, "")),
    ({"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"}, (403, "verification failed")),
    ({"hub.mode": "subscribe", "hub.challenge": "1"}, (403, "verification failed")),
    ({"hub.mode": "subscribe", "hub.verify_token": "é ü", "hub.challenge": "1"}, (403, "verification failed")),
    ({"hub.mode": "unsubscribe", "hub.verify_token": "RIGHT", "hub.challenge": "1"}, (403, "verification failed")),
    ({"hub.verify_token": "RIGHT", "hub.challenge": "1"}, (403, "verification failed")),
], ids=["right-token", "right-token-no-challenge", "wrong-token", "missing-token", "non-ascii-token", "wrong-mode",
        "missing-mode"])
def test_the_verification_handshake_needs_the_right_token(stack: Stack, params: dict[str, str],
                                                          expected: tuple[int, str]) -> None:
    query = {k: stack.settings.verify_token if v == "RIGHT" else v for k, v in params.items()}
    response = httpx.get(stack.webhook_url, params=query, timeout=10)
    assert (response.status_code, response.text) == expected


# --- bodies that cannot be read: 400 with the reason ---------------------------------------------------



def deep_in_a_status(levels: int) -> bytes:
    """A status nested ``levels`` deep: valid JSON (orjson reads 1,024 levels) that once crashed the parser."""
    status = {"id": "wamid.deep", "status": "opened", "timestamp": str(NOW), "x": [[[]]]}
    return webhook(status).replace(b"[[[]]]", b"[" * levels + b"]" * levels)



@pytest.mark.parametrize(("body", "reason"), [
    (b"hello", "body is not valid JSON: unexpected character, expected a JSON value: line 1 column 1 (char 0)"),
    (b"", "body is not valid JSON: Input is a zero-length, empty document: line 1 column 1 (char 0)"),
    (b"NaN", "body is not valid JSON: unexpected character, expected a JSON value: line 1 column 1 (char 0)"),
    (webhook()[:40], "body is not valid JSON: unexpected end of data: line 1 column 41 (char 40)"),
    (webhook() + b"}", "body is not valid JSON: unexpected content after document: "
                       f"line 1 column {len(webhook()) + 1} (char {len(webhook())})"),
    (b'{"object":"wh\xe4tsapp"}',
     "body is not valid JSON: str is not valid UTF-8: surrogates not allowed: line 1 column 1 (char 0)"),
    (b"\xff\xfe\x00{",
     "body is not valid JSON: str is not valid UTF-8: surrogates not allowed: line 1 column 1 (char 0)"),
    (b"\xef\xbb\xbf" + webhook(),
     "body is not valid JSON: UTF-8 byte order mark (BOM) is not supported: line 1 column 1 (char 0)"),
    (b"[" * 100_000 + b"]" * 100_000, "body is not valid JSON: depth limit exceeded: line 1 column 1026 (char 1025)"),
    (b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
     "body is not valid JSON: depth limit exceeded: line 1 column 5122 (char 5121)"),
    (deep_in_a_status(93), "body is nested deeper than 100 levels"),  # 8 levels of envelope + 93
    (deep_in_a_status(300), "body is nested deeper than 100 levels"),
    (deep_in_a_status(1000), "body is nested deeper than 100 levels"),
    (b"[]", "body must be a JSON object"),
    (b'"whatsapp_business_account"', "body must be a JSON object"),
    (b"42", "body must be a JSON object"),
    (b"null", "body must be a JSON object"),
    (b'{"object":"page","entry":[]}', "unsupported object 'page', expected 'whatsapp_business_account'"),
    (b'{"object":"whatsapp_business_account","entry":{}}', "body.entry must be a list"),
    (b'{"object":"whatsapp_business_account","entry":[{"changes":[1]}]}', "entry[0].changes[0] must be an object"),
    (b'{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":[]}]}]}',
     "entry[0].changes[0].value must be an object"),
], ids=["not-json", "empty", "nan", "truncated", "trailing-garbage", "non-utf8-in-string", "non-utf8-bytes",
        "utf8-bom", "100k-nested-arrays", "100k-nested-objects", "101-levels", "300-levels", "1000-levels", "array",
        "string", "number", "null", "wrong-object", "entry-not-a-list", "change-not-an-object",
        "value-not-an-object"])
def test_an_unreadable_body_is_answered_400_with_the_reason(stack: Stack, body: bytes, reason: str) -> None:
    response = post(stack, body)
    assert (response.status_code, response.json()) == (400, {"error": reason})


# --- size and content type -----------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "streamed", "expected"), [
    (1024, False, (200, {"accepted": 1, "rejected": 0, "ignored": 0})),
    (1024, True, (200, {"accepted": 1, "rejected": 0, "ignored": 0})),
    (1025, False, (413, {"error": "body exceeds 1024 bytes"})),
    (1025, True, (413, {"error": "body exceeds 1024 bytes"})),
    (64 * 1024, True, (413, {"error": "body exceeds 1024 bytes"})),
], ids=["at-the-limit", "at-the-limit-chunked", "one-byte-over", "one-byte-over-chunked", "far-over-chunked"])
def test_a_body_over_the_limit_is_refused_413(stack_factory: Callable[..., Stack], size: int, streamed: bool,
                                              expected: tuple[int, dict[str, Any]]) -> None:
    small = stack_factory("broker", "receiver", max_body_bytes=1024)
    body = padded(webhook({"id": f"wamid.{marker()}", "status": "sent", "timestamp": str(NOW)}), size)
    response = post(small, chunks(body, 256) if streamed else body,
                    headers={"X-Hub-Signature-256": sign(body, small.settings.app_secret)})
    assert (response.status_code, response.json()) == expected


def test_the_default_limit_is_3_mib_and_big_bodies_do_not_grow_the_receiver(stack: Stack) -> None:
    limit = stack.settings.max_body_bytes
    assert limit == 3 * MIB
    at_limit = padded(webhook({"id": f"wamid.{marker()}", "status": "sent", "timestamp": str(NOW)}), limit)
    response = post(stack, at_limit)
    assert (response.status_code, response.json()) == (200, {"accepted": 1, "rejected": 0, "ignored": 0})
    over = post(stack, at_limit + b" ")
    assert (over.status_code, over.json()) == (413, {"error": "body exceeds 3145728 bytes"})

    pid = stack.supervisor.children["receiver"].process.pid
    before = rss_kib(pid)
    big = padded(webhook(), 3 * MIB + MIB // 2)
    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        declared = list(pool.map(lambda _: post(stack, big), range(20)))
        streamed = list(pool.map(lambda _: post(stack, chunks(big), headers={"X-Hub-Signature-256": sign(
            big, stack.settings.app_secret)}), range(20)))
    assert [(r.status_code, r.json()) for r in declared + streamed] == [
        (413, {"error": "body exceeds 3145728 bytes"})] * 40
    growth_mib = (rss_kib(pid) - before) / 1024
    assert growth_mib < 100, f"receiver RSS grew by {growth_mib:.1f} MiB"


@pytest.mark.parametrize(("content_type", "expected"), [
    ("text/plain", (415, {"error": "unsupported content type 'text/plain', expected application/json"})),
    ("application/x-www-form-urlencoded", (415, {
        "error": "unsupported content type 'application/x-www-form-urlencoded', expected application/json"})),
    ("multipart/form-data; boundary=x", (415, {
        "error": "unsupported content type 'multipart/form-data; boundary=x', expected application/json"})),
    ("application/xml", (415, {"error": "unsupported content type 'application/xml', expected application/json"})),
    ("application/json; charset=utf-8", (200, {"accepted": 1, "rejected": 0, "ignored": 0})),
    ("Application/JSON", (200, {"accepted": 1, "rejected": 0, "ignored": 0})),
], ids=["text", "form", "multipart", "xml", "json-with-charset", "json-mixed-case"])
def test_a_content_type_other_than_json_is_refused_415(stack: Stack, content_type: str,
                                                       expected: tuple[int, dict[str, Any]]) -> None:
    body = webhook({"id": f"wamid.{marker()}", "status": "sent", "timestamp": str(NOW)})
    response = post(stack, body, headers={"Content-Type": content_type})
    assert (response.status_code, response.json()) == expected


# --- readable input with parts we do not use -----------------------------------------------------------


@pytest.mark.parametrize("field", ["made_up_field", None, ["messages"], {"name": "messages"}, 42, ""],
                         ids=["unknown-name", "null", "list", "object", "number", "empty"])
def test_an_unknown_field_is_answered_200_and_counted_as_ignored(stack: Stack, field: Any) -> None:
    before = ignored(stack, "field:other")
    response = post(stack, webhook({"id": f"wamid.{marker()}", "status": "sent", "timestamp": str(NOW)}, field=field))
    assert (response.status_code, response.json()) == (200, {"accepted": 0, "rejected": 0, "ignored": 1})
    assert ignored(stack, "field:other") == before + 1


def assert_dead_lettered_and_stored(stack: Stack, status: dict[str, Any], reason: str) -> None:
    """200, one rejection on the dead-letter topic and in the warehouse, the number never in clear."""
    mark = marker()
    status = {**status, "recipient_id": PHONE, "biz_opaque_callback_data": mark}
    response = post(stack, webhook(status))
    assert (response.status_code, response.json()) == (200, {"accepted": 0, "rejected": 1, "ignored": 0})
    raw = orjson.dumps({**status, "recipient_id": Pseudonymiser(stack.settings.hash_key)(PHONE)},
                       option=orjson.OPT_SORT_KEYS).decode()
    assert PHONE not in raw
    (letter,) = dead_letters(stack, mark, want=1)
    assert (letter.source, letter.reason, letter.raw, letter.waba_id, letter.phone_number_id) == (
        "whatsapp_webhook", reason, raw, WABA_ID, PHONE_NUMBER_ID)
    want = [("whatsapp_webhook", reason, raw, WABA_ID, PHONE_NUMBER_ID)]
    assert poll(lambda: stored_rejections(stack, mark), want=want) == want


@pytest.mark.parametrize(("status", "reason"), [
    ({"id": "wamid.V1", "status": "opened", "timestamp": str(NOW)}, "unknown status value 'opened'"),
    ({"id": "wamid.V2", "status": "SENT", "timestamp": str(NOW)}, "unknown status value 'SENT'"),
    ({"id": "wamid.V3", "status": "", "timestamp": str(NOW)}, "unknown status value ''"),
    ({"id": "wamid.V4", "status": 3, "timestamp": str(NOW)}, "unknown status value 3"),
    ({"id": "wamid.V5", "status": ["sent"], "timestamp": str(NOW)}, "unknown status value ['sent']"),
    ({"id": "wamid.V6", "timestamp": str(NOW)}, "unknown status value None"),
], ids=["opened", "upper-case", "empty", "number", "list", "missing"])
def test_an_unknown_status_value_is_dead_lettered_and_stored(stack: Stack, status: dict[str, Any], reason: str
                                                             ) -> None:
    assert_dead_lettered_and_stored(stack, status, reason)


@pytest.mark.parametrize("status", [
    {"status": "delivered", "timestamp": str(NOW)},
    {"id": "", "status": "delivered", "timestamp": str(NOW)},
    {"id": None, "status": "delivered", "timestamp": str(NOW)},
    {"id": 123456, "status": "delivered", "timestamp": str(NOW)},
], ids=["absent", "empty", "null", "number"])
def test_a_status_without_id_is_dead_lettered_and_stored(stack: Stack, status: dict[str, Any]) -> None:
    assert_dead_lettered_and_stored(stack, status, "status without id")


@pytest.mark.parametrize(("timestamp", "reason"), [
    (str(NOW + 7200), f"timestamp {NOW + 7200} is in the future"),
    (NOW + 86_400, f"timestamp {NOW + 86_400} is in the future"),
    ("9" * 18, f"timestamp {'9' * 18} is in the future"),
    ("9" * 5000, "missing or non-numeric timestamp"),
], ids=["two-hours-ahead", "a-day-ahead-as-int", "year-31-billion", "5000-digits"])
def test_a_timestamp_in_the_future_is_dead_lettered_and_stored(stack: Stack, timestamp: Any, reason: str) -> None:
    assert_dead_lettered_and_stored(stack, {"id": "wamid.F", "status": "read", "timestamp": timestamp}, reason)


@pytest.mark.parametrize(("timestamp", "reason"), [
    ("1300000000", "timestamp 1300000000 is before 2014"),
    ("1388534399", "timestamp 1388534399 is before 2014"),
    (0, "timestamp 0 is before 2014"),
    ("-5", "missing or non-numeric timestamp"),
    ("²³", "missing or non-numeric timestamp"),
    ("", "missing or non-numeric timestamp"),
], ids=["2011", "last-second-of-2013", "zero", "negative", "superscript-digits", "empty"])
def test_a_timestamp_in_the_far_past_is_dead_lettered_and_stored(stack: Stack, timestamp: Any, reason: str) -> None:
    assert_dead_lettered_and_stored(stack, {"id": "wamid.P", "status": "read", "timestamp": timestamp}, reason)


# --- first-party events failing validation -------------------------------------------------------------


def _items(mark: str) -> dict[str, list[dict[str, Any] | str]]:
    common = {"flow_id": "F9", "flow_version": "1"}
    return {
        "mixed": [
            {"type": "node", "flow_token": f"{mark}-ok", "screen": "PLAN", "action": "view", "timestamp": NOW,
             **common},
            {"type": "node", "flow_token": f"{mark}-1", "screen": "PLAN", "action": "jump", "timestamp": NOW,
             **common},
            f"{mark}-2",
            {"type": "endpoint", "flow_token": f"{mark}-3", "action": ["INIT"], "timestamp": NOW, **common},
            {"type": "flow_sent", "flow_token": f"{mark}-4", "recipient": PHONE, "timestamp": NOW, **common},
        ],
        "all-invalid": [
            {"type": "node", "flow_token": f"{mark}-0", "screen": "PLAN", "action": "view",
             "timestamp": NOW + 7200, **common},
            {"type": "click", "flow_token": f"{mark}-1"},
            {"type": "node", "flow_token": f"{mark}-2", "screen": "bad-id", "action": "view", "timestamp": NOW,
             **common},
            {"type": "flow_sent", "wamid": "wamid.X", "flow_token": f"{mark}-3", "recipient": int(PHONE),
             "timestamp": "yesterday", **common},
        ],
    }


@pytest.mark.parametrize(("case", "status", "accepted", "reasons"), [
    ("mixed", 207, 1, {
        1: "action must be one of view, submit, back, error; got 'jump'",
        2: "event must be a JSON object",
        3: "action must be one of INIT, data_exchange, BACK, ping; got ['INIT']",
        4: "wamid must be a non-empty string",
    }),
    ("all-invalid", 400, 0, {
        0: f"timestamp {NOW + 7200} is in the future",
        1: "type must be one of flow_sent, node, endpoint; got 'click'",
        2: "screen 'bad-id' is not a Flow screen id (letters and underscores)",
        3: "timestamp must be Unix seconds",
    }),
], ids=["some-invalid-207", "all-invalid-400"])
def test_first_party_items_failing_validation_are_reported_and_stored(
    stack: Stack, case: str, status: int, accepted: int, reasons: dict[int, str]
) -> None:
    mark = marker()
    response = httpx.post(f"{base(stack)}/events", content=orjson.dumps(_items(mark)[case]), timeout=10,
                          headers={"Authorization": f"Bearer {stack.settings.events_token}"})
    assert (response.status_code, response.json()) == (status, {
        "accepted": accepted, "rejected": [{"index": i, "reason": r} for i, r in reasons.items()], "ignored": 0})
    want = sorted(("first_party", reason) for reason in reasons.values())
    stored = poll(lambda: sorted(row[:2] for row in stored_rejections(stack, mark)), want=want)
    assert stored == want
    assert [row[2] for row in stored_rejections(stack, mark) if PHONE in row[2]] == []


# --- the bug the corpus found in the stream's path: a code that does not fit the column ----------------


def test_a_failed_status_with_an_out_of_range_error_code_is_stored_with_code_0(stack: Stack) -> None:
    wamid = f"wamid.{marker()}"
    body = webhook({"id": wamid, "status": "failed", "timestamp": str(NOW), "errors": [{"code": 2**40}]})
    response = post(stack, body)
    assert (response.status_code, response.json()) == (200, {"accepted": 1, "rejected": 0, "ignored": 0})
    client = connect(stack.settings.warehouse_url_for("analyst"))
    rows = poll(lambda: client.query("SELECT status, error_code FROM message_statuses FINAL WHERE wamid = {w:String}",
                                     parameters={"w": wamid}).result_rows, want=[("failed", 0)])
    assert rows == [("failed", 0)]


# --- after all of it -----------------------------------------------------------------------------------


def test_the_same_receiver_still_answers_after_the_whole_corpus(stack: Stack) -> None:
    receiver = stack.supervisor.children["receiver"]
    assert stack.supervisor.exited() == []
    wamid = f"wamid.{marker()}"
    response = post(stack, webhook({"id": wamid, "status": "delivered", "timestamp": str(NOW)}))
    assert (response.status_code, response.json()) == (200, {"accepted": 1, "rejected": 0, "ignored": 0})
    health = httpx.get(f"{base(stack)}/healthz", timeout=10)
    assert (health.status_code, health.json()) == (200, {"status": "ok", "broker": "connected"})
    client = connect(stack.settings.warehouse_url_for("analyst"))
    count = "SELECT count() FROM message_statuses FINAL WHERE wamid = {w:String}"
    assert poll(lambda: client.query(count, parameters={"w": wamid}).result_rows, want=[(1,)]) == [(1,)]
    # Nothing answered 500: Starlette logs every unhandled exception with this line.
    assert "Exception in ASGI application" not in Path(receiver.log_path).read_text(errors="replace")
    assert receiver.process.poll() is None
