"""The webhook POST as raw ASGI: the receiver's hot path without Starlette's request, routing and middleware layers.

Every other request (the verification GET, first-party events, registration, health, metrics, lifespan) goes to
the Starlette app unchanged. The answers are the route's own (:func:`ingest.routes.answer_webhook`): the same
statuses, bodies and metrics; an unexpected error answers 500 as Starlette's ServerErrorMiddleware does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.applications import Starlette

from ingest import metrics
from ingest.paths import WEBHOOK_PATH
from ingest.routes import answer_webhook
from ingest.signatures import SIGNATURE_HEADER

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_SIGNATURE = SIGNATURE_HEADER.lower().encode("latin-1")
_JSON_HEADERS = [(b"content-type", b"application/json")]
_SERVER_ERROR = b"Internal Server Error"


class ClientGoneError(Exception):
    """The client disconnected before its body was read: there is nobody to answer."""


class WebhookFastPath:
    """ASGI app: POST on the webhook path answered directly, everything else by ``app``."""

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.state = app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == WEBHOOK_PATH:
            await self._webhook(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _webhook(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        responded = False
        try:
            declared = signature = content_type = None
            for name, value in scope["headers"]:  # the first of repeated headers, as Starlette's Headers.get
                if name == b"content-length" and declared is None:
                    declared = value.decode("latin-1")
                elif name == _SIGNATURE and signature is None:
                    signature = value.decode("latin-1")
                elif name == b"content-type" and content_type is None:
                    content_type = value.decode("latin-1")
            body = await _read_body(receive, declared, self.state.settings.max_body_bytes)
            status, answer = await answer_webhook(self.state, body, signature=signature,
                                                  content_type=content_type or "")
            responded = True
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-length", b"%d" % len(answer)), *_JSON_HEADERS]})
            await send({"type": "http.response.body", "body": answer})
        except ClientGoneError:
            return
        except Exception:
            if not responded:
                await send({"type": "http.response.start", "status": 500,
                            "headers": [(b"content-length", b"%d" % len(_SERVER_ERROR)),
                                        (b"content-type", b"text/plain; charset=utf-8")]})
                await send({"type": "http.response.body", "body": _SERVER_ERROR})
            raise
        finally:
            metrics.REQUEST_LATENCY.observe(time.perf_counter() - started)


async def _read_body(receive: Receive, declared: str | None, limit: int) -> bytes | None:
    """The raw body, or None (without buffering it) once it is over ``limit`` bytes."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGoneError
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
