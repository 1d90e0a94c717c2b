"""Receiver benchmark: our webhook receiver against a no-op Starlette endpoint, both under ``wrk``.

Both servers run under uvicorn with the receiver's own options (workers, loop, HTTP implementation,
log level, no access log) and get the same load: ``wrk`` POSTing one realistic signed status webhook
(3 statuses, from the simulator) over the same threads, connections and duration. The figures are
the receiver's requests/s as a share of the no-op's, and the receiver's p99 latency. A run counts
every non-2xx answer, and afterwards checks that the broker holds every event the receiver accepted.

Run as ``python -m flowtools.bench.receiver``, this module serves the no-op endpoint (settings from
the environment, like every flowscope process).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
import uvicorn
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from config.settings import Settings
from contract.codec import encode_batch
from contract.privacy import Pseudonymiser
from embedded.exceptions import SupervisorError
from embedded.supervisor import ProcessSpec, free_port, http_ready
from flowtools.bench import Result, Say
from flowtools.harness import Pipeline
from flowtools.simulator.config import SimulationConfig
from flowtools.simulator.generator import TrafficGenerator
from ingest.parsing import WebhookParser
from ingest.paths import HEALTH_PATH, METRICS_PATH, WEBHOOK_PATH
from ingest.signatures import SIGNATURE_HEADER, Verifier, sign

BENCHMARK = "receiver"
TARGET_RATIO = 0.5
TARGET_P99_MS = 25.0
STATUSES_PER_WEBHOOK = 3
WRK_THREADS = 2
WRK_CONNECTIONS = 64
DURATION_S = 15
QUICK_DURATION_S = 4
WARMUP_S = 3
QUICK_WARMUP_S = 1
EVENTS_METRIC = "flowscope_ingest_events_total"
HANDLER_SAMPLE_S = 2.0  # how long the in-process measure of the handler's own work runs

SettingsFactory = Callable[..., Settings]

# One line of JSON from wrk's done(): what the run did, every answer by status, latency in µs.
_WRK_MARK = "FLOWSCOPE_WRK "
_WRK_SCRIPT = """\
-- POSTs one signed webhook; done() prints the run as one line of JSON.
local file = assert(io.open([==[__BODY_PATH__]==], "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["__SIGNATURE_HEADER__"] = "__SIGNATURE__"

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      counts[status] = (counts[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(counts) do
    table.insert(parts, string.format('"%d":%d', status, n))
  end
  local e = summary.errors
  io.write(string.format(
    '__MARK__{"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"timeouts":%d,"p50_us":%.1f,"p90_us":%.1f,"p99_us":%.1f,"max_us":%.1f,' ..
    '"mean_us":%.1f,"statuses":{%s}}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    table.concat(parts, ",")))
end
"""


@dataclass(frozen=True)
class WrkRun:
    """What one wrk run measured."""

    requests: int
    duration_s: float
    statuses: dict[int, int]  # answers by HTTP status
    socket_errors: dict[str, int]  # connect, read, write, timeout
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def ok(self) -> int:
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)

    @property
    def non_2xx(self) -> int:
        return sum(n for status, n in self.statuses.items() if not 200 <= status < 300)

    def summary(self) -> dict[str, object]:
        return {
            "requests": self.requests, "duration_s": round(self.duration_s, 2), "rps": round(self.rps, 1),
            "non_2xx": self.non_2xx, "statuses": {str(s): n for s, n in sorted(self.statuses.items())},
            "socket_errors": self.socket_errors, "p50_ms": round(self.p50_ms, 2), "p90_ms": round(self.p90_ms, 2),
            "p99_ms": round(self.p99_ms, 2), "max_ms": round(self.max_ms, 2), "mean_ms": round(self.mean_ms, 2),
        }


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if not found:
        raise SupervisorError(
            "the receiver benchmark needs wrk (HTTP load generator): apt-get install -y wrk "
            "(Debian/Ubuntu; scripts/system-deps.sh installs it), or brew install wrk"
        )
    return found


def status_webhook(*, statuses: int = STATUSES_PER_WEBHOOK, seed: int = 7) -> bytes:
    """The body of a simulated status webhook carrying exactly ``statuses`` status updates, nothing else."""
    config = SimulationConfig(messages=0, seed=seed, duplicate_ratio=0.0, status_duplicate_ratio=0.0)
    for webhook in TrafficGenerator(config):
        if webhook.status_updates == statuses and webhook.completions == 0 and not webhook.duplicate:
            return webhook.raw
        if webhook.seq > 100_000:
            break
    raise ValueError(f"the simulator produced no webhook with exactly {statuses} status updates")


def wrk_script(body_path: Path, signature: str) -> str:
    return (
        _WRK_SCRIPT.replace("__BODY_PATH__", str(body_path))
        .replace("__SIGNATURE_HEADER__", SIGNATURE_HEADER)
        .replace("__SIGNATURE__", signature)
        .replace("__MARK__", _WRK_MARK)
    )


def parse_wrk_output(stdout: str) -> WrkRun:
    """The run described by the line our script's done() printed."""
    for line in stdout.splitlines():
        if line.startswith(_WRK_MARK):
            data = json.loads(line[len(_WRK_MARK):])
            break
    else:
        raise SupervisorError(f"wrk printed no result line; its output:\n{stdout}")
    return WrkRun(
        requests=int(data["requests"]),
        duration_s=data["duration_us"] / 1e6,
        statuses={int(status): int(n) for status, n in data["statuses"].items()},
        socket_errors={key: int(data[f"{key}_errors" if key != "timeouts" else key])
                       for key in ("connect", "read", "write", "timeouts")},
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        mean_ms=data["mean_us"] / 1000,
    )


def run_wrk(wrk: str, url: str, script: Path, *, duration_s: int, threads: int = WRK_THREADS,
            connections: int = WRK_CONNECTIONS) -> WrkRun:
    argv = [wrk, f"-t{threads}", f"-c{connections}", f"-d{duration_s}s", "--latency", "-s", str(script), url]
    try:
        done = subprocess.run(  # noqa: S603 - argv built here, no shell
            argv, capture_output=True, text=True, timeout=duration_s + 60, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise SupervisorError(f"wrk did not finish within {duration_s + 60} s") from exc
    if done.returncode != 0:
        raise SupervisorError(f"wrk exited with {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return parse_wrk_output(done.stdout)


# --- the no-op endpoint ----------------------------------------------------------------------------


async def _accept(request: Request) -> Response:
    return Response(status_code=200)


async def _healthz(request: Request) -> Response:
    return Response(b"ok")


def noop_app() -> Starlette:
    """A POST route answering 200 with an empty body: the ceiling of Starlette under uvicorn here."""
    return Starlette(routes=[
        Route(WEBHOOK_PATH, _accept, methods=["POST"]),
        Route(HEALTH_PATH, _healthz, methods=["GET"]),
    ])


def serve_noop(settings: Settings) -> None:
    """Serve :func:`noop_app` with exactly the uvicorn options of ``ingest.app.serve``."""
    workers = settings.ingest_workers
    app: Starlette | str = noop_app() if workers <= 1 else "flowtools.bench.receiver:noop_app"
    from ingest.app import uvicorn_options

    uvicorn.run(app, **uvicorn_options(settings))


def noop_spec(settings: Settings) -> ProcessSpec:
    host, port = settings.ingest_host, settings.ingest_port
    return ProcessSpec(
        name="noop-endpoint",
        argv=[sys.executable, "-m", "flowtools.bench.receiver"],
        ready=http_ready(f"http://{host}:{port}{HEALTH_PATH}"),
        env=settings.as_env(),
        url=f"http://{host}:{port}{WEBHOOK_PATH} (no-op Starlette endpoint)",
    )


# --- checks against the broker ---------------------------------------------------------------------


def settled_events_counted(settings: Settings, *, interval_s: float = 0.3, deadline_s: float = 30.0) -> int:
    """:func:`events_counted` once requests still in flight when wrk stopped have been answered."""
    deadline = time.monotonic() + deadline_s
    previous = events_counted(settings)
    while time.monotonic() < deadline:
        time.sleep(interval_s)
        current = events_counted(settings)
        if current == previous:
            return current
        previous = current
    return previous


def events_counted(settings: Settings) -> int:
    """Events the receiver says it wrote to the broker (its ``flowscope_ingest_events_total``, all kinds)."""
    url = f"http://{settings.ingest_host}:{settings.ingest_port}{METRICS_PATH}"
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - our own loopback URL
        text = response.read().decode()
    return int(sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == EVENTS_METRIC
    ))


async def events_on_topic(settings: Settings, *, expect: int, idle_s: float = 2.0, deadline_s: float = 120.0) -> int:
    """Events held by the events topic, read from the start of every partition (no consumer group).

    tansu's "latest" offsets are unreliable, so reading stops once ``expect`` events were seen and
    nothing more arrived for ``idle_s`` (or after ``idle_s`` x 3 of silence short of it). Records are
    counted once per (partition, offset), and a hole in a partition's offsets is read again (tansu can
    make a later offset visible before an earlier one written concurrently, :mod:`stream.offsets`), as
    the stream worker does, until nothing is missing below the highest offset or the deadline passes.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        fetch_max_bytes=32 * 1024 * 1024,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    try:
        await consumer.topics()  # fetches the metadata partitions_for_topic answers from
        partitions = consumer.partitions_for_topic(settings.events_topic) or set()
        assigned = [TopicPartition(settings.events_topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning()
        seen: dict[TopicPartition, dict[int, int]] = {tp: {} for tp in assigned}  # offset -> events
        first: dict[TopicPartition, int] = {}
        quiet = 0.0
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            records = await consumer.getmany(timeout_ms=250, max_records=2000)
            if records:
                quiet = 0.0
                for tp, messages in records.items():
                    for message in messages:
                        first.setdefault(tp, message.offset)
                        seen[tp][message.offset] = len(orjson.loads(message.value or b"[]"))
                continue
            quiet += 0.25
            holes = _holes(seen, first)
            if holes:
                for tp, offset in holes.items():
                    consumer.seek(tp, offset)
                quiet = 0.0
                continue
            events = sum(sum(by_offset.values()) for by_offset in seen.values())
            if quiet >= (idle_s if events >= expect else idle_s * 3):
                break
        return sum(sum(by_offset.values()) for by_offset in seen.values())
    finally:
        await consumer.stop()


def _holes(seen: dict[TopicPartition, dict[int, int]], first: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
    """Per partition, the lowest offset missing between its first and highest offset read (if any)."""
    holes = {}
    for tp, by_offset in seen.items():
        if by_offset and len(by_offset) != max(by_offset) - first[tp] + 1:
            holes[tp] = next(o for o in range(first[tp], max(by_offset)) if o not in by_offset)
    return holes


# --- the benchmark ---------------------------------------------------------------------------------


def handler_us_per_request(settings: Settings, body: bytes, signature: str, *, seconds: float) -> float:
    """CPU time (µs) of the receiver's own work on one request, in this process, without HTTP or the broker:
    verify the signature, parse the webhook into events, encode them as the producer does. A component's
    ceiling: the receiver cannot answer faster than the no-op endpoint's time per request plus this."""
    verify = Verifier(settings.app_secret)
    parser = WebhookParser(pseudonymise=Pseudonymiser(settings.hash_key),
                           form_fields_allowlist=settings.form_fields_allowlist)
    done, started = 0, time.process_time()
    while (elapsed := time.process_time() - started) < seconds:
        for _ in range(200):
            if not verify(body, signature):
                raise SupervisorError("the benchmark's webhook does not verify")
            result = parser.parse(body)
            encode_batch([*result.events, *result.rejected])
        done += 200
    return elapsed / done * 1e6


def run(settings_factory: SettingsFactory, say: Say, *, quick: bool) -> list[Result]:
    wrk = wrk_binary()
    duration_s = QUICK_DURATION_S if quick else DURATION_S
    warmup_s = QUICK_WARMUP_S if quick else WARMUP_S
    with tempfile.TemporaryDirectory(prefix="flowscope-bench-receiver-") as tmp:
        settings = settings_factory(Path(tmp), broker_storage="memory", log_level="WARNING")
        work = settings.data_dir / "bench-receiver"
        work.mkdir(parents=True, exist_ok=True)
        body = status_webhook()
        body_path = work / "webhook.json"
        body_path.write_bytes(body)
        script = work / "webhook.lua"
        signature = sign(body, settings.app_secret)
        script.write_text(wrk_script(body_path.resolve(), signature))
        handler_us = handler_us_per_request(settings, body, signature,
                                            seconds=HANDLER_SAMPLE_S / (4 if quick else 1))
        say(f"receiver: the handler's own work (verify, parse, encode) takes {handler_us:.1f} µs a request")
        load = f"wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} -d{duration_s}s"
        with Pipeline(settings) as pipeline:
            noop_settings = dataclasses.replace(settings, ingest_port=free_port())
            say(f"receiver: starting the no-op endpoint (uvicorn, {settings.ingest_workers} worker) ...")
            pipeline.run(noop_spec(noop_settings))
            noop_url = f"http://{noop_settings.ingest_host}:{noop_settings.ingest_port}{WEBHOOK_PATH}"
            say(f"receiver: warming up the no-op endpoint for {warmup_s} s ...")
            run_wrk(wrk, noop_url, script, duration_s=warmup_s)
            say(f"receiver: {load} against the no-op endpoint ...")
            noop = run_wrk(wrk, noop_url, script, duration_s=duration_s)
            say(f"receiver: no-op endpoint {noop.rps:,.0f} requests/s, p99 {noop.p99_ms:.1f} ms")
            pipeline.stop("noop-endpoint")
            if noop.non_2xx or noop.requests == 0:
                raise SupervisorError(f"the no-op endpoint did not answer 200 to every request: {noop.summary()}")

            for component in ("broker", "warehouse", "receiver"):
                say(f"receiver: starting {component} ...")
                pipeline.start(component)
            url = pipeline.webhook_url
            say(f"receiver: warming up the receiver for {warmup_s} s ...")
            warm = run_wrk(wrk, url, script, duration_s=warmup_s)
            say(f"receiver: {load} against the receiver ...")
            before = settled_events_counted(settings)
            ours = run_wrk(wrk, url, script, duration_s=duration_s)
            after = settled_events_counted(settings)
            say(f"receiver: receiver {ours.rps:,.0f} requests/s, p99 {ours.p99_ms:.1f} ms, "
                f"{ours.non_2xx:,} non-2xx answers")
            say("receiver: counting the events on the broker ...")
            on_topic = asyncio.run(events_on_topic(settings, expect=after))
            dead = [child.spec.name for child in pipeline.supervisor.exited() if child.spec.name != "noop-endpoint"]
            if dead:
                raise SupervisorError(f"{dead[0]} stopped during the benchmark:\n{pipeline.supervisor.tail(dead[0])}")

    acknowledged = STATUSES_PER_WEBHOOK * (warm.ok + ours.ok)  # events in the 2xx answers wrk saw
    expected = max(after, acknowledged)
    missing = max(0, expected - on_topic)
    say(f"receiver: broker holds {on_topic:,} events; the receiver counted {after:,}; "
        f"wrk saw {acknowledged:,} acknowledged")
    common = {
        "load": f"{load} --latency, one signed status webhook ({len(body)} bytes, "
                f"{STATUSES_PER_WEBHOOK} statuses) per request, after a {warmup_s} s warm-up",
        "broker_storage": settings.broker_storage,
        "uvicorn": {"workers": settings.ingest_workers, "loop": "auto", "http": "auto",
                    "log_level": settings.log_level.lower(), "access_log": False},
    }
    broker_check = {
        "events_on_topic": on_topic,
        "events_counted_by_receiver": after,
        "events_counted_in_measured_run": after - before,
        "events_in_2xx_answers_seen_by_wrk": acknowledged,
        "all_events_reached_broker": missing == 0 and on_topic == after,
    }
    # Per-request time of each server (one worker process: its time per request is 1 / requests per second), and
    # the ratio the receiver could reach if everything but its own parsing work cost nothing more than the no-op.
    noop_us, ours_us = 1e6 / noop.rps, 1e6 / ours.rps if ours.rps else float("inf")
    ceilings = {
        "noop_us_per_request": round(noop_us, 1),
        "receiver_us_per_request": round(ours_us, 1),
        "handler_us_per_request_in_process": round(handler_us, 1),
        "rest_us_per_request": round(ours_us - noop_us - handler_us, 1),  # broker client, batching, metrics
        "ratio_ceiling_noop_plus_handler": round(noop_us / (noop_us + handler_us), 3),
    }
    return [
        Result(BENCHMARK, "throughput ratio", ours.rps / noop.rps, TARGET_RATIO, True, "x",
               {**common, "receiver_rps": round(ours.rps, 1), "noop_rps": round(noop.rps, 1),
                "ceilings": ceilings, "receiver": ours.summary(), "noop": noop.summary()}),
        Result(BENCHMARK, "p99 ms", ours.p99_ms, TARGET_P99_MS, False, "ms",
               {**common, "p50_ms": round(ours.p50_ms, 2), "p90_ms": round(ours.p90_ms, 2),
                "max_ms": round(ours.max_ms, 2), "noop_p99_ms": round(noop.p99_ms, 2)}),
        Result(BENCHMARK, "non-2xx responses", float(ours.non_2xx), 0.0, False, "",
               {**common, "statuses": ours.summary()["statuses"], "socket_errors": ours.socket_errors,
                "warmup_non_2xx": warm.non_2xx}),
        Result(BENCHMARK, "events missing on broker", float(missing), 0.0, False, "",
               {**common, **broker_check}),
    ]


if __name__ == "__main__":
    serve_noop(Settings.from_env())
