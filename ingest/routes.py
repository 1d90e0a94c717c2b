"""HTTP endpoints of the receiver."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from contract.events import AnyEvent, FlowDefinitionRegistered, UserPreference, WebhookError, event_id
from contract.exceptions import FlowDefinitionError
from contract.flowjson import parse_flow_json
from ingest import metrics, signatures
from ingest.exceptions import BrokerUnavailableError, MalformedPayloadError
from ingest.parsing import WebhookParser
from ingest.producer import EventProducer

logger = logging.getLogger(__name__)


class BodyTooLargeError(Exception):
    """The body exceeded the configured limit while being read."""


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing (without buffering it) anything over ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError
        chunks.append(chunk)
    return b"".join(chunks)


_JSON = "application/json"
# Body not readable (too large, unsigned, not JSON): which field it carried is unknown.
UNKNOWN = "unknown"
# Request kinds other than Meta webhooks, as the ``field`` label of the webhooks counter.
FIRST_PARTY = "first_party"
FLOW_DEFINITION = "flow_definition"
MAX_FLOW_NAME = 200  # characters of a flow's display name (?name= on the registration)


def _error_body(status: int, field: str, outcome: str, reason: str) -> tuple[int, bytes]:
    metrics.webhook_counter(field, outcome).inc()
    return status, orjson.dumps({"error": reason})


def _error(status: int, field: str, outcome: str, reason: str) -> Response:
    status, body = _error_body(status, field, outcome, reason)
    return Response(body, status_code=status, media_type=_JSON)


def _count(events: list[AnyEvent]) -> None:
    """Count written events by kind (the contract's tag), one counter update per kind; and, when there are any,
    value-level errors and marketing preference changes by their labels."""
    kinds: dict[type, int] = {}
    for event in events:
        kinds[type(event)] = kinds.get(type(event), 0) + 1
    for kind, count in kinds.items():
        metrics.event_counter(kind).inc(count)
    if WebhookError in kinds or UserPreference in kinds:
        metrics.count_reports(events)


async def verify_subscription(request: Request) -> Response:
    """Meta's verification handshake: echo hub.challenge when hub.verify_token matches."""
    settings = request.app.state.settings
    params = request.query_params
    token = params.get("hub.verify_token", "")
    if params.get("hub.mode") != "subscribe" or not hmac.compare_digest(
        token.encode(), settings.verify_token.encode()
    ):
        return PlainTextResponse("verification failed", status_code=403)
    return PlainTextResponse(params.get("hub.challenge", ""))


async def answer_webhook(state: Any, body: bytes | None, *, signature: str | None,
                         content_type: str) -> tuple[int, bytes]:
    """Status and JSON body answering a Meta webhook POST (``body`` None: it exceeded the limit).

    200 only once the broker acknowledged every event of the request; else 413 / 401 / 415 / 400 / 503 with the
    reason. Served by :mod:`ingest.fastpath` without Starlette's request and routing layers.
    """
    settings = state.settings
    if body is None:
        return _error_body(413, UNKNOWN, "too_large", f"body exceeds {settings.max_body_bytes} bytes")
    if not state.webhook_signature(body, signature):
        return _error_body(401, UNKNOWN, "bad_signature", "missing or invalid X-Hub-Signature-256")
    if content_type and not content_type.lower().startswith("application/json"):
        return _error_body(415, UNKNOWN, "malformed",
                           f"unsupported content type {content_type!r}, expected application/json")
    parser: WebhookParser = state.parser
    try:
        result = parser.parse(body)
    except MalformedPayloadError as exc:
        return _error_body(400, UNKNOWN, "malformed", exc.reason)
    field = result.field_label
    started = time.perf_counter()
    events = [*result.events, *result.rejected]
    producer: EventProducer = state.producer
    try:
        await producer.send(events)
    except BrokerUnavailableError as exc:
        logger.warning("answering 503: %s", exc)
        return _error_body(503, field, "broker_unavailable", "event store unavailable, retry later")
    metrics.BROKER_WRITE_LATENCY.observe(time.perf_counter() - started)
    metrics.webhook_counter(field, "accepted").inc()
    _count(events)
    if result.ignored:
        for kind, count in result.ignored.items():
            metrics.IGNORED.labels(kind).inc(count)
    return 200, b'{"accepted":%d,"rejected":%d,"ignored":%d}' % (
        len(result.events), len(result.rejected), sum(result.ignored.values())
    )


def _authorised(request: Request, body: bytes) -> bool:
    """Bearer token, or an HMAC-SHA256 of the body keyed with the same token."""
    token: str = request.app.state.settings.events_token
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return hmac.compare_digest(header[7:].strip().encode(), token.encode())
    return signatures.verify(body, request.headers.get("x-flowscope-signature-256"), token)


async def receive_events(request: Request) -> Response:
    """First-party events: sends and screen events of Flow sessions (schema in ingest/first_party.py)."""
    started = time.perf_counter()
    try:
        return await _receive_events(request)
    finally:
        metrics.REQUEST_LATENCY.observe(time.perf_counter() - started)


async def _publish(request: Request, events: list[AnyEvent], field: str) -> Response | None:
    """Write ``events``; None once the broker acknowledged them all, else the 503 to answer."""
    producer: EventProducer = request.app.state.producer
    try:
        await producer.send(events)
    except BrokerUnavailableError as exc:
        logger.warning("answering 503: %s", exc)
        return _error(503, field, "broker_unavailable", "event store unavailable, retry later")
    return None


async def _first_party_body(request: Request, field: str) -> bytes | Response:
    """The body of a first-party request, or the 413 / 401 to answer."""
    limit = request.app.state.settings.max_body_bytes
    try:
        body = await read_body(request, limit)
    except BodyTooLargeError:
        return _error(413, field, "too_large", f"body exceeds {limit} bytes")
    if not _authorised(request, body):
        return _error(401, field, "bad_signature", "missing or invalid bearer token or X-Flowscope-Signature-256")
    return body


async def _receive_events(request: Request) -> Response:
    body = await _first_party_body(request, FIRST_PARTY)
    if isinstance(body, Response):
        return body
    try:
        result = request.app.state.first_party.parse(body)
    except MalformedPayloadError as exc:
        return _error(400, FIRST_PARTY, "malformed", exc.reason)
    events = [*result.events, *result.rejected]
    refused = await _publish(request, events, FIRST_PARTY)
    if refused is not None:
        return refused
    _count(events)
    status = 200 if not result.problems else 207 if result.events else 400
    outcome = "accepted" if status == 200 else "partial" if status == 207 else "malformed"
    metrics.WEBHOOKS.labels(FIRST_PARTY, outcome).inc()
    content = {"accepted": len(result.events), "rejected": result.problems, "ignored": result.ignored}
    return Response(orjson.dumps(content), status_code=status, media_type=_JSON)


async def register_flow(request: Request) -> Response:
    """``PUT /flows/{flow_id}/versions/{version}`` with the version's Flow JSON as the body."""
    body = await _first_party_body(request, FLOW_DEFINITION)
    if isinstance(body, Response):
        return body
    flow_id, version = request.path_params["flow_id"], request.path_params["version"]
    name = request.query_params.get("name", "").strip()
    if len(name) > MAX_FLOW_NAME or not name.isprintable():
        return _error(400, FLOW_DEFINITION, "malformed",
                      f"name must be printable text of at most {MAX_FLOW_NAME} characters")
    try:
        definition = parse_flow_json(body, flow_id=flow_id, version=version)
    except FlowDefinitionError as exc:
        return _error(400, FLOW_DEFINITION, "malformed", str(exc))
    received = int(time.time() * 1000)
    event = FlowDefinitionRegistered(
        event_id=event_id("flow_definition", flow_id, version, hashlib.sha256(body).hexdigest(), name),
        flow_id=flow_id,
        flow_version=version,
        flow_json=body.decode("utf-8", errors="replace"),
        received_at_ms=received,
        flow_name=name,
    )
    refused = await _publish(request, [event], FLOW_DEFINITION)
    if refused is not None:
        return refused
    metrics.WEBHOOKS.labels(FLOW_DEFINITION, "accepted").inc()
    _count([event])
    content = {"flow_id": flow_id, "version": version, "name": name, "screens": [s.id for s in definition.screens]}
    return Response(orjson.dumps(content), media_type=_JSON)


async def healthz(request: Request) -> Response:
    producer: EventProducer = request.app.state.producer
    if not producer.ready:
        return JSONResponse({"status": "starting", "broker": "unreachable"}, status_code=503)
    return JSONResponse({"status": "ok", "broker": "connected"})


async def prometheus_metrics(request: Request) -> Response:
    workers: int = request.app.state.settings.ingest_workers
    return Response(metrics.exposition(multiprocess_mode=workers > 1), media_type=CONTENT_TYPE_LATEST)
