"""The one retrying HTTP sender: POSTs a body until a 2xx answer, with backoff, a deadline and a stop event."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import httpx

MAX_LATENCY_SAMPLES = 200_000


@dataclass(frozen=True, kw_only=True)
class Backoff:
    """Waits between attempts: ``initial_s``, doubled up to ``max_s``, each drawn within ± ``jitter`` of it."""

    initial_s: float = 0.2
    max_s: float = 5.0
    jitter: float = 0.0  # a share of the wait, e.g. 0.2 = 80 % to 120 %

    def wait_s(self, backoff: float) -> float:
        return backoff * random.uniform(1 - self.jitter, 1 + self.jitter) if self.jitter else backoff


def check_url(url: str) -> None:
    """Raise ValueError unless ``url`` is an absolute http(s) URL."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"invalid URL {url!r}: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"invalid URL {url!r}: expected http(s)://host[:port]/path")


class Sender:
    """POSTs bodies over one client, retrying non-2xx answers, timeouts and connection errors.

    A POST is retried while its next attempt would start before its deadline (``deadline_s`` from its
    first attempt, unless the caller passes an absolute one); it then counts in ``failures``. Once
    ``stop`` is set nothing is retried any more and the POST counts in ``abandoned``. Counts what
    happened: ``acked``, ``retries``, ``answers`` (non-2xx answers and transport errors by kind, e.g.
    ``{"503": 4, "ConnectError": 1}``) and ``latencies`` (seconds of each 2xx attempt, at most
    ``MAX_LATENCY_SAMPLES``, sampled beyond).
    """

    def __init__(
        self,
        client: httpx.AsyncClient | Sequence[httpx.AsyncClient],
        *,
        backoff: Backoff,
        deadline_s: float,
        stop: asyncio.Event | None = None,
    ) -> None:
        # Several clients take turns: httpx's pool scans every connection for every request, so one pool
        # of 64 connections cost the simulator most of its CPU at 400 POSTs/s (py-spy); pools of 8 do not.
        self.clients = [client] if isinstance(client, httpx.AsyncClient) else list(client)
        if not self.clients:
            raise ValueError("a sender needs at least one client")
        self._turn = 0
        self.backoff = backoff
        self.deadline_s = deadline_s
        self.stop = stop if stop is not None else asyncio.Event()
        self.acked = self.retries = self.failures = self.abandoned = 0
        self.latencies: list[float] = []
        self.answers: dict[str, int] = {}
        self._sample_rng = random.Random(0)
        self._latency_seen = 0

    def _record_latency(self, seconds: float) -> None:
        self._latency_seen += 1
        if len(self.latencies) < MAX_LATENCY_SAMPLES:
            self.latencies.append(seconds)
        else:  # reservoir sampling keeps the quantiles honest without unbounded memory
            slot = self._sample_rng.randrange(self._latency_seen)
            if slot < MAX_LATENCY_SAMPLES:
                self.latencies[slot] = seconds

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], *, deadline: float | None = None
    ) -> bool:
        """POST ``body`` until it is acknowledged (True), or until the deadline or a stop (False).

        ``deadline`` is in the event loop's clock (``loop.time()``); default: ``deadline_s`` from now.
        """
        loop = asyncio.get_running_loop()
        first = loop.time()
        if deadline is None:
            deadline = first + self.deadline_s
        backoff = self.backoff.initial_s
        while True:
            began = loop.time()
            try:
                self._turn += 1
                client = self.clients[self._turn % len(self.clients)]
                response = await client.post(url, content=body, headers=headers)
                ok = 200 <= response.status_code < 300
                kind = str(response.status_code)
            except httpx.HTTPError as exc:
                ok, kind = False, type(exc).__name__
            if ok:
                self._record_latency(loop.time() - began)
                self.acked += 1
                return True
            self.answers[kind] = self.answers.get(kind, 0) + 1
            if self.stop.is_set():
                self.abandoned += 1
                return False
            if loop.time() + backoff > deadline:
                self.failures += 1
                return False
            self.retries += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), self.backoff.wait_s(backoff))
            if self.stop.is_set():
                self.abandoned += 1
                return False
            backoff = min(backoff * 2, self.backoff.max_s)
