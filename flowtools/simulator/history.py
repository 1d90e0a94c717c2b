"""A first run that shows every page full: days of simulated history sent through the real pipeline.

Before ``flowscope up`` starts its live traffic, it sends what the simulators would have sent over the last
``days`` days, as the real sources send it (signed webhooks, first-party events), so every page has data at once:

- Flow sessions of the simulated flows, spread over the days and ending an hour ago, so they are decided:
  completions, drop-offs (abandoned sessions), answers to the allow-listed selection fields, Meta's 2026
  identity mix, pricing and opt-outs (:func:`flowtools.simulator.sessions.generate_sessions`);
- delivery traffic of the webhook simulator over the same days: statuses with failures and real error codes,
  duplicates and reordering, groups, value-level errors (:class:`flowtools.simulator.generator.TrafficGenerator`);
- Flow health episodes: a flow throttled and restored, then throttled again (still throttled), endpoint error-rate
  and latency alerts raised and cleared, a client error-rate alert still active;
- a few status parts Meta would never send (an unknown status value): rejected with their reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from flowtools.simulator import payloads
from flowtools.simulator.config import SimulationConfig
from flowtools.simulator.flows import FLOWS
from flowtools.simulator.generator import TrafficGenerator
from flowtools.simulator.sessions import WABA_ID, generate_sessions, requests, send

SESSIONS_PER_DAY = 300
MESSAGES_PER_DAY = 700
POSTS_PER_UPDATE = 0.4  # the webhook simulator's POSTs per message (several statuses per POST)
CHUNK = 400  # POSTs sent between two progress lines
SEED = 2024

Say = Callable[[str], None]


def history_posts(*, days: int, now_s: int, seed: int = SEED) -> list[tuple[str, bytes]]:
    """("webhook" | "events", body) of every POST of ``days`` days of history ending at ``now_s``."""
    if days <= 0:
        return []
    span_s = days * 86_400
    start_s = now_s - span_s
    sessions_n = SESSIONS_PER_DAY * days
    sessions = generate_sessions(sessions_n, seed=seed, start_ms=start_s * 1000,
                                 spacing_ms=(span_s - 3_600) * 1000 // sessions_n, prefix="history",
                                 now_ms=now_s * 1000)
    posts = requests(sessions, seed=seed)
    messages = MESSAGES_PER_DAY * days
    config = SimulationConfig(messages=messages, rate=POSTS_PER_UPDATE * messages / (span_s - 3_600), seed=seed,
                              start_time=float(start_s))
    posts += [("webhook", webhook.raw) for webhook in TrafficGenerator(config)]
    posts += [("webhook", body) for body in _health(start_s, now_s)]
    posts.append(("webhook", _unusable(now_s)))
    return posts


def send_history(*, days: int, webhook_url: str, events_url: str, app_secret: str, events_token: str, say: Say,
                 now_s: int, concurrency: int = 96) -> int:
    """Send the history, with a progress line per chunk; returns the POSTs that never landed."""
    posts = history_posts(days=days, now_s=now_s)
    failed = 0
    for first in range(0, len(posts), CHUNK):
        chunk = posts[first:first + CHUNK]
        failed += asyncio.run(send(chunk, webhook_url=webhook_url, events_url=events_url, app_secret=app_secret,
                                   events_token=events_token, concurrency=concurrency, deadline_s=120))
        done = first + len(chunk)
        say(f"history: {done:,} / {len(posts):,} POSTs of {days} days sent ({done / len(posts):.0%})")
    return failed


def _flows_webhook(at: int, value: dict[str, Any]) -> bytes:
    entry = payloads.entry(waba_id=WABA_ID, time=at, changes=[{"field": "flows", "value": value}])
    return payloads.encode(payloads.webhook_body([entry]))


def _health(start_s: int, now_s: int) -> list[bytes]:
    """Health episodes of the simulated flows over the history."""
    lead, plans, booking = (flow.flow_id for flow in FLOWS)
    span = now_s - start_s
    at = [start_s + span * k // 10 for k in range(10)]

    def status(t: int, flow: str, old: str, new: str) -> bytes:
        return _flows_webhook(t, {"event": "FLOW_STATUS_CHANGE", "flow_id": flow, "old_status": old,
                                  "new_status": new, "message": f"Flow status changed from {old} to {new}."})

    def alert(t: int, flow: str, event: str, state: str, **figures: Any) -> bytes:
        return _flows_webhook(t, {"event": event, "flow_id": flow, "alert_state": state,
                                  "message": f"{event.replace('_', ' ').lower()} alert {state.lower()}", **figures})

    errors = [{"error_type": "TIMEOUT", "error_rate": 70.0, "error_count": 14},
              {"error_type": "INVALID_RESPONSE", "error_rate": 30.0, "error_count": 6}]
    return [
        status(at[0], plans, "DRAFT", "PUBLISHED"),
        status(at[0], lead, "DRAFT", "PUBLISHED"),
        status(at[0], booking, "DRAFT", "PUBLISHED"),
        alert(at[2], plans, "ENDPOINT_ERROR_RATE", "ACTIVATED", error_rate=12.5, threshold=10, errors=errors),
        alert(at[2] + 1_800, plans, "ENDPOINT_ERROR_RATE", "DEACTIVATED", error_rate=2.0, threshold=10),
        status(at[4], plans, "PUBLISHED", "THROTTLED"),
        status(at[4] + 7_200, plans, "THROTTLED", "PUBLISHED"),
        alert(at[6], plans, "ENDPOINT_LATENCY", "ACTIVATED", p50_latency=900, p90_latency=6_200,
              requests_count=41, threshold=5_000),
        alert(at[6] + 3_600, plans, "ENDPOINT_LATENCY", "DEACTIVATED", p50_latency=300, p90_latency=1_100,
              requests_count=120, threshold=5_000),
        status(now_s - 5_400, plans, "PUBLISHED", "THROTTLED"),
        alert(now_s - 3_600, booking, "CLIENT_ERROR_RATE", "ACTIVATED", error_rate=7.1, threshold=5,
              errors=[{"error_type": "INVALID_SCREEN_TRANSITION", "error_rate": 100, "error_count": 3}]),
    ]


def _unusable(now_s: int) -> bytes:
    """Status parts the receiver must reject with a reason: an unknown status value, a status without an id."""
    statuses = [
        {"id": f"wamid.HISTORY{n}", "status": "deleted", "timestamp": str(now_s - 600 * n),
         "recipient_id": "5511988880000"} for n in range(1, 4)
    ] + [{"status": "sent", "timestamp": str(now_s - 300), "recipient_id": "5511988880000"}]
    change = payloads.change(phone_number_id="990000000000009", display_phone_number="15550009999",
                             statuses=statuses)
    return payloads.encode(payloads.webhook_body([payloads.entry(waba_id=WABA_ID, changes=[change])]))
