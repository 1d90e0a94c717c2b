"""Simulated Flow sessions: users walking the simulated Flows, their POSTs as the real sources send them, the truth.

Each session goes to one user of a pool (:mod:`flowtools.simulator.users`: countries, phone numbers shown always,
sometimes or never, BSUIDs, parent BSUIDs, identity changes); each Flow message has a per-message price (category
and type); some sessions are followed by the user's marketing opt-out (``user_preferences`` stop, sometimes a later
resume); a few POSTs are value-level errors. Everything the truth counts is drawn at generation, from a random
stream of its own, so the funnel and screen figures of a seed are what they were before these were added.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import orjson

from config.exceptions import RateCardError
from config.ratecard import RateCard
from flowtools.simulator import payloads, users
from flowtools.simulator.flows import ALLOWLIST, FLOWS, SimFlow, SimScreen
from flowtools.simulator.sender import Backoff, Sender
from flowtools.simulator.users import User
from ingest.signatures import SIGNATURE_HEADER, sign

CAMPAIGNS = ("spring_promo", "reactivation")
WABA_ID = "880000000000009"
BUSINESS_NUMBER = "15550009999"  # display phone number of the business sending the Flows
POSTS_PER_CHUNK = 60  # items in one webhook POST and one events POST (at most)
SESSIONS_PER_USER = 3  # the user pool has about sessions / 3 users
# (category, pricing type) of a Flow message, and its weight.
PRICINGS: tuple[tuple[str, str, float], ...] = (
    ("marketing", "regular", 0.50), ("utility", "regular", 0.25), ("service", "free_customer_service", 0.15),
    ("marketing", "free_entry_point", 0.10))
IDENTITY_CHANGE_SHARE = 0.03  # users who change number (or BSUID) between two of their statuses
OPT_OUT_RATIO = 0.05  # sessions followed by the user's marketing stop
RESUME_RATIO = 0.25  # stops followed by a resume
OPT_OUT_WINDOW_S = 48 * 3600  # an opt-out counts for a Flow message sent at most this long before it
OPT_OUT_MIN_DELAY_S = 60  # the earliest stop after the message's ``sent`` status
# Sessions followed by a value-level error webhook: about one POST in 500 (a session makes about 0.27 POST).
WEBHOOK_ERROR_RATIO = 1 / 1850
WEBHOOK_ERRORS: dict[int, tuple[str, str]] = {  # code → (title, details)
    131000: ("Something went wrong", "Message failed to send because of an unknown error. Try again later."),
    130472: ("User's number is part of an experiment", "Failed to send message because this user's phone number "
             "is part of an experiment."),
    368: ("Temporarily blocked for policies violations", "The account is restricted for violating a policy."),
}


@dataclass
class Session:
    flow: SimFlow
    version: str
    campaign: str
    token: str
    wamid: str
    sent_ms: int
    user: User
    statuses: dict[str, int] = field(default_factory=dict)  # status → unix seconds
    events: list[dict[str, Any]] = field(default_factory=list)  # node / endpoint items
    answers: dict[str, dict[str, str]] = field(default_factory=dict)  # screen → allow-listed answers
    completed_s: int | None = None
    category: str = "marketing"  # the Flow message's pricing.category
    pricing_type: str = "regular"  # its pricing.type
    preferences: list[tuple[int, str]] = field(default_factory=list)  # (unix seconds, stop | resume) that follow
    webhook_errors: list[tuple[int, int]] = field(default_factory=list)  # (code, unix seconds) of value errors

    @property
    def delivered(self) -> bool:
        """Delivered or read (read implies delivered): the message is charged when billable."""
        return "delivered" in self.statuses or "read" in self.statuses


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


def generate_sessions(n: int, *, seed: int, start_ms: int, spacing_ms: int = 150, prefix: str = "",
                      now_ms: int | None = None, opt_out_window_s: int = OPT_OUT_WINDOW_S,
                      opt_out_ratio: float = OPT_OUT_RATIO,
                      webhook_error_ratio: float = WEBHOOK_ERROR_RATIO) -> list[Session]:
    """``n`` sessions, one every ``spacing_ms`` from ``start_ms``. ``now_ms`` (default: the clock) bounds every
    preference's time: none is later than a second before it."""
    rng = random.Random(seed)
    people = random.Random(f"people:{prefix}{seed}")  # users, prices, opt-outs, errors: apart from ``rng``
    taken: set[str] = set()
    pool = users.pool(people, max(1, round(n / SESSIONS_PER_USER)), taken=taken, prefix=prefix)
    now_s = (int(time.time() * 1000) if now_ms is None else now_ms) // 1000
    error_times: set[tuple[int, int]] = set()
    sessions = []
    for i in range(n):
        flow = FLOWS[i % len(FLOWS)]
        version = rng.choice(list(flow.versions))
        s = Session(flow, version, rng.choice(CAMPAIGNS), f"ft_{prefix}{seed}_{i:07d}",
                    f"wamid.FS{prefix}{seed}x{i:07d}", start_ms + i * spacing_ms,
                    pool[people.randrange(len(pool))])
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
        s.category, s.pricing_type, _ = people.choices(PRICINGS, weights=[p[2] for p in PRICINGS])[0]
        if people.random() < opt_out_ratio:
            _opt_out(people, s, now_s, opt_out_window_s)
        if people.random() < webhook_error_ratio:
            code, at = people.choice(sorted(WEBHOOK_ERRORS)), s.statuses["sent"]
            while (code, at) in error_times:  # one error per code and second: the receiver's event id tells them apart
                at -= 1
            error_times.add((code, at))
            s.webhook_errors.append((code, at))
        sessions.append(s)
    _change_identities(people, sessions, taken)
    return sessions


def _opt_out(rng: random.Random, s: Session, now_s: int, window_s: int) -> None:
    """The user stops marketing messages between ``sent`` + 60 s and ``sent`` + 2 windows (never after now − 1 s);
    a quarter of them resume later (as long again at most)."""
    sent_s = s.statuses["sent"]
    low, high = sent_s + OPT_OUT_MIN_DELAY_S, min(sent_s + 2 * window_s, now_s - 1)
    if high < low:
        return  # too recent a message to be followed by anything yet
    stop = rng.randint(low, high)
    s.preferences.append((stop, "stop"))
    if rng.random() < RESUME_RATIO and stop < now_s - 1:
        s.preferences.append((rng.randint(stop + 1, min(stop + 2 * window_s, now_s - 1)), "resume"))


def _change_identities(rng: random.Random, sessions: list[Session], taken: set[str]) -> None:
    """About 3 % of the users with sessions change number (or BSUID, when Meta never shows their number) at a
    moment strictly between two of their statuses' seconds."""
    times: dict[int, set[int]] = {}
    owners: dict[int, User] = {}
    for s in sessions:
        times.setdefault(s.user.number, set()).update(s.statuses.values())
        owners[s.user.number] = s.user
    for number in sorted(times):
        if rng.random() >= IDENTITY_CHANGE_SHARE:
            continue
        moments = sorted(times[number])
        gaps = [(a, b) for a, b in zip(moments, moments[1:], strict=False) if b - a >= 2]
        if gaps:
            a, b = rng.choice(gaps)
            users.change_identity(rng, owners[number], rng.randint(a + 1, b - 1), taken=taken)


def truth(sessions: list[Session], *, timeout_s: int, now_s: float, rate_card: RateCard | None = None,
          opt_out_window_s: int = OPT_OUT_WINDOW_S) -> dict[str, Any]:
    """The exact figures, per flow and version, by the definitions of warehouse/flows.py.

    Sessions are flow tokens; every session of a finite run is older than the abandonment timeout when
    the sessions started at least that long ago (``--offset`` ≥ 1800). People, opt-outs, prices and errors:
    see :func:`_people`; ``spend`` and ``spend_by_country`` only with a ``rate_card``.
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
                figures["visits"] = len(durations)
                figures["median_ms"] = _quantile(durations, 0.5)
                figures["p90_ms"] = _quantile(durations, 0.9)
    return {"sessions": len(sessions), "flows": flows,
            **_people(flows, sessions, rate_card=rate_card, window_s=opt_out_window_s)}


def _people(flows: dict[str, Any], sessions: list[Session], *, rate_card: RateCard | None,
            window_s: int) -> dict[str, Any]:
    """Adds to every version and its campaigns: ``persons`` (distinct users sent one of its messages),
    ``opt_outs`` (distinct users with a stop at t, sent_s ≤ t < sent_s + window, for one of its messages, sent_s its
    ``sent`` status), ``billable_messages`` (regular and delivered or read), ``spend`` (the card's price of its
    delivered or read messages, str(Decimal)) and ``time_to_complete`` (completion s × 1000 − flow_sent ms: count,
    p50, p90). Returns the top-level figures: persons, spend_by_country, webhook_errors, opt_out_window_s."""
    stops: dict[int, list[int]] = {}
    errors: dict[str, int] = {}
    for s in sessions:
        stops.setdefault(s.user.number, []).extend(t for t, value in s.preferences if value == "stop")
        for code, _ in s.webhook_errors:
            errors[str(code)] = errors.get(str(code), 0) + 1
    groups: dict[tuple[str, str, str], list[Session]] = {}
    for s in sessions:
        groups.setdefault((s.flow.flow_id, s.version, ""), []).append(s)
        groups.setdefault((s.flow.flow_id, s.version, s.campaign), []).append(s)
    for (flow_id, version, campaign), group in groups.items():
        figures = flows[flow_id]["versions"][version]
        target = figures["by_campaign"][campaign] if campaign else figures
        persons = {s.user.number for s in group}
        opted = {s.user.number for s in group
                 if any(s.statuses["sent"] <= t < s.statuses["sent"] + window_s for t in stops[s.user.number])}
        durations = sorted(s.completed_s * 1000 - s.sent_ms for s in group if s.completed_s is not None)
        target |= {"persons": len(persons), "opt_outs": len(opted),
                   "billable_messages": sum(s.delivered and s.pricing_type == "regular" for s in group),
                   "time_to_complete": {"completions": len(durations), "p50_ms": _quantile(durations, 0.5),
                                        "p90_ms": _quantile(durations, 0.9)}}
        if rate_card is not None:
            target["spend"] = str(sum((_price(rate_card, s) for s in group if s.delivered), Decimal(0)))
    out: dict[str, Any] = {"persons": len({s.user.number for s in sessions}), "webhook_errors": dict(sorted(
        errors.items())), "opt_out_window_s": window_s}
    if rate_card is not None:
        by_country: dict[str, Decimal] = {}
        for s in sessions:
            if s.delivered:
                by_country[s.user.country] = by_country.get(s.user.country, Decimal(0)) + _price(rate_card, s)
        out["spend_by_country"] = {country: str(spend) for country, spend in sorted(by_country.items())}
    return out


def _price(card: RateCard, s: Session) -> Decimal:
    """What the session's Flow message costs by the card (the user's country, the UTC day of its ``sent``)."""
    day = datetime.fromtimestamp(s.statuses["sent"], UTC).date()
    price = card.price(country=s.user.country, category=s.category, pricing_type=s.pricing_type,
                       billable=int(s.pricing_type == "regular"), day=day)
    if price is None:
        raise RateCardError(f"rate card: no rate for {s.user.country}/{s.category}/{s.pricing_type} on {day}")
    return price


def _quantile(ordered: list[int], level: float) -> int:
    """The value at index floor(level × n) of the sorted values (ClickHouse's ``quantileExact``), 0 when none."""
    n = len(ordered)
    return ordered[min(int(level * n), n - 1)] if n else 0


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
    """("webhook" | "events", body) for every POST, shuffled, some sent twice (as Meta and retries do).

    Users are named as Meta names them (:mod:`flowtools.simulator.users`): whether a status, completion or
    preference shows a SOMETIMES user's number is a coin flipped per payload (once per message for a failed one, so
    a number named alone on ``failed`` is also named with the BSUID on ``sent``).
    """
    rng = random.Random(seed + 1)
    shown = random.Random(f"shown:{seed}")
    items: list[tuple[str, Any]] = []
    changed: dict[int, User] = {}
    for s in sessions:
        user = s.user
        addressed = user.at(s.sent_ms / 1000)
        items.append(("events", {"type": "flow_sent", "wamid": s.wamid, "flow_id": s.flow.flow_id,
                                 "flow_version": s.version, "flow_token": s.token, "campaign": s.campaign,
                                 "phone_number_id": phone_number_id, "recipient": addressed.phone or addressed.user_id,
                                 "timestamp": s.sent_ms / 1000}))
        items += [("events", e) for e in s.events]
        pricing = payloads.pricing(pricing_type=s.pricing_type, category=s.category)
        once = user.shown(shown) if "failed" in s.statuses else None
        items += [("status", users.status(user, shown=user.shown(shown) if once is None else once, wamid=s.wamid,
                                          status=st, timestamp=ts, pricing=None if st == "failed" else pricing))
                  for st, ts in s.statuses.items()]
        if s.completed_s is not None:
            visible, handle = user.shown(shown), user.at(s.completed_s)
            reply = payloads.flow_reply(
                wamid=f"wamid.R{s.token}", user=handle.phone if visible and handle.phone else None,
                user_id=handle.user_id, business_number=BUSINESS_NUMBER, flow_wamid=s.wamid,
                timestamp=s.completed_s, response={"flow_token": s.token, "email": "x@y.z"})
            items.append(("completion", (reply, users.contact(user, shown=visible, at_s=s.completed_s))))
        for at, value in s.preferences:
            visible = user.shown(shown)
            items.append(("preference", (users.preference(user, shown=visible, value=value, timestamp=at),
                                         users.contact(user, shown=visible, at_s=at))))
        if user.changed_at_s is not None:
            changed[user.number] = user
    items += [("system", users.change_message(user, wamid=f"wamid.SYS{seed}x{number:07d}"))
              for number, user in sorted(changed.items())]
    rng.shuffle(items)  # any order: node events before sends, read before delivered, …
    posts: list[tuple[str, bytes]] = []
    for i in range(0, len(items), POSTS_PER_CHUNK):
        chunk = items[i:i + POSTS_PER_CHUNK]
        events = [body for kind, body in chunk if kind == "events"]
        if events:
            posts.append(("events", orjson.dumps(events)))
        changes = _changes(chunk, phone_number_id)
        if changes:
            body = payloads.webhook_body([payloads.entry(waba_id=WABA_ID, changes=changes)])
            posts.append(("webhook", payloads.encode(body)))
    for s in sessions:
        for code, at in s.webhook_errors:
            title, details = WEBHOOK_ERRORS[code]
            change = payloads.change(phone_number_id=phone_number_id, display_phone_number=BUSINESS_NUMBER,
                                     errors=[payloads.error(code=code, title=title, details=details)])
            body = payloads.webhook_body([payloads.entry(waba_id=WABA_ID, changes=[change], time=at)])
            posts.insert(rng.randrange(len(posts) + 1), ("webhook", payloads.encode(body)))
    posts += [post for post in posts if rng.random() < duplicate_ratio]
    return posts


def _changes(chunk: list[tuple[str, Any]], phone_number_id: str) -> list[dict[str, Any]]:
    """A chunk's webhook changes: statuses and completions (with the completions' contacts), identity system
    messages (no contacts), marketing preferences (with their contacts)."""
    statuses = [body for kind, body in chunk if kind == "status"]
    replies = [body for kind, body in chunk if kind == "completion"]
    systems = [body for kind, body in chunk if kind == "system"]
    preferences = [body for kind, body in chunk if kind == "preference"]
    pnid, display = phone_number_id, BUSINESS_NUMBER
    changes = []
    if statuses or replies:
        changes.append(payloads.change(
            phone_number_id=pnid, display_phone_number=display, contacts=[c for _, c in replies] or None,
            statuses=statuses or None, messages=[reply for reply, _ in replies] or None))
    if systems:
        changes.append(payloads.change(phone_number_id=pnid, display_phone_number=display, messages=systems))
    if preferences:
        changes.append(payloads.preferences_change(
            phone_number_id=pnid, display_phone_number=display, contacts=[c for _, c in preferences],
            preferences=[preference for preference, _ in preferences]))
    return changes


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
