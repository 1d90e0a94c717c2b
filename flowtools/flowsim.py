"""Simulated WhatsApp Flow sessions: three flows (one with conditional branches), two versions each,
written as Meta Flow JSON, walked by simulated users, sent as the real sources would send them —
``flow_sent`` and screen events to ``POST /events``, statuses and ``nfm_reply`` completions as signed
webhooks — with duplicates and shuffled order, plus the exact truth of funnels and screens.

Truth follows the definitions of ``warehouse/flows.py`` exactly (sessions = flow tokens; every
session of a finite run is older than the abandonment timeout when ``offset_s`` ≥ 1800).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from config.settings import Settings

ALLOWLIST = ("plan", "service", "slot")
CAMPAIGNS = ("spring_promo", "reactivation")


@dataclass(frozen=True)
class SimScreen:
    id: str
    title: str
    node_type: str
    drop: float  # chance a user leaves on this screen
    field: str = ""  # a selection field answered here
    options: tuple[str, ...] = ()
    next: tuple[str, ...] = ()  # one target, or one per option (branches)
    free_text: str = ""  # a personal field (never stored)

    @property
    def terminal(self) -> bool:
        return not self.next


@dataclass(frozen=True)
class SimFlow:
    flow_id: str
    name: str
    versions: dict[str, tuple[SimScreen, ...]]
    endpoint: bool = False  # uses data-endpoint events (INIT / data_exchange / BACK)
    back_ratio: float = 0.0


def _lead(drop_details: float) -> tuple[SimScreen, ...]:
    return (
        SimScreen("WELCOME", "Welcome", "buttons", 0.10, next=("DETAILS",)),
        SimScreen("DETAILS", "Your details", "form", drop_details, free_text="email", next=("CONFIRM",)),
        SimScreen("CONFIRM", "Confirm", "buttons", 0.05),
    )


def _plans(drop_pro: float) -> tuple[SimScreen, ...]:
    return (
        SimScreen("PLAN_SELECT", "Pick a plan", "list", 0.12, field="plan", options=("pro", "basic"),
                  next=("PRO_DETAILS", "BASIC_DETAILS")),
        SimScreen("PRO_DETAILS", "Pro seats", "form", drop_pro, field="seats", options=("5", "10", "25"),
                  next=("SUMMARY",)),
        SimScreen("BASIC_DETAILS", "Basic details", "form", 0.10, free_text="company", next=("SUMMARY",)),
        SimScreen("SUMMARY", "Summary", "logic", 0.04),
    )


def _booking(with_media: bool) -> tuple[SimScreen, ...]:
    screens = [
        SimScreen("SERVICE", "Choose a service", "list", 0.08, field="service", options=("cut", "colour", "spa"),
                  next=("DATE",)),
        SimScreen("DATE", "Pick a day", "form", 0.15, field="slot", options=("mon", "tue", "wed", "thu"),
                  next=("CONTACT",)),
        SimScreen("CONTACT", "Contact", "form", 0.12, free_text="name", next=("MEDIA" if with_media else "DONE",)),
    ]
    if with_media:
        screens.append(SimScreen("MEDIA", "Our salon", "media", 0.06, next=("DONE",)))
    screens.append(SimScreen("DONE", "Booked", "buttons", 0.02))
    return tuple(screens)


FLOWS: tuple[SimFlow, ...] = (
    SimFlow("1100000000000001", "lead_form", {"1": _lead(0.25), "2": _lead(0.12)}),
    SimFlow("1100000000000002", "plan_picker", {"1": _plans(0.30), "2": _plans(0.15)}, endpoint=True),
    SimFlow("1100000000000003", "booking", {"1": _booking(False), "2": _booking(True)}, back_ratio=0.12),
)


def flow_json(flow: SimFlow, version: str) -> dict[str, Any]:
    """The version's Flow JSON in Meta's format (routing_model for the endpoint flow)."""
    screens = []
    for screen in flow.versions[version]:
        children: list[dict[str, Any]] = []
        if screen.field:
            children.append({"type": "RadioButtonsGroup", "name": screen.field, "label": screen.title,
                             "required": True, "data-source": [{"id": o, "title": o} for o in screen.options]})
        if screen.free_text:
            children.append({"type": "TextInput", "name": screen.free_text, "label": screen.free_text})
        if screen.terminal:
            action: dict[str, Any] = {"name": "complete", "payload": {}}
        elif flow.endpoint:
            action = {"name": "data_exchange", "payload": {}}
        else:
            action = {"name": "navigate", "next": {"type": "screen", "name": screen.next[0]}, "payload": {}}
        children.append({"type": "Footer", "label": "Continue", "on-click-action": action})
        screens.append({"id": screen.id, "title": screen.title, "terminal": screen.terminal,
                        **({"success": True} if screen.terminal else {}),
                        "layout": {"type": "SingleColumnLayout",
                                   "children": [{"type": "Form", "name": "form", "children": children}]}})
    document: dict[str, Any] = {"version": "6.0", "screens": screens}
    if flow.endpoint:
        document["data_api_version"] = "3.0"
        document["routing_model"] = {s.id: list(dict.fromkeys(s.next)) for s in flow.versions[version]}
    return document


def write_flow_jsons(directory: Path) -> list[tuple[str, str, Path]]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for flow in FLOWS:
        for version in flow.versions:
            path = directory / f"{flow.name}_v{version}.json"
            path.write_bytes(orjson.dumps(flow_json(flow, version), option=orjson.OPT_INDENT_2))
            written.append((flow.flow_id, version, path))
    return written


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
    """The exact figures, per flow and version, by the definitions of warehouse/flows.py."""
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
        items += [("status", {"id": s.wamid, "status": st, "timestamp": str(ts), "recipient_id": "5511988880000"})
                  for st, ts in s.statuses.items()]
        if s.completed_s is not None:
            items.append(("completion", {
                "context": {"from": "15550009999", "id": s.wamid}, "from": "5511988880000",
                "id": f"wamid.R{s.token}", "timestamp": str(s.completed_s), "type": "interactive",
                "interactive": {"type": "nfm_reply", "nfm_reply": {"name": "flow", "body": "Sent",
                                "response_json": orjson.dumps({"flow_token": s.token, "email": "x@y.z"}).decode()}}}))
    rng.shuffle(items)  # any order: node events before sends, read before delivered, …
    posts: list[tuple[str, bytes]] = []
    metadata = {"display_phone_number": "15550009999", "phone_number_id": phone_number_id}
    for i in range(0, len(items), 60):
        chunk = items[i:i + 60]
        events = [body for kind, body in chunk if kind == "events"]
        statuses = [body for kind, body in chunk if kind == "status"]
        replies = [body for kind, body in chunk if kind == "completion"]
        if events:
            posts.append(("events", orjson.dumps(events)))
        if statuses or replies:
            value: dict[str, Any] = {"messaging_product": "whatsapp", "metadata": metadata}
            if statuses:
                value["statuses"] = statuses
            if replies:
                value["messages"] = replies
            posts.append(("webhook", orjson.dumps({"object": "whatsapp_business_account", "entry": [
                {"id": "880000000000009", "changes": [{"field": "messages", "value": value}]}]})))
    posts += [post for post in posts if rng.random() < duplicate_ratio]
    return posts


async def send(posts: list[tuple[str, bytes]], *, webhook_url: str, events_url: str, app_secret: str,
               events_token: str, concurrency: int = 32, deadline_s: float = 300) -> int:
    """POST everything, retrying any non-2xx or error until the deadline; returns how many never landed."""
    from ingest.signatures import sign

    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    for post in posts:
        queue.put_nowait(post)
    failed = 0
    deadline = time.monotonic() + deadline_s

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal failed
        while not queue.empty():
            kind, body = queue.get_nowait()
            if kind == "webhook":
                url, headers = webhook_url, {"X-Hub-Signature-256": sign(body, app_secret)}
            else:
                url, headers = events_url, {"Authorization": f"Bearer {events_token}"}
            headers["Content-Type"] = "application/json"
            delay = 0.2
            while True:
                try:
                    response = await client.post(url, content=body, headers=headers)
                    if response.status_code < 300:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    failed += 1
                    break
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async with httpx.AsyncClient(timeout=15) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return failed


def live_batches(seed: int, batch: int = 20) -> Iterator[list[tuple[str, bytes]]]:
    """Endless: every batch is sessions that started over the last few minutes (for ``flowscope up``)."""
    n = 0
    while True:
        start = int(time.time() * 1000) - 300_000
        sessions = generate_sessions(batch, seed=seed + n, start_ms=start, spacing_ms=300_000 // batch,
                                     prefix=f"live{int(time.time())}_")
        n += 1
        yield requests(sessions, seed=seed + n)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flowscope simulate-flows", description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="receiver base URL")
    parser.add_argument("--sessions", type=int, default=2000, help="0 = endless, live sessions")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--offset", type=float, default=7200, help="finite runs: sessions start this long ago (s)")
    parser.add_argument("--truth", type=Path)
    parser.add_argument("--write-flow-json", type=Path, help="write every version's Flow JSON here and exit")
    args = parser.parse_args(argv)
    if args.write_flow_json:
        for flow_id, version, path in write_flow_jsons(args.write_flow_json):
            print(f"{flow_id} v{version}: {path}")  # noqa: T201
        return 0
    settings = Settings.from_env()
    urls: dict[str, Any] = {"webhook_url": f"{args.url}/webhooks/whatsapp", "events_url": f"{args.url}/events",
            "app_secret": settings.app_secret, "events_token": settings.events_token}
    try:
        if args.sessions == 0:
            for posts in live_batches(args.seed):
                asyncio.run(send(posts, **urls))
                time.sleep(2)
        sessions = generate_sessions(args.sessions, seed=args.seed, start_ms=int((time.time() - args.offset) * 1000))
        posts = requests(sessions, seed=args.seed)
        print(f"posting {len(posts)} requests for {len(sessions)} sessions …", file=sys.stderr)  # noqa: T201
        failed = asyncio.run(send(posts, **urls))
    except KeyboardInterrupt:
        return 130
    if args.truth:
        args.truth.write_bytes(orjson.dumps(truth(sessions, timeout_s=settings.session_timeout_s, now_s=time.time()),
                                            option=orjson.OPT_INDENT_2))
    print(f"done: {len(posts) - failed} requests acknowledged, {failed} undelivered", file=sys.stderr)  # noqa: T201
    return 1 if failed else 0
