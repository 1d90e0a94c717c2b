"""A failure spike pages on-call: real Prometheus and Alertmanager over the running pipeline.

Two receiver worker processes and two stream workers are scraped by Prometheus (Debian package),
which evaluates the shipped rules and sends to Alertmanager (Debian package), which posts to an HTTP
receiver inside this test. The simulator sends normal traffic, then a failure spike, then normal
traffic again: the delivery-failure alert must arrive during the spike and resolve after it, and
Prometheus's sums across the worker processes must equal the simulator's truth exactly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from embedded.alerting import alertmanager_spec, prometheus_spec
from embedded.specs import receiver_spec, stream_spec
from embedded.supervisor import free_port
from flowtools.simulator.config import SimulationConfig
from flowtools.simulator.generator import generate
from flowtools.simulator.runner import SimulationResult, run
from tests.stack import Stack, poll

ALERT = "FlowscopeDeliveryFailureRatioHigh"
SEED = 5
RATE = 100.0  # webhook POSTs per second
MESSAGES_PER_SECOND = 270  # at RATE, as generated for this seed (about 2.7 messages per POST)


class AlertSink:
    """The HTTP receiver Alertmanager notifies: keeps every (monotonic time, alert) it was sent."""

    def __init__(self) -> None:
        self.received: list[tuple[float, dict[str, Any]]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                now = time.monotonic()
                for alert in orjson.loads(body)["alerts"]:
                    sink.received.append((now, alert))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def first(self, status: str, phone_number_ids: set[str], *, after: float = 0.0) -> dict[str, float]:
        """Earliest notification time per phone number of ``ALERT`` in ``status``, from ``after`` on."""
        seen: dict[str, float] = {}
        for at, alert in list(self.received):
            labels = alert["labels"]
            pnid = labels.get("phone_number_id", "")
            if (labels["alertname"] == ALERT and alert["status"] == status and pnid in phone_number_ids
                    and at >= after and pnid not in seen):
                seen[pnid] = at
        return seen

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def alert_sink() -> Iterator[AlertSink]:
    sink = AlertSink()
    yield sink
    sink.close()


class Traffic:
    """Simulator phases run one after another in a thread; each phase's start and end are recorded."""

    def __init__(self, url: str, app_secret: str) -> None:
        self.url, self.app_secret = url, app_secret
        self.results: list[SimulationResult] = []
        self.started: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self.loop = asyncio.new_event_loop()
        self.stop = asyncio.Event()
        self.thread: threading.Thread | None = None

    def start(self, phases: list[tuple[str, SimulationConfig]]) -> None:
        async def play() -> None:
            for name, config in phases:
                self.started[name] = time.monotonic()
                self.results.append(await run(self.url, config=config, app_secret=self.app_secret,
                                              progress=False, stop=self.stop))
                self.ended[name] = time.monotonic()

        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(play(),), daemon=True)
        self.thread.start()

    def finish(self) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        if self.thread is not None:
            self.thread.join(timeout=60)
            assert not self.thread.is_alive()
        self.loop.close()


def prometheus_value(stack: Stack, query: str) -> dict[tuple[tuple[str, str], ...], float]:
    response = httpx.get(f"http://127.0.0.1:{stack.settings.prometheus_port}/api/v1/query",
                         params={"query": query}, timeout=10).json()
    return {tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in response["data"]["result"]}


def owned_partitions(port: int, topic: str) -> frozenset[str]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return frozenset(
        sample.labels["partition"] for family in text_string_to_metric_families(text) for sample in family.samples
        if sample.name == "flowscope_stream_consumer_lag_messages" and sample.labels["topic"] == topic
    )


def config(messages: int, failure_ratio: float, traffic_seed: int) -> SimulationConfig:
    return SimulationConfig(messages=messages, rate=RATE, seed=SEED, traffic_seed=traffic_seed,
                            failure_ratio=failure_ratio, concurrency=16, deadline_s=120)


def test_failure_spike_pages_and_resolves_and_totals_add_up(stack_factory: Callable[..., Stack],
                                                            alert_sink: AlertSink) -> None:
    stack = stack_factory("broker", "warehouse", ingest_workers=2, gauge_refresh_s=5)
    settings = stack.settings
    second = dataclasses.replace(settings, stream_metrics_port=free_port())
    stack.supervisor.start(receiver_spec(settings))
    stack.supervisor.start(stream_spec(settings, name="stream-1"))
    stack.supervisor.start(stream_spec(second, name="stream-2"))
    stack.supervisor.start(alertmanager_spec(settings, webhook_url=alert_sink.url, group_wait_s=1,
                                             group_interval_s=1))
    workers = [f"127.0.0.1:{settings.stream_metrics_port}", f"127.0.0.1:{second.stream_metrics_port}"]
    stack.supervisor.start(prometheus_spec(settings, stream_targets=workers, interval_s=1))

    # Both workers share the partitions before any traffic, so no rebalance replays a batch.
    def split() -> bool:
        mine, theirs = (owned_partitions(int(w.rsplit(":")[1]), settings.events_topic) for w in workers)
        return bool(mine) and bool(theirs) and not mine & theirs and len(mine | theirs) == settings.partitions

    assert poll(split, want=True, deadline_s=90, interval_s=0.5)
    # Scraped and up: the receiver, both stream workers and the rollup.
    assert poll(lambda: sum(prometheus_value(stack, 'up{job=~"flowscope-.*"}').values()), want=4.0,
                deadline_s=30) == 4.0

    # The simulated business numbers: the same in every phase (same seed), each gets spiked.
    phone_number_ids = set(generate(config(1, 0.0, 0))[1].to_dict()["phone_numbers"])
    traffic = Traffic(stack.webhook_url, settings.app_secret)
    traffic.start([
        ("baseline", config(15 * MESSAGES_PER_SECOND, 0.0, 1)),
        ("spike", config(90 * MESSAGES_PER_SECOND, 0.5, 2)),
        ("recovery", config(240 * MESSAGES_PER_SECOND, 0.0, 3)),
    ])
    try:
        assert poll(lambda: "spike" in traffic.started, want=True, deadline_s=60)
        spike_start = traffic.started["spike"]
        assert alert_sink.first("firing", phone_number_ids) == {}  # normal traffic pages nobody

        def all_fired() -> bool:
            return set(alert_sink.first("firing", phone_number_ids)) == phone_number_ids

        assert poll(all_fired, want=True, deadline_s=180, interval_s=0.5)
        fired = alert_sink.first("firing", phone_number_ids)
        to_alert = {pnid: round(at - spike_start, 1) for pnid, at in fired.items()}
        print(f"spike start → alert delivered, per phone number: {to_alert} s")  # noqa: T201 - the note's figure
        assert max(to_alert.values()) <= 150

        assert poll(lambda: "spike" in traffic.ended, want=True, deadline_s=120, interval_s=1)
        spike_end = traffic.ended["spike"]

        def all_resolved() -> bool:
            return set(alert_sink.first("resolved", phone_number_ids, after=spike_end)) == phone_number_ids

        assert poll(all_resolved, want=True, deadline_s=180, interval_s=0.5)
        resolved = alert_sink.first("resolved", phone_number_ids, after=spike_end)
        to_resolve = {pnid: round(at - spike_end, 1) for pnid, at in resolved.items()}
        print(f"spike end → resolved delivered, per phone number: {to_resolve} s")  # noqa: T201
        assert max(to_resolve.values()) <= 150
    finally:
        traffic.finish()

    # Prometheus's sums over two receiver processes and two stream workers equal the truth exactly.
    truths = [r.truth.to_dict() for r in traffic.results if r.truth is not None]
    assert len(truths) == 3 and all(t["posts"]["undelivered"] == 0 for t in truths)
    posts = float(sum(r.acked for r in traffic.results))
    statuses = {s: float(sum(t["statuses"][s] for t in truths)) for s in ("sent", "delivered", "read", "failed")}
    accepted = 'sum(flowscope_ingest_webhooks_total{outcome="accepted"})'  # every field: statuses, preferences, errors
    assert poll(lambda: prometheus_value(stack, accepted), want={(): posts}, deadline_s=30) == {(): posts}
    by_status = "sum by (status) (flowscope_stream_message_statuses_total)"
    want = {(("status", s),): n for s, n in statuses.items() if n}
    assert poll(lambda: prometheus_value(stack, by_status), want=want, deadline_s=60) == want
    per_worker = prometheus_value(stack, 'sum by (instance) (flowscope_stream_message_statuses_total)')
    assert len(per_worker) == 2 and all(v > 0 for v in per_worker.values())
