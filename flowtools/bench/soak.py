"""Soak: the durable default under Meta-shaped traffic, step after step, judged per quarter of each step.

One embedded pipeline as ``flowscope up`` runs it (tansu on SeaweedFS with its retention, receiver, one
stream worker, warehouse) gets the simulator's traffic (batched statuses, failures, duplicates,
reordering, Flow replies) at a fixed rate of status events per second, in steps (750, 1,500, 3,000 and
4,500/s in the full run). Every second a freshness probe posts one ``sent`` status and times it until the
Delivery page's query (``delivery_by_phone_number``) counts it. Every few seconds the run samples the
stream worker's consumer lag, the broker's record objects and bytes (its retention metrics), and every
process's RSS; CPU time is read at each step's ends. At the end the warehouse is compared with the
simulator's truth of every step: each acknowledged status stored once, every dashboard aggregate equal.

A step is *sustained* when, in every quarter, freshness p95 ≤ 2 s; the last quarter's p95 ≤ 1.25 × the
first's; lag, broker objects and each process's RSS in the last quarter within 10 % of the second (lag and
objects with a small absolute slack, because they hover near zero); no non-2xx answer; the generator
kept the rate; and the warehouse is exact.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from embedded.scrape import metric_sum
from flowtools.bench import Result, Say, percentile
from flowtools.chaos import SENTINEL_PNID, Traffic, settled_figures
from flowtools.harness import Pipeline, isolated_settings, poll
from flowtools.simulator import payloads
from flowtools.simulator.config import SimulationConfig
from flowtools.simulator.generator import TrafficGenerator
from flowtools.simulator.runner import SimulationResult
from ingest.signatures import SIGNATURE_HEADER, sign

BENCHMARK = "soak"
STEPS = ((750, 10.0), (1500, 10.0), (3000, 30.0), (4500, 10.0))  # (status events/s, minutes)
QUICK_STEPS = ((300, 0.5), (600, 0.5))
GOAL_EVENTS_PER_S = 3000
FRESHNESS_P95_MS = 2000.0
FRESHNESS_GROWTH = 1.25  # last quarter's p95 against the first's
FLAT = 1.10  # last quarter against the second: lag, broker objects, RSS
LAG_SLACK_RECORDS = 100  # lag hovers near zero: 10 % of a small number is noise
OBJECTS_SLACK = 200
RATE_KEPT = 0.95  # share of the target rate the generator must have delivered
PROBE_INTERVAL_S = 1.0
PROBE_TIMEOUT_S = 30.0
PROBE_PNIDS = tuple(f"9000007770{n:05d}" for n in range(40))  # probe n uses PROBE_PNIDS[n % 40]
SAMPLE_S = 5.0
QUICK_SAMPLE_S = 1.0
PIPELINE = ("seaweedfs", "broker", "broker-retention", "warehouse", "receiver", "stream")
LOAD = "load generator"  # this process: simulator, probes, sampling


def statuses_per_post(config: SimulationConfig, *, posts: int = 5000) -> float:
    """Status updates per POST of the simulator's mix (re-sent duplicates included)."""
    generator = TrafficGenerator(config)
    total = count = 0
    while count < posts and (webhook := generator.next_webhook()) is not None:
        total += webhook.status_updates
        count += 1
    return total / count


class FreshnessProbe:
    """Posts a probe status every second (in a thread) and times each until the Delivery query counts it."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.samples: list[tuple[float, float]] = []  # (posted at, monotonic; webhook → visible ms)
        self.non_2xx = 0
        self.timed_out = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="freshness-probe", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=PROBE_TIMEOUT_S + 10)

    def _run(self) -> None:
        from warehouse.client import connect
        from warehouse.exceptions import WarehouseError
        from warehouse.queries import DeliveryFilter, delivery_by_phone_number

        settings = self.pipeline.settings
        client = connect(settings.warehouse_url_for("analyst"))
        posted: dict[str, int] = defaultdict(int)
        pending: dict[int, tuple[str, int, float]] = {}  # probe → (pnid, count that shows it, posted at)
        n = 0
        next_at = time.monotonic()
        with httpx.Client(timeout=10) as http:
            while not self.stop.is_set() or pending:
                now = time.monotonic()
                if now >= next_at and not self.stop.is_set():
                    pnid = PROBE_PNIDS[n % len(PROBE_PNIDS)]
                    status = payloads.status(wamid=f"wamid.soak-probe-{n}", status="sent",
                                             timestamp=int(time.time()), recipient_id="15550001111")
                    body = payloads.status_post(waba_id="soak", phone_number_id=pnid, statuses=[status])
                    headers = {SIGNATURE_HEADER: sign(body, settings.app_secret), "Content-Type": "application/json"}
                    try:
                        code = http.post(self.pipeline.webhook_url, content=body, headers=headers).status_code
                    except httpx.HTTPError:
                        code = 0
                    if code == 200:
                        posted[pnid] += 1
                        pending[n] = (pnid, posted[pnid], now)
                    else:
                        self.non_2xx += 1
                    n += 1
                    next_at += PROBE_INTERVAL_S
                if pending:
                    wall = datetime.now(UTC).replace(tzinfo=None)
                    where = DeliveryFilter(start=wall - timedelta(hours=1), end=wall + timedelta(minutes=1),
                                           phone_number_ids=tuple(sorted({p for p, _, _ in pending.values()})))
                    try:
                        seen = delivery_by_phone_number(client, where)
                    except WarehouseError:
                        seen = {}
                    done = time.monotonic()
                    for probe, (pnid, want, at) in list(pending.items()):
                        if seen.get(pnid, {}).get("sent", 0) >= want:
                            self.samples.append((at, (done - at) * 1000))
                            del pending[probe]
                        elif done - at > PROBE_TIMEOUT_S:  # counted at the timeout: a lower bound
                            self.samples.append((at, PROBE_TIMEOUT_S * 1000))
                            self.timed_out += 1
                            del pending[probe]
                self.stop.wait(max(0.0, min(0.1, next_at - time.monotonic())))
        client.close()


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _disk_mb(directory: Path) -> float | None:
    """MB of files under ``directory`` (the durable broker's SeaweedFS volumes, filer store and logs)."""
    total = 0
    try:
        for path in directory.rglob("*"):
            try:
                if path.is_file():
                    total += path.stat().st_size
            except OSError:
                continue  # removed meanwhile (compaction)
    except OSError:
        return None
    return total / 2**20


def _cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@dataclass
class StepRecord:
    """What one step measured, sample by sample."""

    target: int
    minutes: float
    posts_per_s: float
    started: float = 0.0
    ended: float = 0.0
    samples: list[dict[str, Any]] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)
    result: SimulationResult | None = None

    def quarter(self, at: float) -> int:
        span = (self.ended - self.started) / 4
        return min(3, max(0, int((at - self.started) / span))) if span > 0 else 0


class Soak:
    """The pipeline, its load and its measurements."""

    def __init__(self, pipeline: Pipeline, say: Say, *, quick: bool) -> None:
        self.pipeline = pipeline
        self.say = say
        self.sample_s = QUICK_SAMPLE_S if quick else SAMPLE_S
        settings = pipeline.settings
        self.lag_url = f"http://127.0.0.1:{settings.stream_metrics_port}/metrics"
        self.broker_url = f"http://127.0.0.1:{settings.broker_metrics_port}/metrics"

    def pids(self) -> dict[str, int]:
        children = self.pipeline.supervisor.children
        return {**{name: children[name].process.pid for name in PIPELINE if name in children}, LOAD: os.getpid()}

    def sample(self) -> dict[str, Any]:
        return {
            "at": time.monotonic(),
            "lag": metric_sum(self.lag_url, "flowscope_stream_consumer_lag_messages"),
            "objects": metric_sum(self.broker_url, "flowscope_broker_record_objects"),
            "bytes": metric_sum(self.broker_url, "flowscope_broker_record_bytes"),
            "disk": _disk_mb(self.pipeline.settings.data_dir / "broker"),
            "rss": {name: _rss_mb(pid) for name, pid in self.pids().items()},
        }

    def step(self, target: int, minutes: float, *, seed: int) -> StepRecord:
        config = SimulationConfig(messages=10**9, rate=1.0, seed=seed, live_clock=True, concurrency=64)
        posts_per_s = target / statuses_per_post(config)
        # Enough POSTs in flight that the generator, not the pipeline, is never what caps the rate.
        config = SimulationConfig(messages=10**9, rate=posts_per_s, seed=seed, live_clock=True, concurrency=256)
        record = StepRecord(target=target, minutes=minutes, posts_per_s=posts_per_s)
        self.say(f"soak: {target:,} status events/s ({posts_per_s:,.0f} POSTs/s) for {minutes:g} min")
        cpu_before = {name: _cpu_s(pid) for name, pid in self.pids().items()}
        record.started = time.monotonic()
        traffic = Traffic(self.pipeline.webhook_url, self.pipeline.settings.app_secret, config)
        end = record.started + minutes * 60
        next_report = record.started + 60
        while (now := time.monotonic()) < end:
            record.samples.append(self.sample())
            if now >= next_report:
                last = record.samples[-1]
                self.say(f"  {int((now - record.started) // 60)} min: lag {last['lag']}, broker objects "
                         f"{last['objects']}, receiver RSS {last['rss'].get('receiver')} MB")
                next_report += 60
            dead = [child.spec.name for child in self.pipeline.supervisor.exited()]
            if dead:
                traffic.cancel()
                raise RuntimeError(f"{dead[0]} stopped during the soak:\n{self.pipeline.supervisor.tail(dead[0])}")
            time.sleep(max(0.0, min(self.sample_s, end - time.monotonic())))
        record.ended = time.monotonic()
        record.result = traffic.wait(timeout_s=0)
        wall = record.ended - record.started
        record.cpu = {name: round(100 * (_cpu_s(pid) - cpu_before.get(name, 0.0)) / wall, 1)
                      for name, pid in self.pids().items()}
        return record


def judge_exactness(pipeline: Pipeline, records: list[StepRecord], say: Say, *,
                    settle_s: float = 300.0) -> list[dict[str, Any]]:
    """Per step: acknowledged statuses stored, none twice, every dashboard aggregate equal to the truth."""
    from warehouse import queries
    from warehouse.client import connect

    client = connect(pipeline.settings.warehouse_url_for("analyst"), send_receive_timeout=300)
    results = [r.result for r in records if r.result is not None]
    acked = frozenset().union(*(r.acked_statuses for r in results))
    acked_replies = frozenset().union(*(r.acked_completions for r in results))
    probe_pnids = set(PROBE_PNIDS)

    def stored() -> tuple[set[tuple[str, str]], int, set[str], int]:
        rows = queries.stored_status_pairs(client, except_phone_number_id=SENTINEL_PNID)
        replies = queries.stored_completion_wamids(client)
        return set(rows), len(rows), set(replies), len(replies)

    def settled() -> bool:
        statuses, _, replies, _ = stored()
        return acked <= statuses and acked_replies <= replies

    say(f"soak: waiting for the warehouse to hold {len(acked):,} acknowledged statuses ...")
    if not poll(settled, want=True, deadline_s=settle_s, interval_s=5):
        say("soak: the warehouse did not settle; judging what it holds")
    statuses, status_rows, replies, reply_rows = stored()
    probes = sum(1 for w, _ in statuses if w.startswith("wamid.soak-probe-"))
    double = (status_rows - len(statuses)) + (reply_rows - len(replies))
    judged = []
    for record in records:
        result = record.result
        if result is None or result.truth is None:
            judged.append({"exact": False, "reason": "no simulator result"})
            continue
        pnids = tuple(p for p in result.truth.phone_numbers if p not in probe_pnids)
        figures = settled_figures(client, result, pnids)
        off = {name: (truth, seen) for name, (truth, seen) in figures.items() if truth != seen}
        lost = len(result.acked_statuses - statuses) + len(result.acked_completions - replies)
        judged.append({"exact": lost == 0 and double == 0 and not off, "lost": lost,
                       "double_counted_rows": double, "aggregates_checked": len(figures),
                       "aggregates_off": dict(list(off.items())[:10]),
                       "acknowledged_statuses": len(result.acked_statuses), "probe_statuses_stored": probes})
    client.close()
    return judged


def summarise(record: StepRecord, probes: list[tuple[float, float]], probe_non_2xx: int,
              exactness: dict[str, Any]) -> dict[str, Any]:
    """One step of the report, and whether it was sustained (see the module docstring)."""
    result = record.result
    wall = record.ended - record.started
    fresh: list[list[float]] = [[], [], [], []]
    for at, ms in probes:
        if record.started <= at < record.ended:
            fresh[record.quarter(at)].append(ms)
    by_quarter: list[list[dict[str, Any]]] = [[], [], [], []]
    for sample in record.samples:
        by_quarter[record.quarter(sample["at"])].append(sample)

    def peak(key: str) -> list[float | None]:
        return [max((s[key] for s in q if s[key] is not None), default=None) for q in by_quarter]

    processes = sorted({name for s in record.samples for name in s["rss"]})
    rss = {name: [_mean([s["rss"][name] for s in q if s["rss"].get(name) is not None]) for q in by_quarter]
           for name in processes}
    freshness = [round(percentile(q, 95), 1) if q else None for q in fresh]
    lag, objects, size, disk = peak("lag"), peak("objects"), peak("bytes"), peak("disk")
    non_2xx = (sum(result.answers.values()) if result is not None else 0) + probe_non_2xx
    accepted = (result.status_updates_acked / wall) if result is not None and wall > 0 else 0.0
    checks = {
        "freshness_p95_every_quarter": all(f is not None and f <= FRESHNESS_P95_MS for f in freshness),
        "freshness_flat": _within(freshness[3], freshness[0], FRESHNESS_GROWTH, 0.0),
        "lag_flat": _within(lag[3], lag[1], FLAT, LAG_SLACK_RECORDS),
        "broker_objects_flat": _within(objects[3], objects[1], FLAT, OBJECTS_SLACK),
        "rss_flat": all(_within(q[3], q[1], FLAT, 0.0) for name, q in rss.items() if name != LOAD),
        "no_non_2xx": non_2xx == 0,
        "rate_kept": accepted >= RATE_KEPT * record.target,
        "exact": bool(exactness.get("exact")),
    }
    return {
        "target_events_per_s": record.target, "minutes": record.minutes, "posts_per_s": round(record.posts_per_s, 1),
        "accepted_events_per_s": round(accepted, 1), "non_2xx": non_2xx,
        "post_latency_ms": ({q: round(v * 1000, 1) for q, v in result.latency_quantiles().items()}
                            if result is not None else {}),
        "answers": dict(result.answers) if result is not None else {},
        "freshness_p95_ms_by_quarter": freshness,
        "freshness_probes": sum(len(q) for q in fresh),
        "freshness_timeouts": sum(1 for q in fresh for ms in q if ms >= PROBE_TIMEOUT_S * 1000),
        "lag_max_by_quarter": lag,
        "rss_mb_by_quarter": {name: [None if v is None else round(v, 1) for v in q] for name, q in rss.items()},
        "broker_objects_by_quarter": objects, "broker_bytes_by_quarter": size,
        "broker_disk_mb_by_quarter": [None if d is None else round(d, 1) for d in disk],
        "cpu_percent_of_one_core": record.cpu,
        "exact": bool(exactness.get("exact")), "exactness": exactness,
        "checks": checks, "sustained": all(checks.values()),
    }


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _within(last: float | None, base: float | None, factor: float, slack: float) -> bool:
    """``last`` at most ``factor`` × ``base`` (or ``base`` + ``slack``, whichever is larger)."""
    if last is None or base is None:
        return False
    return last <= max(base * factor, base + slack)


def max_sustained(steps: list[dict[str, Any]]) -> int:
    """The highest target of a sustained step (0 when none was).

    The first step also warms the pipeline up (the stream worker's window of recent event ids fills, SeaweedFS
    and the warehouse grow their caches), so its RSS may still climb where a later, faster step is flat.
    """
    return max((step["target_events_per_s"] for step in steps if step["sustained"]), default=0)


def parse_steps(text: str) -> tuple[tuple[int, float], ...]:
    """``"750:10,1500:10"`` → ((750, 10.0), (1500, 10.0)): status events/s and minutes per step."""
    steps = []
    for part in text.split(","):
        rate, _, minutes = part.partition(":")
        if not rate.strip().isdigit() or int(rate) <= 0:
            raise ValueError(f"a soak step is EVENTS_PER_S:MINUTES, e.g. 3000:30; got {part!r}")
        try:
            length = float(minutes)
        except ValueError:
            raise ValueError(f"a soak step is EVENTS_PER_S:MINUTES, e.g. 3000:30; got {part!r}") from None
        if length <= 0:
            raise ValueError(f"a soak step lasts more than 0 minutes; got {part!r}")
        steps.append((int(rate), length))
    return tuple(steps)


def run(say: Say, *, quick: bool, data_dir: Path | None = None,
        steps: tuple[tuple[int, float], ...] | None = None, **overrides: Any) -> list[Result]:
    """The soak; ``overrides`` are settings of the pipeline under test (to compare configurations)."""
    steps = steps or (QUICK_STEPS if quick else STEPS)
    records: list[StepRecord] = []
    with tempfile.TemporaryDirectory(prefix="flowscope-bench-soak-", dir=data_dir) as tmp:
        settings = isolated_settings(Path(tmp) / "pipeline", broker_storage="durable", log_level="WARNING",
                                     **overrides)
        with Pipeline(settings) as pipeline:
            say("soak: starting the pipeline (durable broker with retention, receiver, stream worker, warehouse)")
            pipeline.start("broker", "warehouse", "receiver", "stream")
            probe = FreshnessProbe(pipeline)
            probe.start()
            first = poll(lambda: len(probe.samples), want=1, deadline_s=120, interval_s=0.5)
            if not first:
                probe.close()
                raise RuntimeError(f"no probe reached the warehouse; logs in {pipeline.supervisor.log_dir}")
            soak = Soak(pipeline, say, quick=quick)
            try:
                for n, (target, minutes) in enumerate(steps):
                    records.append(soak.step(target, minutes, seed=100 + n))
            finally:
                probe.close()
            exactness = judge_exactness(pipeline, records, say)
    summary = [summarise(r, probe.samples, probe.non_2xx if i == 0 else 0, exactness[i])
               for i, r in enumerate(records)]
    best = max_sustained(summary)
    entry = {"steps": summary, "max_sustained_events_per_s": best}
    for step in summary:
        say(f"soak: {step['target_events_per_s']:,}/s accepted {step['accepted_events_per_s']:,.0f}/s, freshness p95 "
            f"by quarter {step['freshness_p95_ms_by_quarter']} ms, lag {step['lag_max_by_quarter']}, broker objects "
            f"{step['broker_objects_by_quarter']}, sustained: {step['sustained']}")
    goal = next((s for s in summary if s["target_events_per_s"] == GOAL_EVENTS_PER_S), summary[-1])
    fresh = goal["freshness_p95_ms_by_quarter"]
    worst = max((f for f in fresh if f is not None), default=PROBE_TIMEOUT_S * 1000)
    growth = (fresh[3] / fresh[0]) if fresh[0] and fresh[3] is not None else float("inf")
    rss_growth = max((q[3] / q[1] for name, q in goal["rss_mb_by_quarter"].items()
                      if name != LOAD and q[1] and q[3] is not None), default=float("inf"))
    lag = goal["lag_max_by_quarter"]
    lag_allowed = max(lag[1] * FLAT, lag[1] + LAG_SLACK_RECORDS) if lag[1] is not None else 0.0
    at = f"at {goal['target_events_per_s']:,}/s"
    problems = sum(s["exactness"].get("lost", 0) + len(s["exactness"].get("aggregates_off", {})) for s in summary)
    problems += summary[0]["exactness"].get("double_counted_rows", 0) if summary else 0
    return [
        Result(BENCHMARK, "max sustained status events/s", float(best),
               float(GOAL_EVENTS_PER_S), True, "events/s", entry),
        Result(BENCHMARK, f"freshness p95 ms, worst quarter {at}", worst, FRESHNESS_P95_MS, False, "ms"),
        Result(BENCHMARK, f"freshness p95 last/first quarter {at}", round(growth, 3), FRESHNESS_GROWTH, False, "x"),
        Result(BENCHMARK, f"consumer lag max, last quarter {at}", float(lag[3] if lag[3] is not None else -1),
               round(lag_allowed, 1), False, "records", {"by_quarter": lag}),
        Result(BENCHMARK, f"RSS last/second quarter, worst process {at}", round(rss_growth, 3), FLAT, False, "x"),
        Result(BENCHMARK, "non-2xx answers", float(sum(s["non_2xx"] for s in summary)), 0.0, False, ""),
        Result(BENCHMARK, "events lost, doubled or mis-aggregated", float(problems), 0.0, False, ""),
    ]
