"""Sends the simulated traffic at its rate: pacing, concurrency, progress, and what happened (SimulationResult)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sys
import time
from dataclasses import dataclass, replace
from typing import Any, TextIO

import httpx

from flowtools.simulator.config import SimulationConfig
from flowtools.simulator.generator import TrafficGenerator
from flowtools.simulator.payloads import Webhook
from flowtools.simulator.sender import Backoff, Sender, check_url
from flowtools.simulator.truth import Tally, Truth

RETRY_JITTER = 0.2  # each retry waits 80 % to 120 % of its backoff
CONNECTIONS_PER_CLIENT = 8  # POSTs in flight share clients of this many connections (see Sender)


@dataclass(kw_only=True)
class SimulationResult:
    acked: int  # POSTs answered 2xx, re-sends included
    retries: int  # attempts after a non-2xx answer, a timeout or a connection error
    failures: int  # POSTs not delivered before their deadline
    abandoned: int  # POSTs dropped unacknowledged because the run was stopped
    status_updates_acked: int  # status updates in acknowledged POSTs, duplicates included
    latencies: list[float]  # seconds of each 2xx attempt (at most MAX_LATENCY_SAMPLES, sampled beyond)
    elapsed_s: float
    stopped: bool  # stopped before the end (signal, stop event)
    answers: dict[str, int]  # non-2xx answers and transport errors by kind, e.g. {"503": 4, "ConnectError": 1}
    truth: Truth | None  # None in endless mode
    # Exactly what was acknowledged (finite runs): distinct (wamid, status) pairs and completion wamids.
    acked_statuses: frozenset[tuple[str, str]] = frozenset()
    acked_completions: frozenset[str] = frozenset()

    def latency_quantiles(self) -> dict[str, float]:
        if not self.latencies:
            return {}
        ordered = sorted(self.latencies)

        def q(p: float) -> float:
            return ordered[min(len(ordered) - 1, int(p * len(ordered)))]

        return {"p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "max": ordered[-1]}


class _Delivery:
    """Signed webhooks through the one sender; the truth learns from each acknowledged POST."""

    def __init__(self, url: str, *, sender: Sender, app_secret: str, tally: Tally | None) -> None:
        self.url = url
        self.sender = sender
        self.app_secret = app_secret
        self.tally = tally
        self.status_updates = 0  # in acknowledged POSTs, duplicates included

    async def deliver(self, webhook: Webhook) -> None:
        if await self.sender.post(self.url, webhook.raw, webhook.headers(self.app_secret)):
            self.status_updates += webhook.status_updates
            if self.tally is not None:
                self.tally.add_webhook(webhook)


class _Progress:
    """One updating line on a TTY, else a line every few seconds."""

    def __init__(self, stream: TextIO, *, total_messages: int) -> None:
        self.stream = stream
        self.total = total_messages
        self.tty = stream.isatty()
        self.interval = 0.2 if self.tty else 5.0
        self._width = 0

    def line(self, delivery: _Delivery, generator: TrafficGenerator, elapsed: float) -> str:
        sender = delivery.sender
        rate = sender.acked / elapsed if elapsed > 0 else 0.0
        messages = f"{generator.messages_created:,}" + (f"/{self.total:,}" if self.total else "")
        parts = [
            f"posts {sender.acked:,} acked",
            f"messages {messages}",
            f"statuses {delivery.status_updates:,}",
            f"retries {sender.retries:,}",
            f"{rate:,.0f} POST/s",
            f"{elapsed:,.1f} s",
        ]
        if sender.failures:
            parts.append(f"UNDELIVERED {sender.failures:,}")
        return "simulate: " + " | ".join(parts)

    def show(self, text: str, *, final: bool = False) -> None:
        if self.tty:
            pad = max(0, self._width - len(text))
            self._width = len(text)
            self.stream.write("\r" + text + " " * pad + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


async def _acquire_unless_stopped(slots: asyncio.Semaphore, stop: asyncio.Event) -> bool:
    """Take a concurrency slot (waiting while every slot is busy); False if ``stop`` is set first."""
    if not slots.locked():
        await slots.acquire()
        return True
    acquired = asyncio.ensure_future(slots.acquire())
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({acquired, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not acquired.done():
            acquired.cancel()
    if not acquired.done() or acquired.cancelled():
        return False
    if stop.is_set():
        slots.release()
        return False
    return True


async def _drain(tasks: set[asyncio.Task[None]], abort: asyncio.Event) -> None:
    """Wait for the POSTs in flight, or until ``abort`` is set."""
    pending: set[asyncio.Future[Any]] = {task for task in tasks if not task.done()}
    if not pending:
        return
    aborted = asyncio.ensure_future(abort.wait())
    try:
        while pending and not abort.is_set():
            _, pending = await asyncio.wait(pending | {aborted}, return_when=asyncio.FIRST_COMPLETED)
            pending.discard(aborted)
    finally:
        aborted.cancel()


async def run(
    url: str,
    *,
    config: SimulationConfig,
    app_secret: str,
    progress: bool = True,
    stop: asyncio.Event | None = None,
    abort: asyncio.Event | None = None,
    progress_stream: TextIO | None = None,
) -> SimulationResult:
    """Send the simulated traffic to ``url`` at ``config.rate`` POSTs/s; return what happened.

    Ends after the last POST of a finite run is settled, or when ``stop`` is set: then no new POST
    starts, an attempt in flight may finish (and counts if acknowledged) and nothing is retried.
    Setting ``abort`` too (or cancelling the task) abandons what is in flight at once. The truth
    covers acknowledged POSTs only (None when endless). In endless mode (``messages=0``) and with
    ``live_clock`` the event times come from the real clock, so a live dashboard always shows recent data.
    """
    check_url(url)
    loop = asyncio.get_running_loop()
    stop = stop if stop is not None else asyncio.Event()
    abort = abort if abort is not None else asyncio.Event()
    endless = config.messages == 0
    config = replace(config, start_time=config.start_time if config.start_time is not None else time.time())
    t0 = loop.time()
    clock = (lambda: loop.time() - t0) if endless or config.live_clock else None
    generator = TrafficGenerator(config, clock=clock)
    tally = None if endless else Tally(phone_numbers=generator.phone_numbers, flows=generator.flows)
    pools = -(-config.concurrency // CONNECTIONS_PER_CLIENT)
    per_pool = -(-config.concurrency // pools)
    limits = httpx.Limits(max_connections=per_pool, max_keepalive_connections=per_pool)
    reporter = _Progress(progress_stream or sys.stderr, total_messages=config.messages) if progress else None
    tasks: set[asyncio.Task[None]] = set()
    finished = False
    async with contextlib.AsyncExitStack() as clients:
        client = [await clients.enter_async_context(httpx.AsyncClient(timeout=config.timeout_s, limits=limits))
                  for _ in range(pools)]
        backoff = Backoff(initial_s=config.retry_initial_s, max_s=config.retry_max_s, jitter=RETRY_JITTER)
        sender = Sender(client, backoff=backoff, deadline_s=config.deadline_s, stop=stop)
        delivery = _Delivery(url, sender=sender, app_secret=app_secret, tally=tally)
        slots = asyncio.Semaphore(config.concurrency)

        async def deliver(webhook: Webhook) -> None:
            try:
                await delivery.deliver(webhook)
            finally:
                slots.release()

        async def report() -> None:
            if reporter is None:
                return
            while True:
                await asyncio.sleep(reporter.interval)
                reporter.show(reporter.line(delivery, generator, loop.time() - t0))

        reporter_task = asyncio.create_task(report())
        try:
            origin = t0
            for seq in itertools.count():
                # Pace to the schedule, waking promptly on stop. Behind schedule, a finite run catches up
                # (its timestamps follow the schedule); a live-clock run lets at most 1 s of debt build up.
                while (wait := origin + seq / config.rate - loop.time()) > 0 and not stop.is_set():
                    await asyncio.sleep(min(wait, 0.1))
                if stop.is_set():
                    break
                if clock is not None and wait < -1.0:
                    origin -= wait + 1.0
                if not await _acquire_unless_stopped(slots, stop):
                    break
                webhook = generator.next_webhook()
                if webhook is None:
                    slots.release()
                    finished = True
                    break
                task = asyncio.create_task(deliver(webhook))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await _drain(tasks, abort)
        finally:
            reporter_task.cancel()
            unfinished = [task for task in tasks if not task.done()]
            for task in unfinished:
                task.cancel()
            sender.abandoned += len(unfinished)
            await asyncio.gather(*unfinished, return_exceptions=True)
            with contextlib.suppress(asyncio.CancelledError):
                await reporter_task
    elapsed = loop.time() - t0
    if reporter is not None:
        reporter.show(reporter.line(delivery, generator, elapsed), final=True)
    truth = None
    if tally is not None:
        truth = tally.truth(
            seed=config.seed,
            start_time=float(generator.start_time),
            complete=finished and sender.failures == 0 and sender.abandoned == 0,
            retries=sender.retries,
            undelivered=sender.failures + sender.abandoned,
            stats=generator.stats,
        )
    return SimulationResult(
        acked=sender.acked,
        retries=sender.retries,
        failures=sender.failures,
        abandoned=sender.abandoned,
        status_updates_acked=delivery.status_updates,
        latencies=sender.latencies,
        elapsed_s=elapsed,
        stopped=not finished,
        answers=dict(sorted(sender.answers.items())),
        truth=truth,
        acked_statuses=frozenset(
            (wamid, status) for wamid, record in tally.messages.items() for status in record.statuses
        ) if tally is not None else frozenset(),
        acked_completions=frozenset(tally.completions) if tally is not None else frozenset(),
    )
