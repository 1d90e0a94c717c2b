"""Dashboard queries at scale: p95 of every query the dashboard pages run, on a warehouse of N events.

The warehouse (our chDB server, the same one ``flowscope up`` runs) is filled through the stream worker's
write path (the per-event-kind inserts of :mod:`warehouse.writer`, in large batches), so every materialized
view is fed exactly as in production; the rollup then seals the delivery history and resolves the sessions
before queries are timed. The traffic: outbound messages spread over 30 days across 20 business numbers,
each with its status path (sent, then delivered 92 %, read 60 %, or failed 3 % with a Meta error code);
every second message is a Flow message with its ``flow_sent`` record, screen events along its version's
path (dropping off on the way) and a completion for most that reach the end. "Events" counts rows of the
four raw tables: statuses, sends, screen events and completions.

Each query runs as the page runs it on a refresh (same typed function, same default filters), for
the time ranges a user picks; the figure judged is the p95 over all of them.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from config.settings import Settings
from embedded.exceptions import SupervisorError
from flowtools.bench import Result, Say, percentile
from flowtools.harness import Pipeline, poll, register_simulated_flows
from flowtools.simulator.flows import FLOWS
from warehouse import tables

TARGET_P95_MS = 300.0
NUMBERS = 20  # business phone numbers
DAYS = 30
EVENTS_PER_MESSAGE = 4.3  # about: 2.55 statuses + half a Flow session (1 send + ~2.3 screens + ~0.35 completion)
ERROR_CODES = (131026, 131047, 131048, 131056, 130429, 131000)
CHUNK_MESSAGES = 50_000  # messages per write: about 215,000 events

SettingsFactory = Callable[..., Settings]


def _paths() -> list[tuple[str, str, list[str]]]:
    """Every simulated flow version with its screens along the first branch."""
    out = []
    for flow in FLOWS:
        for version, screens in flow.versions.items():
            by_id = {s.id: s for s in screens}
            path, screen = [], screens[0]
            while True:
                path.append(screen.id)
                if screen.terminal:
                    break
                screen = by_id[screen.next[0]]
            out.append((flow.flow_id, version, path))
    return out


def _mix(n: int, salt: int) -> int:
    """A deterministic pseudo-random number of message ``n`` (the traffic's dice), in 0 .. 2**32 - 1."""
    x = (n * 0x9E3779B1 + salt * 0x85EBCA77) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x2C1B3C6D) & 0xFFFFFFFF
    return x ^ (x >> 12)


def events_of(first: int, count: int, *, total: int, end: datetime) -> dict[str, list[Any]]:
    """The events of messages ``first`` .. ``first + count - 1``, as the stream worker receives them: statuses,
    Flow sends, screen events and completions (keyword arguments of :func:`warehouse.writer.inserts`)."""
    from contract.events import FlowCompletion, FlowSent, MessageStatus, NodeEvent

    paths = _paths()
    start_ms = int((end - timedelta(days=DAYS)).timestamp() * 1000)
    step_ms = DAYS * 86_400_000 // max(total, 1)
    statuses: list[MessageStatus] = []
    sends: list[FlowSent] = []
    nodes: list[NodeEvent] = []
    completions: list[FlowCompletion] = []
    for n in range(first, first + count):
        wamid, pnid = f"wamid.bench.{n}", str(100000000000000 + n % NUMBERS)
        sent_ms = start_ms + n * step_ms
        sent_s = sent_ms // 1000
        user = f"{_mix(n, 1):08x}"
        fate = _mix(n, 2) % 100
        path_of = [("sent", 0)]
        if fate < 92:
            path_of.append(("delivered", 4))
        if fate < 60:
            path_of.append(("read", 90))
        if fate >= 97:
            path_of.append(("failed", 3))
        for status, after in path_of:
            statuses.append(MessageStatus(
                event_id=f"{wamid}:{status}", waba_id="200000000000001", phone_number_id=pnid, wamid=wamid,
                status=status, occurred_at=sent_s + after, received_at_ms=sent_ms + after * 1000,
                recipient_hash=user, error_code=ERROR_CODES[n % 6] if status == "failed" else 0,
                person_hash=user, country=COUNTRIES[n % len(COUNTRIES)],
                pricing_category="" if status == "failed" else ("marketing", "utility", "service")[n % 3],
                pricing_type="" if status == "failed" else ("regular", "regular", "free_customer_service")[n % 3],
                pricing_model="" if status == "failed" else "PMP",
                billable=-1 if status == "failed" else int(n % 3 != 2)))
        if n % 2:
            continue
        flow_id, version, path = paths[(n // 2) % len(paths)]
        token = f"ft.{n}"
        sends.append(FlowSent(event_id=f"send.{n}", wamid=wamid, flow_id=flow_id, flow_version=version,
                              flow_token=token, campaign=("spring_promo", "reactivation", "")[n % 3],
                              phone_number_id=pnid, recipient_hash=user, occurred_at_ms=sent_ms,
                              received_at_ms=sent_ms))
        depth = min(_mix(n, 3) % (len(path) + 2), len(path))
        for j in range(1, depth + 1):
            nodes.append(NodeEvent(event_id=f"node.{n}.{j}", flow_token=token, flow_id=flow_id, flow_version=version,
                                   screen=path[j - 1], node_type="form", action="view",
                                   occurred_at_ms=sent_ms + (100 + 25 * j + _mix(n, 10 + j) % 40) * 1000,
                                   received_at_ms=sent_ms + (100 + 25 * j) * 1000, source="node"))
        if depth == len(path) and _mix(n, 4) % 10 < 8:
            done_ms = sent_ms + (130 + 25 * depth) * 1000
            completions.append(FlowCompletion(
                event_id=f"done.{n}", waba_id="200000000000001", phone_number_id=pnid, wamid=f"wamid.reply.{n}",
                flow_wamid=wamid, flow_token=token, flow_name="bench", occurred_at=done_ms // 1000,
                received_at_ms=done_ms, user_hash=user))
    return {"statuses": statuses, "flow_sends": sends, "node_events": nodes, "completions": completions}


COUNTRIES = ("BR", "US", "IN", "MX", "DE", "GB")
RAW_TABLES = (tables.MESSAGE_STATUSES_TABLE, tables.FLOW_SENDS_TABLE, tables.FLOW_NODE_EVENTS_TABLE,
              tables.FLOW_COMPLETIONS_TABLE)


def _count(client: Any, source: str) -> int:
    return int(client.command(f"SELECT count() FROM {source}"))


def stored_events(client: Any) -> int:
    return sum(_count(client, table) for table in RAW_TABLES)


def load(client: Any, events: int, *, end: datetime, say: Say) -> tuple[int, float]:
    """Fill the warehouse with about ``events`` raw events through the stream worker's write path (the
    warehouse's per-event-kind inserts, :mod:`warehouse.writer`, in large batches); returns (stored, seconds)."""
    from warehouse import writer

    messages = max(1, round(events / EVENTS_PER_MESSAGE))
    started = time.monotonic()
    first = written = 0
    while first < messages:
        count = min(CHUNK_MESSAGES, messages - first)
        batch = writer.inserts(**events_of(first, count, total=messages, end=end))
        writer.write(client, *batch)
        written += sum(insert.rows for insert in batch)
        first += count
        elapsed = time.monotonic() - started
        say(f"  loaded {first:,} / {messages:,} messages ({first / messages:.0%}), {written:,} events, "
            f"{elapsed:.0f} s ({written / elapsed:,.0f} events/s)")
    return stored_events(client), time.monotonic() - started


def wait_for_rollup(client: Any, settings: Settings, *, deadline_s: float = 3600) -> float:
    """Seconds until the rollup has sealed every minute it may (all but its last ``rollup_seal_after_s``) and
    resolved every session and message loaded."""
    from warehouse.flows import SESSIONS_RESOLVED, TOUCH_MARGIN_S
    from warehouse.message_hours import MESSAGE_HOURS
    from warehouse.rollup import DELIVERY_SEALED, progress, server_now

    started = time.monotonic()
    # Queries merge live the sessions touched up to TOUCH_MARGIN_S before the rollup's last pass: steady state
    # is a pass that far past the load.
    loaded = server_now(client) + timedelta(seconds=TOUCH_MARGIN_S + 1)
    horizon = loaded - timedelta(seconds=settings.rollup_seal_after_s + 60)

    def caught_up() -> bool:
        sealed = progress(client, DELIVERY_SEALED) or datetime(1970, 1, 1)
        resolved = min(progress(client, task) or datetime(1970, 1, 1) for task in (SESSIONS_RESOLVED, MESSAGE_HOURS))
        return sealed >= horizon and resolved >= loaded

    if not poll(caught_up, want=True, deadline_s=deadline_s, interval_s=1.0):
        raise SupervisorError(f"the rollup did not seal and resolve the loaded history within {deadline_s:.0f} s")
    return time.monotonic() - started


def bytes_per_million_events(client: Any, events: int) -> dict[str, int]:
    """Bytes on disk of each table (active parts) per million raw events stored."""
    rows = client.query(
        "SELECT table, sum(bytes_on_disk) FROM system.parts WHERE database = currentDatabase() AND active "
        "GROUP BY table ORDER BY table").result_rows
    return {table: round(size * 1_000_000 / max(events, 1)) for table, size in rows}


def queries(end: datetime, *, timeout_s: int = Settings.session_timeout_s) -> list[tuple[str, Callable[[Any], object]]]:
    """(label, call) for every query the dashboard pages run, over the ranges users pick.

    ``timeout_s`` is the session timeout the pages pass (the settings'; their default when not given).
    """
    from warehouse import audience, buckets, costs, flows, health, overview, rejected, screens
    from warehouse import queries as delivery

    out: list[tuple[str, Callable[[Any], object]]] = []

    def add(label: str, function: Callable[..., object], *args: Any, **kwargs: Any) -> None:
        out.append((label, lambda client: function(client, *args, **kwargs)))

    for label, span in (("1h", timedelta(hours=1)), ("24h", timedelta(days=1)), ("7d", timedelta(days=7)),
                        ("30d", timedelta(days=30))):
        where = delivery.DeliveryFilter(start=end - span, end=end)
        bucket = 1 if span <= timedelta(hours=6) else 60 if span <= timedelta(days=7) else 360
        add(f"delivery.totals {label}", delivery.delivery_totals, where)
        add(f"delivery.timeseries {label}", delivery.delivery_timeseries, where, bucket_minutes=bucket)
        add(f"delivery.failures_by_error_code {label}", delivery.failures_by_error_code, where)
        add(f"delivery.by_phone_number {label}", delivery.delivery_by_phone_number, where)
        add(f"costs.spend {label}", costs.spend, where, by=())
        add(f"costs.spend by day {label}", costs.spend, where, by=("day",))
        add(f"audience.delivery_persons {label}", audience.delivery_persons, where)
        add(f"audience.delivery_by_country {label}", audience.delivery_by_country, where)
        add(f"audience.stopped_people {label}", audience.stopped_people, where)
        add(f"delivery.webhook_errors {label}", delivery.webhook_errors, where)
    add("delivery.phone_number_ids", delivery.phone_number_ids)
    add("costs.rate_card", costs.rate_card)
    flow_id, version, _ = _paths()[-1]
    for label, span in (("1h", timedelta(hours=1)), ("24h", timedelta(days=1)), ("7d", timedelta(days=7)),
                        ("30d", timedelta(days=30))):
        where_flow = flows.FlowFilter(start=end - span, end=end, flow_id=flow_id, now=end, timeout_s=timeout_s)
        one_version = replace(where_flow, flow_version=version)
        # The funnel page's one funnel query: every version and campaign, by the bucket of its over-time chart.
        add(f"flows.funnel by flow, version, campaign and bucket {label}", flows.funnel, where_flow,
            by=("flow_id", "flow_version", "campaign"), bucket_minutes=buckets.over_time_bucket_minutes(span))
        add(f"flows.node_stats {label}", flows.node_stats, one_version)
        add(f"flows.transitions {label}", flows.transitions, one_version)
        add(f"flows.paths {label}", flows.paths, one_version, limit=15)
        add(f"audience.audience_sets {label}", audience.audience_sets, where_flow,
            (("flow_id",), ("country",), ("flow_version", "campaign")))
        add(f"audience.completion_summary {label}", audience.completion_summary, where_flow)
        add(f"audience.stage_times {label}", audience.stage_times, where_flow, by=("flow_id",))
        # The Overview's, over every flow.
        every_flow = replace(where_flow, flow_id="")
        # The previous period's sessions, and this period's by the trend's buckets (overview.start_page).
        add(f"overview: flows.funnel every flow {label}", flows.funnel, every_flow, by=("flow_id",))
        add(f"overview: flows.funnel_over_time every flow {label}", flows.funnel_over_time, every_flow,
            bucket_minutes=overview.trend_bucket_minutes(span))
        add(f"overview: flows.node_stats every flow {label}", flows.node_stats, every_flow)
    add("flows.flow_versions", flows.flow_versions)
    add("screens.flow_screens", screens.flow_screens, flow_id, version)
    add("flows.selections", flows.selections, flow_id=flow_id, flow_version=version)
    add("health.flow_states", health.flow_states)
    add("health.history 7d", health.history, start=end - timedelta(days=7), end=end)
    add("rejected.by_reason 24h", rejected.by_reason, end - timedelta(days=1), end)
    add("rejected.latest 24h", rejected.latest, end - timedelta(days=1), end, 50)
    return out


def time_queries(client: Any, end: datetime, *, repeats: int, budget_s: float, timeout_s: int,
                 say: Say) -> dict[str, list[float]]:
    """Milliseconds of each run of each query (at most ``budget_s`` per query after its first run)."""
    timings: dict[str, list[float]] = {}
    for label, call in queries(end, timeout_s=timeout_s):
        runs: list[float] = []
        spent = 0.0
        call(client)  # warm: the page's first render pays this, every refresh after it does not
        for _ in range(repeats):
            t0 = time.perf_counter()
            call(client)
            ms = (time.perf_counter() - t0) * 1000
            runs.append(ms)
            spent += ms / 1000
            if spent > budget_s:
                break
        timings[label] = runs
        say(f"  {label:<42} p95 {percentile(runs, 95):8.1f} ms  ({len(runs)} runs)")
    return timings


def _range_of(label: str) -> str:
    """The time range a query label names ("1h" … "30d"), or "all" for the queries without one."""
    last = label.rsplit(" ", 1)[-1]
    return last if last[:-1].isdigit() and last[-1] in "hd" else "all"


def run(settings_factory: SettingsFactory, say: Say, *, quick: bool, events: int | None = None,
        data_dir: Path | None = None) -> list[Result]:
    from warehouse.client import connect

    events = events or (300_000 if quick else 100_000_000)
    repeats = 5 if quick else 10
    with tempfile.TemporaryDirectory(prefix="flowscope-bench-", dir=data_dir) as tmp:
        settings = settings_factory(Path(tmp), broker_storage="memory")
        with Pipeline(settings) as pipeline:
            say(f"dashboard: warehouse on {settings.warehouse_url}; loading {events:,} events")
            # The simulated flows are registered as a business registers them (receiver, broker, stream worker:
            # the one write path of flow definitions); only the warehouse runs while queries are timed.
            pipeline.start("broker", "warehouse", "receiver", "stream")
            register_simulated_flows(settings)
            pipeline.stop("stream", "receiver", "broker")
            client = connect(settings.warehouse_url_for("admin"), send_receive_timeout=3600)
            end = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
            stored, load_s = load(client, events, end=end, say=say)
            loaded = {
                "messages": max(1, round(events / EVENTS_PER_MESSAGE)),
                "sent_statuses": _count(client, f"{tables.MESSAGE_STATUSES_TABLE} WHERE status = 'sent'"),
                "flow_sends": _count(client, tables.FLOW_SENDS_TABLE),
            }
            say(f"dashboard: {stored:,} events stored in {load_s:.0f} s ({stored / load_s:,.0f}/s); "
                "waiting for the rollup to seal them")
            seal_s = wait_for_rollup(client, settings)
            say(f"dashboard: sealed in {seal_s:.0f} s; timing queries")
            footprint = bytes_per_million_events(client, stored)
            client.close()
            reader = connect(settings.warehouse_url_for("analyst"), send_receive_timeout=3600)  # as the dashboards
            timings = time_queries(reader, end, repeats=repeats, budget_s=10 if quick else 15,
                                   timeout_s=settings.session_timeout_s, say=say)
            reader.close()
    every = [ms for runs in timings.values() for ms in runs]
    per_query = {label: round(percentile(runs, 95), 1) for label, runs in timings.items()}
    listed = [{"query": label, "range": _range_of(label), "p50_ms": round(percentile(runs, 50), 1),
               "p95_ms": round(percentile(runs, 95), 1), "runs": len(runs)} for label, runs in timings.items()]
    slowest = sorted(per_query.items(), key=lambda kv: -kv[1])[:8]
    details = {**loaded, "events": stored, "load_s": round(load_s, 1),
               "load_events_per_s": round(stored / load_s), "seal_s": round(seal_s, 1), "queries": len(timings),
               "runs": len(every), "bytes_per_million_events": footprint,
               "p95_ms_by_query": per_query, "by_query": listed, "slowest": dict(slowest),
               "over_target": sorted(q for q, ms in per_query.items() if ms > TARGET_P95_MS)}
    return [
        Result("dashboard", "query p95 ms", round(percentile(every, 95), 1), TARGET_P95_MS, False, "ms", details),
        Result("dashboard", "worst query p95 ms", slowest[0][1], TARGET_P95_MS, False, "ms",
               {"query": slowest[0][0], "events": stored}),
    ]
