"""The Faust stream application: ``create_app(settings)`` and the worker entry point."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust
from aiokafka.errors import KafkaError
from prometheus_client import start_http_server

from config.settings import Settings
from config.topics import ensure_topics
from stream.catalog import CatalogEntry, FlowCatalog
from stream.consumer import BatchConsumer
from stream.gauges import WarehouseGauges
from stream.sink import Sink, WarehouseSink
from warehouse.client import connect
from warehouse.screens import load_catalog

logger = logging.getLogger(__name__)


def create_app(settings: Settings, *, sink: Sink | None = None, gauges: bool = True) -> faust.App:
    """The worker app. The batch consumer runs as one of its services; agents are added per issue."""
    app = faust.App(
        f"{settings.consumer_group}-app",
        broker=[f"kafka://{server.strip()}" for server in settings.kafka_bootstrap.split(",")],
        broker_session_timeout=settings.broker_session_timeout_s,
        broker_heartbeat_interval=max(0.5, settings.broker_session_timeout_s / 4),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        table_standby_replicas=0,
        web_enabled=False,
        producer_acks=-1,
        datadir=str(settings.data_dir / "stream"),
    )
    writer = sink if sink is not None else WarehouseSink(settings.warehouse_url_for("writer"))
    def load() -> dict[tuple[str, str], CatalogEntry]:
        client = connect(settings.warehouse_url_for("analyst"))
        try:
            loaded = load_catalog(client)
        finally:
            client.close()
        return {key: CatalogEntry(entry, screens) for key, (entry, screens) in loaded.items()}

    catalog = FlowCatalog(load, refresh_s=settings.catalog_refresh_s)

    @app.service
    class WarehouseWriter(BatchConsumer):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(settings=settings, sink=writer, catalog=catalog, **kwargs)

    if gauges:
        @app.service
        class Gauges(WarehouseGauges):
            def __init__(self, **kwargs: Any) -> None:
                super().__init__(settings=settings, **kwargs)

    return app


def wait_for_broker(settings: Settings) -> None:
    """Block until the broker answers (and the topics exist): Faust gives up at once when it cannot connect."""
    while True:
        try:
            asyncio.run(ensure_topics(settings, timeout_s=10))
            return
        except (KafkaError, OSError) as exc:
            logger.warning("broker %s not reachable yet (%r); waiting", settings.kafka_bootstrap, exc)


def run_worker(settings: Settings) -> None:
    """Run one stream worker until SIGINT/SIGTERM."""
    if settings.stream_metrics_port:
        start_http_server(settings.stream_metrics_port, addr=settings.stream_metrics_host)
    wait_for_broker(settings)
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level.lower().replace("warning", "warn"))
    worker.execute_from_commandline()
