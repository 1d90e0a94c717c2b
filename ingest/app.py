"""The receiver's ASGI application: ``create_app(settings)``."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route

from config.settings import Settings
from contract.privacy import Pseudonymiser
from ingest import routes
from ingest.fastpath import WebhookFastPath
from ingest.first_party import FirstPartyParser
from ingest.parsing import WebhookParser
from ingest.paths import EVENTS_PATH, FLOW_REGISTRATION_PATH, HEALTH_PATH, METRICS_PATH, WEBHOOK_PATH
from ingest.producer import EventProducer
from ingest.signatures import Verifier

logger = logging.getLogger(__name__)


def create_app(settings: Settings) -> WebhookFastPath:
    """The receiver: Starlette routes, with the webhook POST served by the raw ASGI fast path in front."""
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        producer = EventProducer(settings)
        app.state.producer = producer
        await producer.start()
        try:
            yield
        finally:
            await producer.stop()

    app = Starlette(
        routes=[
            Route(WEBHOOK_PATH, routes.verify_subscription, methods=["GET"]),
            Route(EVENTS_PATH, routes.receive_events, methods=["POST"]),
            Route(FLOW_REGISTRATION_PATH, routes.register_flow, methods=["PUT"]),
            Route(HEALTH_PATH, routes.healthz, methods=["GET"]),
            Route(METRICS_PATH, routes.prometheus_metrics, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.webhook_signature = Verifier(settings.app_secret)
    app.state.parser = WebhookParser(
        pseudonymise=Pseudonymiser(settings.hash_key), form_fields_allowlist=settings.form_fields_allowlist
    )
    app.state.first_party = FirstPartyParser(
        pseudonymise=Pseudonymiser(settings.hash_key), form_fields_allowlist=settings.form_fields_allowlist
    )
    return WebhookFastPath(app)


def create_app_from_env() -> WebhookFastPath:
    """App factory for uvicorn's worker processes: each reads the same environment."""
    return create_app(Settings.from_env())


def serve(settings: Settings) -> None:
    """Run the receiver with uvicorn until SIGINT/SIGTERM; several worker processes when configured."""
    app: WebhookFastPath | str = create_app(settings)
    workers = settings.ingest_workers
    if workers > 1:
        # Each worker writes its samples under this directory; /metrics sums them. Files of an
        # earlier run would add stale totals, so the directory starts empty.
        metrics_dir = settings.data_dir.resolve() / "metrics" / f"ingest-{settings.ingest_port}"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        os.environ.update(settings.as_env())
        app = "ingest.app:create_app_from_env"
        logger.info("receiver with %d worker processes; metrics summed from %s", workers, metrics_dir)
    uvicorn.run(app, **uvicorn_options(settings))


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How the receiver is served; the benchmark's no-op endpoint is served the same way."""
    workers = settings.ingest_workers
    return {
        "factory": workers > 1, "workers": workers if workers > 1 else None, "host": settings.ingest_host,
        "port": settings.ingest_port, "log_level": settings.log_level.lower(), "access_log": False,
        "proxy_headers": False, "loop": "auto", "http": "auto",
    }
