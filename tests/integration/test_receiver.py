"""The receiver as a separate process against the real broker (tansu): HTTP answers and what lands on Kafka."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer

from contract.codec import decode_batch, partition_for
from contract.events import FlowCompletion, MessageStatus, RejectedEvent
from contract.privacy import Pseudonymiser
from ingest.signatures import sign
from tests.stack import Stack


def webhook(*statuses: dict[str, Any], messages: list[dict[str, Any]] | None = None) -> bytes:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001111", "phone_number_id": "990000000000001"},
        "statuses": list(statuses),
    }
    if messages:
        value["messages"] = messages
    return orjson.dumps({"object": "whatsapp_business_account",
                         "entry": [{"id": "880011223344556", "changes": [{"field": "messages", "value": value}]}]})


def post(stack: Stack, body: bytes, *, signature: str | None = None, content_type: str = "application/json",
         ) -> httpx.Response:
    headers = {"Content-Type": content_type}
    headers["X-Hub-Signature-256"] = sign(body, stack.settings.app_secret) if signature is None else signature
    return httpx.post(stack.webhook_url, content=body, headers=headers, timeout=30)


def read_topic(stack: Stack, topic: str, *, want: int, deadline_s: float = 20) -> list[tuple[int, Any]]:
    """(partition, event) for every event on ``topic``, polling until ``want`` arrived or the deadline."""

    async def consume() -> list[tuple[int, Any]]:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=stack.settings.kafka_bootstrap,
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        found: list[tuple[int, Any]] = []
        deadline = time.monotonic() + deadline_s
        try:
            while len(found) < want and time.monotonic() < deadline:
                records = await consumer.getmany(timeout_ms=500)
                for tp, messages in records.items():
                    for message in messages:
                        found += [(tp.partition, event) for event in decode_batch(message.value)]
        finally:
            await consumer.stop()
        return found

    return asyncio.run(consume())


def now() -> str:
    return str(int(time.time()))


def test_verification_handshake(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory("broker", "receiver")
    params = {"hub.mode": "subscribe", "hub.verify_token": stack.settings.verify_token, "hub.challenge": "1158201444"}
    ok = httpx.get(stack.webhook_url, params=params)
    assert (ok.status_code, ok.text) == (200, "1158201444")
    wrong = httpx.get(stack.webhook_url, params={**params, "hub.verify_token": "nope"})
    assert wrong.status_code == 403
    assert httpx.get(stack.webhook_url, params={**params, "hub.mode": "unsubscribe"}).status_code == 403


def test_statuses_reach_kafka_pseudonymised_and_partitioned_by_wamid(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory("broker", "receiver")
    ts = now()
    statuses = [
        {"id": f"wamid.M{i}", "status": status, "timestamp": ts, "recipient_id": "5511999990000"}
        for i in range(20) for status in ("sent", "delivered")
    ]
    response = post(stack, webhook(*statuses, messages=[{
        "context": {"from": "15550001111", "id": "wamid.M0"}, "from": "5511999990000", "id": "wamid.R1",
        "timestamp": ts, "type": "interactive",
        "interactive": {"type": "nfm_reply", "nfm_reply": {"name": "flow", "body": "Sent",
                                                           "response_json": '{"flow_token":"ft_1","plan":"pro"}'}}}]))
    assert (response.status_code, response.json()) == (200, {"accepted": 41, "rejected": 0, "ignored": 0})

    found = read_topic(stack, stack.settings.events_topic, want=41)
    assert len(found) == 41
    partitions = stack.settings.partitions
    for partition, event in found:
        assert partition == partition_for(event.key, partitions)
    by_kind = {kind: [e for _, e in found if isinstance(e, kind)] for kind in (MessageStatus, FlowCompletion)}
    assert sorted((e.wamid, e.status) for e in by_kind[MessageStatus]) == sorted(
        (s["id"], s["status"]) for s in statuses
    )
    expected_hash = Pseudonymiser(stack.settings.hash_key)("5511999990000")
    assert {e.recipient_hash for e in by_kind[MessageStatus]} == {expected_hash}
    (completion,) = by_kind[FlowCompletion]
    assert (completion.flow_wamid, completion.flow_token, completion.user_hash) == ("wamid.M0", "ft_1", expected_hash)
    assert completion.response_fields == {}
    # The completion shares a partition with its Flow message's statuses.
    assert {p for p, e in found if getattr(e, "wamid", "") == "wamid.M0"} == {
        p for p, e in found if isinstance(e, FlowCompletion)
    }


def test_unusable_status_goes_to_the_dead_letter_topic(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory("broker", "receiver")
    body = webhook({"id": "wamid.OK", "status": "sent", "timestamp": now()},
                   {"id": "wamid.BAD", "status": "opened", "timestamp": now(), "recipient_id": "5511999990000"})
    response = post(stack, body)
    assert (response.status_code, response.json()) == (200, {"accepted": 1, "rejected": 1, "ignored": 0})
    ((_, rejected),) = read_topic(stack, stack.settings.dead_letter_topic, want=1)
    assert isinstance(rejected, RejectedEvent)
    assert rejected.reason == "unknown status value 'opened'"
    assert b"5511999990000" not in rejected.raw.encode()


def test_bad_requests_get_clear_errors_and_nothing_is_written(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory("broker", "receiver", max_body_bytes=10_000)
    body = webhook({"id": "wamid.X", "status": "sent", "timestamp": now()})
    assert post(stack, body, signature="sha256=" + "0" * 64).status_code == 401
    assert post(stack, body, signature="").status_code == 401
    malformed = post(stack, b"{not json")
    assert malformed.status_code == 400
    assert malformed.json()["error"].startswith("body is not valid JSON")
    wrong_object = post(stack, b'{"object":"page","entry":[]}')
    assert (wrong_object.status_code, wrong_object.json()) == (
        400, {"error": "unsupported object 'page', expected 'whatsapp_business_account'"}
    )
    assert post(stack, body, content_type="text/plain").status_code == 415
    too_large = post(stack, b"{" + b" " * 20_000 + b"}")
    assert too_large.status_code == 413

    metrics = httpx.get(f"http://127.0.0.1:{stack.settings.ingest_port}/metrics").text
    for outcome, count in (("bad_signature", 2), ("malformed", 3), ("too_large", 1)):
        assert f'flowscope_ingest_webhooks_total{{field="unknown",outcome="{outcome}"}} {float(count)}' in metrics
    assert 'flowscope_ingest_webhooks_total{field="messages",outcome="accepted"} 0.0' in metrics
    assert read_topic(stack, stack.settings.events_topic, want=1, deadline_s=3) == []


def test_health_reports_the_broker(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory("broker", "receiver")
    health = httpx.get(f"http://127.0.0.1:{stack.settings.ingest_port}/healthz")
    assert (health.status_code, health.json()) == (200, {"status": "ok", "broker": "connected"})
