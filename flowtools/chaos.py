"""``flowscope chaos`` (``make chaos``): faults under load, each judged against the simulator's exact truth.

Every scenario starts a fresh embedded pipeline (broker, warehouse, receiver, stream worker) on free
loopback ports, sends simulated webhooks that are retried like Meta retries them (non-2xx answers,
timeouts and refused connections, with backoff), injects one fault mid-load, waits for the warehouse
to settle and compares it with what the simulator had acknowledged:

- raw events: the distinct (wamid, status) pairs and completions in the tables (read with FINAL, as
  data teams read them) against the acknowledged ones: ``lost`` are acknowledged events missing,
  ``double_counted`` rows beyond one per event;
- every dashboard aggregate (distinct messages per status, per business number, per error code,
  delivered-or-read, completions) must equal the truth: ``details.aggregates_exact``, with every
  figure that differs in ``aggregates_under`` / ``aggregates_over``.

Recovery time is measured from the moment the killed component is started again (or killed, when
nothing restarts it) until a fresh sentinel event on every partition is visible in the warehouse.
Durable-mode rows are judged; the memory-mode broker kill is reported, not judged: it shows why the
durable broker is the default.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import httpx
import orjson

from contract.codec import partition_for
from flowtools.harness import Pipeline, isolated_settings
from flowtools.simulator import payloads
from flowtools.simulator.config import SimulationConfig
from flowtools.simulator.runner import SimulationResult, run
from ingest.signatures import SIGNATURE_HEADER, sign

SENTINEL_PNID = "900000000000000"  # the sentinels' business number: kept out of every comparison


@dataclass(frozen=True)
class Scale:
    """Sizes of one run: the default for ``make chaos``, a small one inside ``make test``."""

    name: str
    messages: int
    rate: float  # webhook POSTs per second
    warehouse_down_s: float
    broker_down_s: float
    seaweedfs_down_s: float
    settle_s: float  # longest wait for the warehouse to hold everything after the traffic ended
    memory_wait_s: float  # the memory-mode broker comes back empty: how long to wait for it (not judged)


FULL = Scale("full", messages=6000, rate=100, warehouse_down_s=60, broker_down_s=30, seaweedfs_down_s=15,
             settle_s=180, memory_wait_s=60)
SMALL = Scale("small", messages=1500, rate=80, warehouse_down_s=6, broker_down_s=5, seaweedfs_down_s=4,
              settle_s=90, memory_wait_s=15)


@dataclass
class Row:
    """One scenario's line of the report."""

    scenario: str
    broker_mode: str
    sent: int  # distinct events in acknowledged webhooks
    stored: int  # distinct events in the warehouse
    lost: int
    double_counted: int
    max_recovery_s: float | None
    verdict: str  # pass / FAIL / reported (memory mode: not judged)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def judged(self) -> bool:
        return self.verdict != "reported"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class ChaosPipeline(Pipeline):
    """One scenario's pipeline (:class:`flowtools.harness.Pipeline`) with sentinels to time its recovery."""

    def __init__(self, data_dir: Path, *, broker_mode: str, workers: int = 1, ingest_workers: int = 1) -> None:
        shutil.rmtree(data_dir, ignore_errors=True)
        super().__init__(isolated_settings(data_dir, broker_storage=broker_mode, stream_metrics_port=0,
                                           gauge_refresh_s=3600.0, ingest_workers=ingest_workers))
        self.workers = tuple(f"stream-{n + 1}" for n in range(workers))
        self.sentinels = 0

    def start_all(self) -> None:
        """Broker, warehouse, receiver and every stream worker; ready once events flow end to end."""
        self.start("broker", "warehouse", "receiver", *self.workers)
        # Ready means events flow end to end: every worker in its group, every partition read.
        if self.recovered_after(time.monotonic(), deadline_s=120) is None:
            raise RuntimeError(f"the pipeline did not deliver a first event; logs in {self.supervisor.log_dir}")

    # --- sentinels: fresh events on every partition, to time recovery ---------------------------

    def post(self, body: bytes, *, timeout_s: float = 15.0) -> int:
        headers = {SIGNATURE_HEADER: sign(body, self.settings.app_secret), "Content-Type": "application/json"}
        try:
            return httpx.post(self.webhook_url, content=body, headers=headers, timeout=timeout_s).status_code
        except httpx.HTTPError:
            return 0

    def sentinel_body(self) -> tuple[bytes, list[str]]:
        """One webhook with a `sent` status on every partition (wamids chosen by their partition)."""
        self.sentinels += 1
        wamids: dict[int, str] = {}
        n = 0
        while len(wamids) < self.settings.partitions:
            wamid = f"wamid.sentinel-{self.sentinels}-{n}"
            wamids.setdefault(partition_for(wamid.encode(), self.settings.partitions), wamid)
            n += 1
        statuses = [payloads.status(wamid=w, status="sent", timestamp=int(time.time()), recipient_id="1")
                    for w in wamids.values()]
        body = payloads.status_post(waba_id="chaos", phone_number_id=SENTINEL_PNID, statuses=statuses)
        return body, list(wamids.values())

    def recovered_after(self, since: float, *, deadline_s: float) -> float | None:
        """Seconds from ``since`` until sentinels posted now (retried like Meta) are all stored."""
        from warehouse.client import connect
        from warehouse.exceptions import WarehouseError
        from warehouse.queries import statuses_stored_of

        body, wamids = self.sentinel_body()
        deadline = time.monotonic() + deadline_s
        while self.post(body) != 200:
            if time.monotonic() > deadline:
                return None
            time.sleep(0.5)
        client = None
        while time.monotonic() < deadline:
            try:
                client = client or connect(self.settings.warehouse_url_for("analyst"))
                if statuses_stored_of(client, phone_number_id=SENTINEL_PNID, wamids=wamids) == len(wamids):
                    return round(time.monotonic() - since, 1)
            except WarehouseError:  # warehouse restarting: ask again
                client = None
            time.sleep(0.2)
        return None


class Traffic:
    """The simulator in a thread: Meta-like retries, exact record of what was acknowledged."""

    def __init__(self, url: str, app_secret: str, config: SimulationConfig) -> None:
        self.result: SimulationResult | None = None
        self.error: BaseException | None = None
        self.loop = asyncio.new_event_loop()
        self.stop = asyncio.Event()
        self.started = time.monotonic()

        async def play() -> None:
            try:
                self.result = await run(url, config=config, app_secret=app_secret, progress=False, stop=self.stop)
            except BaseException as exc:  # reported by wait()
                self.error = exc

        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(play(),), daemon=True)
        self.thread.start()

    def wait(self, timeout_s: float) -> SimulationResult:
        self.thread.join(timeout=timeout_s)
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.stop.set)
            self.thread.join(timeout=60)
        if not self.thread.is_alive():
            self.loop.close()
        if self.error is not None:
            raise self.error
        if self.result is None:
            raise RuntimeError("the simulator did not finish")
        return self.result

    def cancel(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(timeout=60)
        if not self.thread.is_alive() and not self.loop.is_closed():
            self.loop.close()


# How long the aggregates may lag the raw rows once those settled: a few rollup passes.
AGGREGATES_SETTLE_S = 30.0


def dashboard_figures(client: Any, result: SimulationResult, pnids: tuple[str, ...]) -> dict[str, tuple[int, int]]:
    """Every aggregate the dashboards show: (truth, warehouse)."""
    from warehouse import queries

    truth = result.truth
    if truth is None:
        return {}
    where = queries.DeliveryFilter(start=datetime(2014, 1, 1), end=datetime.now() + timedelta(days=1),
                                   phone_number_ids=pnids)
    totals = queries.delivery_totals(client, where)
    figures = {f"statuses.{s}": (n, totals.get(s, 0)) for s, n in truth.statuses.items()}
    figures["delivered_or_read"] = (truth.delivered_or_read, totals.get("delivered_or_read", 0))
    by_number = queries.delivery_by_phone_number(client, where)
    for pnid, counts in truth.by_phone_number_id.items():
        for status, n in counts.items():
            figures[f"by_phone_number_id.{pnid}.{status}"] = (n, by_number.get(pnid, {}).get(status, 0))
    failures = queries.failures_by_error_code(client, where)
    stored_codes = {str(c): int(n) for c, n in zip(failures["error_code"], failures["messages"], strict=True)}
    for code in {*truth.failed_by_error_code, *stored_codes}:
        figures[f"failed_by_error_code.{code}"] = (truth.failed_by_error_code.get(code, 0), stored_codes.get(code, 0))
    figures["completions"] = (truth.completions, queries.completions_of(client, pnids))
    return figures


def settled_figures(client: Any, result: SimulationResult, pnids: tuple[str, ...], *,
                    deadline_s: float = AGGREGATES_SETTLE_S) -> dict[str, tuple[int, int]]:
    """:func:`dashboard_figures` once they equal the truth, or as they are after ``deadline_s``.

    The aggregates settle a rollup pass after the raw rows (a read without a delivered status counts as
    delivered once the rollup has looked it up), so they are polled with a deadline.
    """
    deadline = time.monotonic() + deadline_s
    while True:
        figures = dashboard_figures(client, result, pnids)
        if all(truth == seen for truth, seen in figures.values()) or time.monotonic() > deadline:
            return figures
        time.sleep(1)


def judge(pipeline: Pipeline, result: SimulationResult, *, settle_s: float,
          say: Callable[[str], None]) -> tuple[int, int, int, int, dict[str, Any]]:  # noqa: C901
    """(sent, stored, lost, double_counted, details) once the warehouse settled or ``settle_s`` passed."""
    from warehouse import queries
    from warehouse.client import connect

    client = connect(pipeline.settings.warehouse_url_for("analyst"), send_receive_timeout=60)
    truth = result.truth
    pnids = tuple(truth.phone_numbers) if truth is not None else ()
    acked_statuses, acked_completions = result.acked_statuses, result.acked_completions

    def stored() -> tuple[set[tuple[str, str]], int, set[str], int]:
        rows = queries.stored_status_pairs(client, except_phone_number_id=SENTINEL_PNID)
        replies = queries.stored_completion_wamids(client)
        return set(rows), len(rows), set(replies), len(replies)

    deadline = time.monotonic() + settle_s
    statuses, status_rows, completions, completion_rows = stored()
    last_report = 0.0
    while (not acked_statuses <= statuses or not acked_completions <= completions) and time.monotonic() < deadline:
        if time.monotonic() - last_report > 10:
            say(f"  settling: {len(acked_statuses & statuses):,} of {len(acked_statuses):,} acknowledged statuses "
                f"stored")
            last_report = time.monotonic()
        time.sleep(1)
        statuses, status_rows, completions, completion_rows = stored()
    lost_raw = len(acked_statuses - statuses) + len(acked_completions - completions)
    double_raw = (status_rows - len(statuses)) + (completion_rows - len(completions))
    figures = settled_figures(client, result, pnids)
    under = {name: t - w for name, (t, w) in figures.items() if w < t}
    over = {name: w - t for name, (t, w) in figures.items() if w > t}
    details: dict[str, Any] = {
        "posts_acknowledged": result.acked, "retries": result.retries, "undelivered": result.failures,
        "answers": result.answers, "raw_lost": lost_raw, "raw_double": double_raw,
        "aggregates_checked": len(figures), "aggregates_under": under, "aggregates_over": over,
        "lost_sample": sorted(acked_statuses - statuses)[:5] + sorted(acked_completions - completions)[:5],
        # At-least-once: stored events whose 200 never reached the sender (it retried them until acked).
        "stored_never_acknowledged": len(statuses - acked_statuses) + len(completions - acked_completions),
    }
    client.close()
    sent = len(acked_statuses) + len(acked_completions)
    kept = len(statuses & acked_statuses) + len(completions & acked_completions)
    details["aggregates_exact"] = not under and not over
    return sent, kept, lost_raw, double_raw, details


# --- scenarios ----------------------------------------------------------------------------------------


Say = Callable[[str], None]
# A fault: injects itself into a running pipeline, records notes, returns the recovery times it measured.
Fault = Callable[[ChaosPipeline, Scale, Say, dict[str, Any]], list[float | None]]


@dataclass(frozen=True)
class Scenario:
    name: str
    broker_mode: str
    fault: Fault
    workers: int = 1
    ingest_workers: int = 1
    duplicate_ratio: float = 0.05
    reorder_ratio: float = 0.05
    judged: bool = True


def _kill_and_restart(name: str, down: Callable[[Scale], float], *, probe: int | None = None,
                      backlog_s: float = 0.0) -> Fault:
    """Fault: SIGKILL ``name``, keep it down, start it again; ``probe`` is the answer expected meanwhile.

    ``backlog_s`` > 0 first stops the stream workers (SIGSTOP) for that long, so the broker dies holding
    acknowledged events no worker has read yet: exactly what a durable broker must keep and a memory one
    loses. Without it the kill could land while the workers are caught up and prove nothing.
    """

    def fault(pipeline: ChaosPipeline, scale: Scale, say: Say, notes: dict[str, Any]) -> list[float | None]:
        workers = pipeline.workers if backlog_s > 0 else ()
        for worker in workers:
            pipeline.pause(worker)
        try:
            if workers:
                say(f"  stream workers stopped for {backlog_s:g} s: a backlog only the broker holds")
                notes["backlog_s"] = backlog_s
                time.sleep(backlog_s)
            pipeline.kill(name)
        finally:
            for worker in workers:
                pipeline.resume(worker)
        say(f"  SIGKILL {name}; down for {down(scale):g} s")
        killed = time.monotonic()
        if probe is not None:
            body, _ = pipeline.sentinel_body()
            answer = pipeline.post(body, timeout_s=pipeline.settings.producer_timeout_s + 5)
            notes[f"answer_while_{name}_down"] = answer
            if answer != probe:
                notes.setdefault("problems", []).append(f"answered {answer} while {name} was down, expected {probe}")
        remaining = down(scale) - (time.monotonic() - killed)
        if remaining > 0:
            time.sleep(remaining)
        restarted = pipeline.restart(name)
        say(f"  {name} restarted")
        return [pipeline.recovered_after(restarted, deadline_s=recovery_deadline(pipeline, scale))]

    return fault


def recovery_deadline(pipeline: Pipeline, scale: Scale) -> float:
    return scale.settle_s if pipeline.settings.broker_storage == "durable" else scale.memory_wait_s


def _kill_one_of_two_workers(pipeline: ChaosPipeline, scale: Scale, say: Say,
                             notes: dict[str, Any]) -> list[float | None]:
    killed = pipeline.kill("stream-2")
    say("  SIGKILL stream-2; stream-1 takes over its partitions")
    recovery = pipeline.recovered_after(killed, deadline_s=scale.settle_s)
    restarted = pipeline.restart("stream-2")
    say("  stream-2 restarted: the partitions are shared again")
    return [recovery, pipeline.recovered_after(restarted, deadline_s=scale.settle_s)]


def _no_fault(pipeline: ChaosPipeline, scale: Scale, say: Say, notes: dict[str, Any]) -> list[float | None]:
    return []


BACKLOG_S = 3.0  # stream workers stopped before a broker kill: a few hundred acknowledged, unread events

SCENARIOS = (
    Scenario("receiver_sigkill", "durable", _kill_and_restart("receiver", lambda s: 1.0)),
    Scenario("stream_sigkill", "durable", _kill_and_restart("stream-1", lambda s: 1.0)),
    Scenario("stream_rebalance", "durable", _kill_one_of_two_workers, workers=2),
    Scenario("warehouse_sigkill", "durable", _kill_and_restart("warehouse", lambda s: s.warehouse_down_s, probe=200)),
    Scenario("broker_sigkill", "durable", _kill_and_restart("broker", lambda s: s.broker_down_s, probe=503,
                                                             backlog_s=BACKLOG_S)),
    Scenario("seaweedfs_sigkill", "durable", _kill_and_restart("seaweedfs", lambda s: s.seaweedfs_down_s,
                                                                  probe=503, backlog_s=BACKLOG_S)),
    Scenario("duplicates_reordered", "durable", _no_fault, duplicate_ratio=1.0, reorder_ratio=0.5),
    Scenario("broker_sigkill", "memory", _kill_and_restart("broker", lambda s: s.broker_down_s, probe=503,
                                                            backlog_s=BACKLOG_S),
             judged=False),
)


def run_scenario(scenario: Scenario, scale: Scale, base_dir: Path, *, seed: int = 7, say: Say = print) -> Row:
    """Run one scenario on a fresh pipeline; the pipeline is stopped whatever happens."""
    label = f"{scenario.name} ({scenario.broker_mode})"
    say(f"[{label}] starting a fresh pipeline")
    pipeline = ChaosPipeline(base_dir / f"{scenario.name}-{scenario.broker_mode}", broker_mode=scenario.broker_mode,
                             workers=scenario.workers, ingest_workers=scenario.ingest_workers)
    notes: dict[str, Any] = {}
    traffic: Traffic | None = None
    try:
        pipeline.start_all()
        config = SimulationConfig(
            messages=scale.messages, rate=scale.rate, seed=seed, duplicate_ratio=scenario.duplicate_ratio,
            reorder_ratio=scenario.reorder_ratio, concurrency=16, timeout_s=15, retry_max_s=5.0,
            # Meta retries for days; the simulator for as long as a judged scenario may need.
            deadline_s=scale.settle_s + 120 if scenario.judged else scale.broker_down_s + scale.memory_wait_s,
        )
        traffic = Traffic(pipeline.webhook_url, pipeline.settings.app_secret, config)
        expected_s = scale.messages * 0.4 / scale.rate  # about 0.37 POSTs per message at these ratios
        say(f"[{label}] traffic: {scale.messages:,} messages at {scale.rate:g} POSTs/s (~{expected_s:.0f} s)")
        time.sleep(expected_s * 0.35)  # the fault lands mid-load
        recoveries = scenario.fault(pipeline, scale, say, notes)
        result = traffic.wait(timeout_s=expected_s * 3 + scale.settle_s + 180)
        traffic = None
        say(f"[{label}] traffic done: {result.acked:,} POSTs acknowledged, {result.retries:,} retries; settling")
        settle_s = scale.settle_s if scenario.judged else scale.memory_wait_s
        sent, stored, lost, double, details = judge(pipeline, result, settle_s=settle_s, say=say)
    finally:
        if traffic is not None:
            traffic.cancel()
        pipeline.close()
    if any(r is None for r in recoveries):
        notes.setdefault("problems", []).append("did not recover within the settle time")
    if result.failures:
        notes.setdefault("problems", []).append(f"{result.failures} webhooks never acknowledged")
    if not details["aggregates_exact"]:
        notes.setdefault("problems", []).append("an aggregate differs from the truth (aggregates_under / _over)")
    details.update(notes)
    times = [r for r in recoveries if r is not None]
    exact = "exact" if details["aggregates_exact"] else "OFF"
    ok = lost == 0 and double == 0 and not notes.get("problems")
    verdict = ("pass" if ok else "FAIL") if scenario.judged else "reported"
    row = Row(scenario.name, scenario.broker_mode, sent, stored, lost, double, max(times) if times else None,
              verdict, details)
    say(f"[{label}] {verdict}: sent {sent:,}, stored {stored:,}, lost {lost:,}, double-counted {double:,}, "
        f"aggregates {exact}, recovery {row.max_recovery_s} s")
    return row


def report(rows: list[Row], out: TextIO) -> None:
    header = (f"{'scenario':<22} {'broker':<8} {'sent':>8} {'stored':>8} {'lost':>6} {'double':>6} "
              f"{'aggregates':>10} {'recovery s':>10}  verdict")
    out.write(header + "\n" + "-" * len(header) + "\n")
    for r in rows:
        recovery = "-" if r.max_recovery_s is None else f"{r.max_recovery_s:.1f}"
        exact = "exact" if r.details.get("aggregates_exact") else "OFF"
        out.write(f"{r.scenario:<22} {r.broker_mode:<8} {r.sent:>8,} {r.stored:>8,} {r.lost:>6,} "
                  f"{r.double_counted:>6,} {exact:>10} {recovery:>10}  {r.verdict}\n")


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="flowscope chaos", description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--scale", choices=("full", "small"), default="full", help="sizes (default: %(default)s)")
    parser.add_argument("--only", nargs="*", default=None, help="scenario names to run (default: all)")
    parser.add_argument("--report", type=Path, default=Path("chaos-report.json"), help="JSON report path")
    parser.add_argument("--data-dir", type=Path, default=Path("data/chaos"), help="pipelines' data")
    args = parser.parse_args(argv)
    scale = FULL if args.scale == "full" else SMALL
    chosen = [s for s in SCENARIOS if args.only is None or s.name in args.only]
    started = time.monotonic()

    def say(message: str) -> None:
        print(f"{time.monotonic() - started:7.1f}s {message}", flush=True)  # noqa: T201 - the command's output

    rows: list[Row] = []
    try:
        for scenario in chosen:
            rows.append(run_scenario(scenario, scale, args.data_dir, say=say))
            args.report.write_text(orjson.dumps([r.to_dict() for r in rows], option=orjson.OPT_INDENT_2).decode())
    except KeyboardInterrupt:
        say("interrupted; every process of the scenario was stopped")
        return 130
    print()  # noqa: T201
    report(rows, sys.stdout)
    failed = [r for r in rows if r.judged and r.verdict != "pass"]
    print(f"\n{len(rows)} scenarios in {time.monotonic() - started:.0f} s; report: {args.report}; "  # noqa: T201
          + ("all durable-mode rows lost 0 and double-counted 0" if not failed
             else f"FAILED: {', '.join(r.scenario for r in failed)}"))
    return 1 if failed else 0
