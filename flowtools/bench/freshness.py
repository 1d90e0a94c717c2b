"""Webhook → dashboard freshness: how long until a status Meta posts is counted by the dashboard's query.

The whole embedded pipeline runs as ``flowscope up`` runs it (durable broker, receiver, one stream
worker, warehouse) under steady simulated traffic. Probes are single signed ``sent`` statuses of their
own business number; each is timed from the start of its POST until ``delivery_totals`` — the query
the Delivery page runs on every refresh — counts it. The page's own refresh interval (2–60 s, the
user's choice) comes on top and is not part of this figure.
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from flowtools.bench import Result, Say, percentile
from flowtools.simulator import payloads

TARGET_P95_MS = 2000.0
PROBE_PNID = "900000000000777"
PROBE_TIMEOUT_S = 30.0


def probe_body(n: int) -> bytes:
    status = payloads.status(wamid=f"wamid.probe-{n}", status="sent", timestamp=int(time.time()),
                             recipient_id="15550001111")
    return payloads.status_post(waba_id="bench", phone_number_id=PROBE_PNID, statuses=[status])


def run(say: Say, *, quick: bool, data_dir: Path | None = None) -> list[Result]:
    """Durable broker (the default) and, in a full run, memory broker: the difference is the S3 storage."""
    modes = ("durable",) if quick else ("durable", "memory")
    return [result for mode in modes for result in run_mode(say, quick=quick, broker_mode=mode, data_dir=data_dir)]


def run_mode(say: Say, *, quick: bool, broker_mode: str, data_dir: Path | None = None) -> list[Result]:
    from flowtools.chaos import ChaosPipeline, Traffic
    from flowtools.simulator.config import SimulationConfig
    from warehouse.client import connect
    from warehouse.queries import DeliveryFilter, delivery_totals

    probes = 20 if quick else 120
    rate = 50.0 if quick else 100.0
    latencies: list[float] = []
    posted_ms: list[float] = []
    timed_out = 0
    with tempfile.TemporaryDirectory(prefix="flowscope-bench-", dir=data_dir) as tmp:
        pipeline = ChaosPipeline(Path(tmp) / "pipeline", broker_mode=broker_mode)
        traffic = None
        try:
            say(f"freshness: starting the pipeline ({broker_mode} broker)")
            pipeline.start_all()
            traffic = Traffic(pipeline.webhook_url, pipeline.settings.app_secret,
                              SimulationConfig(messages=0, rate=rate, live_clock=True, seed=11))
            client = connect(pipeline.settings.warehouse_url_for("analyst"))
            say(f"freshness: {probes} probes at 2/s under {rate:g} webhook POSTs/s of simulated traffic")
            for n in range(probes):
                slot = time.monotonic() + 0.5
                start = time.monotonic()
                answer = pipeline.post(probe_body(n))
                if answer != 200:
                    raise RuntimeError(f"probe {n} answered {answer}")
                posted_ms.append((time.monotonic() - start) * 1000)
                deadline = start + PROBE_TIMEOUT_S
                while True:
                    now = datetime.now(UTC).replace(tzinfo=None)
                    where = DeliveryFilter(start=now - timedelta(hours=1), end=now + timedelta(minutes=1),
                                           phone_number_ids=(PROBE_PNID,))
                    seen = delivery_totals(client, where)["sent"]
                    if seen >= n + 1 - timed_out:
                        latencies.append((time.monotonic() - start) * 1000)
                        break
                    if time.monotonic() > deadline:  # counted at the timeout: the p95 is then a lower bound
                        latencies.append(PROBE_TIMEOUT_S * 1000)
                        timed_out += 1
                        break
                    time.sleep(0.05)  # a dashboard polls far less often; this only sets the resolution
                if (n + 1) % 20 == 0:
                    say(f"  {n + 1}/{probes} probes, p95 so far {percentile(latencies, 95):.0f} ms")
                time.sleep(max(0.0, slot - time.monotonic()))
            client.close()
        finally:
            if traffic is not None:
                traffic.cancel()
            pipeline.close()
    details = {"probes": probes, "background_posts_per_s": rate, "broker_mode": broker_mode,
               "p50_ms": round(percentile(latencies, 50), 1), "max_ms": round(max(latencies), 1),
               "timed_out": timed_out, "post_p95_ms": round(percentile(posted_ms, 95), 1),
               "p95_ms_by_quarter": [round(percentile(q, 95), 1) for q in _quarters(latencies)]}
    return [Result("freshness", f"webhook to dashboard p95 ms ({broker_mode})", round(percentile(latencies, 95), 1),
                   TARGET_P95_MS, False, "ms", details)]


def _quarters(values: list[float]) -> list[list[float]]:
    """The run in four consecutive parts: a figure growing from one to the next is a backlog building up."""
    size = max(1, len(values) // 4)
    return [values[i:i + size] for i in range(0, size * 4, size) if values[i:i + size]]
