"""Simulated Flow sessions: users walking the simulated Flows, their POSTs as the real sources send them, the truth."""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from flowtools.simulator import payloads
from flowtools.simulator.flows import ALLOWLIST, FLOWS, SimFlow, SimScreen
from flowtools.simulator.sender import Backoff, Sender
from ingest.signatures import SIGNATURE_HEADER, sign

CAMPAIGNS = ("spring_promo", "reactivation")
WABA_ID = "880000000000009"
BUSINESS_NUMBER = "15550009999"  # display phone number of the business sending the Flows
USER_NUMBER = "5511988880000"  # the user in statuses and completions (the senders know no better)
POSTS_PER_CHUNK = 60  # items in one webhook POST and one events POST (at most)


@dataclass
class Session:
    flow: SimFlow
    version: str
    campaign: str
    token: str
    wamid: str
    sent_ms: int
    statuses: dict[str, int] = field(default_factory=dict)  # status → unix seconds
    events: list[dict[str, Any]] = field(default_factory=list)  # node / endpoint items
    answers: dict[str, dict[str, str]] = field(default_factory=dict)  # screen → allow-listed answers
    completed_s: int | None = None


def _walk(rng: random.Random, s: Session) -> None:
    screens = {screen.id: screen for screen in s.flow.versions[s.version]}
    current = s.flow.versions[s.version][0]
    t = s.sent_ms + 20_000
    previous: SimScreen | None = None
    common = {"flow_token": s.token, "flow_id": s.flow.flow_id, "flow_version": s.version}

    def emit(screen: SimScreen | None, action: str, at: int, data: dict[str, str] | None = None) -> None:
        if s.flow.endpoint:
            if action == "view" and screen is not None and screen is not s.flow.versions[s.version][0]:
                return  # endpoint flows only tell us of INIT, submits and backs
            item: dict[str, Any] = {"type": "endpoint", "timestamp": at / 1000, **common,
                                    "action": {"view": "INIT", "submit": "data_exchange", "back": "BACK"}[action]}
            if action != "view" and screen is not None:
                item["screen"] = screen.id
        else:
            item = {"type": "node", "screen": screen.id if screen else "", "action": action,
                    "node_type": screen.node_type if screen else "other", "timestamp": at / 1000, **common}
        if data:
            item["data"] = data
        s.events.append(item)

    emit(current, "view", t)
    while True:
        if rng.random() < current.drop:
            return
        if previous is not None and rng.random() < s.flow.back_ratio:
            t += rng.randint(2_000, 9_000)
            emit(current, "back", t)
            t += rng.randint(500, 1_500)
            emit(previous, "view", t)
            t += rng.randint(2_000, 9_000)
            emit(previous, "submit", t)
            t += rng.randint(300, 900)
            emit(current, "view", t)
        t += rng.randint(3_000, 60_000)
        data: dict[str, str] = {}
        if current.field:
            data[current.field] = rng.choice(current.options)
            s.answers[current.id] = {current.field: data[current.field]}
        if current.free_text:
            data[current.free_text] = f"user{rng.randint(1, 10**6)}@example.com"
        emit(current, "submit", t, data)
        if current.terminal:
            s.completed_s = t // 1000 + 2
            return
        target = current.next[current.options.index(data[current.field])] if len(current.next) > 1 else current.next[0]
        previous, current = current, screens[target]
        t += rng.randint(300, 1_200)
        emit(current, "view", t)


def generate_sessions(n: int, *, seed: int, start_ms: int, spacing_ms: int = 150, prefix: str = "") -> list[Session]:
    rng = random.Random(seed)
    sessions = []
    for i in range(n):
        flow = FLOWS[i % len(FLOWS)]
        version = rng.choice(list(flow.versions))
        s = Session(flow, version, rng.choice(CAMPAIGNS), f"ft_{prefix}{seed}_{i:07d}",
                    f"wamid.FS{prefix}{seed}x{i:07d}", start_ms + i * spacing_ms)
        sent_s = s.sent_ms // 1000
        s.statuses["sent"] = sent_s + 1
        if rng.random() < 0.05:
            s.statuses["failed"] = sent_s + 3
        else:
            if rng.random() < 0.92:
                s.statuses["delivered"] = sent_s + 4
            if rng.random() < 0.8:
                s.statuses["read"] = sent_s + 8
                if rng.random() < 0.03:  # static flow: the business sends no screen events
                    s.completed_s = sent_s + 90
                elif rng.random() < 0.85:
                    _walk(rng, s)
        sessions.append(s)
    return sessions


def truth(sessions: list[Session], *, timeout_s: int, now_s: float) -> dict[str, Any]:
    """The exact figures, per flow and version, by the definitions of warehouse/flows.py.

    Sessions are flow tokens; every session of a finite run is older than the abandonment timeout when
    the sessions started at least that long ago (``--offset`` ≥ 1800).
    """
    flows: dict[str, Any] = {}
    for s in sessions:
        version = flows.setdefault(s.flow.flow_id, {"name": s.flow.name, "versions": {}})["versions"].setdefault(
            s.version, {"funnel": _zero(), "by_campaign": {}, "screens": {
                screen.id: {"reached": 0, "dropped": 0, "completed_after": 0, "durations": []}
                for screen in s.flow.versions[s.version]}, "paths": {}, "selections": {}})
        completed = s.completed_s is not None
        failed = "failed" in s.statuses
        last = max([s.sent_ms / 1000, *(e["timestamp"] for e in s.events), *(
            [s.completed_s] if completed else []), *(s.statuses[k] for k in ("delivered", "read") if k in s.statuses)])
        abandoned = not completed and not failed and last < now_s - timeout_s
        flags = {"sent": True, "delivered": "delivered" in s.statuses or "read" in s.statuses,
                 "read": "read" in s.statuses, "opened": bool(s.events) or completed, "completed": completed,
                 "abandoned": abandoned, "failed": failed,
                 "ongoing": not completed and not failed and not abandoned}
        for target in (version["funnel"], version["by_campaign"].setdefault(s.campaign, _zero())):
            for key, on in flags.items():
                target[key] += int(on)
        visits = _visits(s)
        if not visits:
            continue
        screens = version["screens"]
        for screen in {v[0] for v in visits}:
            screens[screen]["reached"] += 1
            screens[screen]["completed_after"] += int(completed)
        if abandoned:
            screens[visits[-1][0]]["dropped"] += 1
        for k, (screen, start) in enumerate(visits):
            if k + 1 < len(visits):
                screens[screen]["durations"].append(visits[k + 1][1] - start)
            elif completed and s.completed_s is not None:
                screens[screen]["durations"].append(s.completed_s * 1000 - start)
        path = version["paths"].setdefault(">".join(v[0] for v in visits), {"completed": 0, "abandoned": 0})
        path["completed"] += int(completed)
        path["abandoned"] += int(abandoned)
        for screen, answers in s.answers.items():
            for name, value in answers.items():
                if name in ALLOWLIST:
                    chosen = version["selections"].setdefault(screen, {}).setdefault(name, {})
                    chosen[value] = chosen.get(value, 0) + 1
    for flow in flows.values():
        for version in flow["versions"].values():
            for figures in version["screens"].values():
                durations = sorted(figures.pop("durations"))
                n = len(durations)
                figures["visits"] = n
                figures["median_ms"] = durations[min(n // 2, n - 1)] if n else 0
                figures["p90_ms"] = durations[min(int(0.9 * n), n - 1)] if n else 0
    return {"sessions": len(sessions), "flows": flows}


def _visits(s: Session) -> list[tuple[str, int]]:
    """(screen, first event ms) per run of consecutive events on one screen, as the events tell it."""
    entry = s.flow.versions[s.version][0].id
    timeline = sorted({(round(e["timestamp"] * 1000), e.get("screen") or entry,
                        e["action"] if e["type"] == "node" else _ENDPOINT[e["action"]]) for e in s.events})
    visits: list[tuple[str, int]] = []
    for at, screen, _ in timeline:
        if not visits or visits[-1][0] != screen:
            visits.append((screen, at))
    return visits


_ENDPOINT = {"INIT": "view", "data_exchange": "submit", "BACK": "back"}


def _zero() -> dict[str, int]:
    return dict.fromkeys(("sent", "delivered", "read", "opened", "completed", "abandoned", "failed", "ongoing"), 0)


def requests(sessions: list[Session], *, seed: int, phone_number_id: str = "990000000000009",
             duplicate_ratio: float = 0.05) -> list[tuple[str, bytes]]:
    """("webhook" | "events", body) for every POST, shuffled, some sent twice (as Meta and retries do)."""
    rng = random.Random(seed + 1)
    items: list[tuple[str, Any]] = []
    for s in sessions:
        items.append(("events", {"type": "flow_sent", "wamid": s.wamid, "flow_id": s.flow.flow_id,
                                 "flow_version": s.version, "flow_token": s.token, "campaign": s.campaign,
                                 "phone_number_id": phone_number_id, "recipient": f"55119{rng.randint(0, 10**7):07d}",
                                 "timestamp": s.sent_ms / 1000}))
        items += [("events", e) for e in s.events]
        items += [("status", payloads.status(wamid=s.wamid, status=st, timestamp=ts, recipient_id=USER_NUMBER))
                  for st, ts in s.statuses.items()]
        if s.completed_s is not None:
            items.append(("completion", payloads.flow_reply(
                wamid=f"wamid.R{s.token}", user=USER_NUMBER, business_number=BUSINESS_NUMBER, flow_wamid=s.wamid,
                timestamp=s.completed_s, response={"flow_token": s.token, "email": "x@y.z"})))
    rng.shuffle(items)  # any order: node events before sends, read before delivered, …
    posts: list[tuple[str, bytes]] = []
    for i in range(0, len(items), POSTS_PER_CHUNK):
        chunk = items[i:i + POSTS_PER_CHUNK]
        events = [body for kind, body in chunk if kind == "events"]
        statuses = [body for kind, body in chunk if kind == "status"]
        replies = [body for kind, body in chunk if kind == "completion"]
        if events:
            posts.append(("events", orjson.dumps(events)))
        if statuses or replies:
            change = payloads.change(phone_number_id=phone_number_id, display_phone_number=BUSINESS_NUMBER,
                                     statuses=statuses or None, messages=replies or None)
            body = payloads.webhook_body([payloads.entry(waba_id=WABA_ID, changes=[change])])
            posts.append(("webhook", payloads.encode(body)))
    posts += [post for post in posts if rng.random() < duplicate_ratio]
    return posts


async def send(posts: list[tuple[str, bytes]], *, webhook_url: str, events_url: str, app_secret: str,
               events_token: str, concurrency: int = 32, deadline_s: float = 300) -> int:
    """POST everything, retrying any non-2xx or error until the deadline; returns how many never landed."""
    queue = deque(posts)
    async with httpx.AsyncClient(timeout=15) as client:
        sender = Sender(client, backoff=Backoff(initial_s=0.2, max_s=5.0), deadline_s=deadline_s)
        deadline = asyncio.get_running_loop().time() + deadline_s  # one deadline for the whole run

        async def worker() -> None:
            while queue:
                kind, body = queue.popleft()
                if kind == "webhook":
                    url, headers = webhook_url, {SIGNATURE_HEADER: sign(body, app_secret)}
                else:
                    url, headers = events_url, {"Authorization": f"Bearer {events_token}"}
                headers["Content-Type"] = "application/json"
                await sender.post(url, body, headers, deadline=deadline)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return sender.failures


def live_batches(seed: int, batch: int = 20) -> Iterator[list[tuple[str, bytes]]]:
    """Endless: every batch is sessions that started over the last few minutes (for ``flowscope up``)."""
    n = 0
    while True:
        start = int(time.time() * 1000) - 300_000
        sessions = generate_sessions(batch, seed=seed + n, start_ms=start, spacing_ms=300_000 // batch,
                                     prefix=f"live{int(time.time())}_")
        n += 1
        yield requests(sessions, seed=seed + n)
