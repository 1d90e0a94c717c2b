"""Simulated WhatsApp Cloud API traffic, signed like Meta's, plus the exact ground truth of what was sent.

The simulator plays Meta: a few businesses (two WABAs with one or two phone numbers each) send outbound
messages to a pool of users; some are Flow messages. Every message walks a realistic status path
(``sent → delivered → read``, ``sent → delivered``, ``sent``, ``sent → failed`` with a real error code,
or ``sent → read`` when the chat is open), and some Flow messages come back completed as an inbound
``nfm_reply`` message. Status updates that are due are batched into webhook POSTs (1 to ``max_batch``
updates, mostly one phone number per POST, sometimes several entries and changes), signed with
``X-Hub-Signature-256`` over exactly the bytes sent.

What stresses exactness, as Meta does: whole POSTs re-sent later (``duplicate_ratio``), single status
updates repeated in a later POST (``status_duplicate_ratio``), and one pair of a message's statuses
posted in swapped order (``reorder_ratio``: read before delivered, delivered before sent, ...).
Timestamps stay correct event times (strings of Unix seconds, strictly increasing along each path)
whatever order the updates are posted in.

Time: POST number ``seq`` is due ``seq / rate`` seconds after the start. Timestamps are
``start_time`` + the simulated event time, so they track the wall clock while the receiver keeps up.
In endless mode (``messages=0``) and with ``live_clock`` the event times come from the real clock
instead, so a live dashboard always shows recent data (the bytes are then no longer reproducible).
Once every message of a finite run exists, what is left (late reads, completions) is posted at once,
with event times compressed to "now", so a run never idles.

Ground truth (:class:`Truth`, written by ``--truth FILE``) counts **distinct** ``(wamid, status)``
pairs and distinct completions that were generated (:func:`generate`) or acknowledged with a 2xx
(:func:`run`); for a finished run with no undelivered POST both are the same::

    {
      "seed": 7, "start_time": 1767000000.0, "complete": true,
      "messages": 10000,                 # distinct outbound wamids
      "flow_messages": 4000,             # of which Flow messages (biz_opaque_callback_data flow_id=...)
      "statuses": {"sent": n, "delivered": n, "read": n, "failed": n},
      "delivered_or_read": n,            # messages with delivered or read (read implies delivered)
      "read_without_delivered": n,       # messages with read but no delivered status (chat open)
      "by_phone_number_id": {"<pnid>": {"sent": n, "delivered": n, "read": n, "failed": n}},
      "failed_by_error_code": {"131049": n, ...},
      "completions": n,                  # distinct nfm_reply messages
      "completions_by_phone_number_id": {"<pnid>": n},
      "flows": {"<flow_id>": {"name": "plan_picker", "messages": n, "sent": n, "delivered": n,
                              "read": n, "failed": n, "completions": n}},
      "phone_numbers": {"<pnid>": {"waba_id": "...", "display_phone_number": "..."}},
      "posts": {"unique": n, "sent_including_duplicates": n, "retries": n, "undelivered": n},
      "status_updates_sent_including_duplicates": n,
      "completions_sent_including_duplicates": n,
      "generated": {"reordered_messages": n, "duplicated_posts": n, "duplicated_status_updates": n}
    }

``posts.unique`` counts distinct bodies (a re-send has the bytes of its original; rarely, two POSTs
carry the same lone status update and are identical too). Every phone number id appears in
``by_phone_number_id`` and ``completions_by_phone_number_id``, every flow in ``flows``, and every
status key in each ``statuses``-like object, even when the count is 0.

CLI: ``flowscope simulate --url URL --rate 200 --messages 10000 --seed 1 --truth truth.json``; the app
secret comes from ``FLOWSCOPE_APP_SECRET`` (never printed). Exit status: 0 when every POST was
acknowledged (or an endless run was stopped), 1 when a POST could not be delivered before its
``--deadline``, 130 when a finite run was interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import heapq
import hmac
import itertools
import random
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import httpx
import orjson

from config.exceptions import SettingsError
from config.settings import Settings

DEFAULT_URL = "http://127.0.0.1:8000/webhooks/whatsapp"
SIGNATURE_HEADER = "X-Hub-Signature-256"
ERROR_HREF = "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"
STATUSES: tuple[str, ...] = ("sent", "delivered", "read", "failed")

# Status paths of messages that do not fail, with their weights.
_PATHS: tuple[tuple[tuple[str, ...], float], ...] = (
    (("sent", "delivered", "read"), 0.68),
    (("sent", "delivered"), 0.20),
    (("sent",), 0.12),
)
_READ_WITHOUT_DELIVERED: tuple[str, ...] = ("sent", "read")

# code → (weight, title, details). Flow-only codes are drawn for Flow messages only.
_ERRORS: dict[int, tuple[float, str, str]] = {
    131049: (
        30,
        "This message was not delivered to maintain healthy ecosystem engagement.",
        "In order to maintain a healthy ecosystem engagement, the message failed to be delivered.",
    ),
    131026: (20, "Message undeliverable", "Message Undeliverable."),
    131047: (
        12,
        "Re-engagement message",
        "Message failed to send because more than 24 hours have passed since the customer last replied to this number.",
    ),
    131048: (
        8,
        "Spam rate limit hit",
        "Message failed to send because there are restrictions on how many messages can be sent "
        "from this phone number.",
    ),
    131056: (
        6,
        "(Business Account, Consumer Account) pair rate limit hit",
        "Too many messages sent from the sender phone number to the same recipient phone number in a "
        "short period of time.",
    ),
    130429: (6, "Rate limit hit", "Cloud API message throughput has been reached."),
    131050: (
        6,
        "Unable to deliver the message. This recipient has chosen to stop receiving marketing "
        "messages on WhatsApp from your business.",
        "The user has stopped marketing messages from this business.",
    ),
    131000: (4, "Something went wrong", "Message failed to send due to an unknown error."),
    132069: (
        3,
        "Flow is in throttled state",
        "Flow is in throttled state and 10 messages using this flow were already sent in the last hour.",
    ),
    132068: (2, "Flow is in blocked state", "Flow is in blocked state."),
    130472: (
        2,
        "User's number is part of an experiment",
        "Failed to send message because this user's phone number is part of an experiment.",
    ),
}
_FLOW_ONLY_ERRORS = frozenset({132068, 132069})

# (category, pricing type, weight) of messages that are not Flows.
_CATEGORIES: tuple[tuple[str, str, float], ...] = (
    ("marketing", "regular", 0.45),
    ("utility", "regular", 0.28),
    ("authentication", "regular", 0.10),
    ("service", "free_customer_service", 0.15),
    ("marketing", "free_entry_point", 0.02),
)
_CAMPAIGNS = ("spring_sale", "cart_reminder", "order_update", "otp_login", "reactivation")

# Flow definitions: name → form fields of its response_json (personal data on purpose).
_FLOW_NAMES: tuple[str, ...] = ("plan_picker", "lead_capture", "nps_survey", "appointment_booking")
_FIRST_NAMES = tuple(
    "Ana Bruno Carla Diego Elisa Felipe Gabriela Hugo Isabela João Karina Lucas Mariana Nicolas Olivia Paulo "
    "Rafaela Tiago".split()
)
_LAST_NAMES = ("Silva", "Santos", "Oliveira", "Souza", "Lima", "Pereira", "Costa", "Almeida", "Ribeiro")


# --- configuration and results ----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SimulationConfig:
    """What to generate and how to send it. Ratios are probabilities in [0, 1]."""

    messages: int = 10_000  # outbound messages to simulate; 0 = endless
    rate: float = 200.0  # webhook POSTs per second (duplicates included)
    seed: int = 0
    traffic_seed: int | None = None  # seeds the messages apart from the businesses (None: from ``seed``)
    duplicate_ratio: float = 0.05  # share of POSTs re-sent later, byte for byte
    status_duplicate_ratio: float = 0.02  # share of status updates repeated in a later POST
    reorder_ratio: float = 0.05  # share of messages (2+ statuses) with one pair posted swapped
    flow_ratio: float = 0.4  # share of messages that are Flow messages
    completion_ratio: float = 0.35  # share of delivered/read Flow messages the user completes
    failure_ratio: float = 0.06  # share of messages that fail after sent
    read_without_delivered_ratio: float = 0.04  # share of messages read with no delivered status
    conversation_ratio: float = 0.3  # share of messages whose statuses carry a conversation object
    mixed_post_ratio: float = 0.15  # share of POSTs carrying updates of several phone numbers
    max_batch: int = 50  # most updates in one POST (Meta: up to 1000)
    recipients: int = 2_000  # size of the pool of users
    start_time: float | None = None  # Unix seconds of simulated time 0; None = when generated or run
    live_clock: bool = False  # event times from the real clock (always so in endless mode)
    concurrency: int = 32  # POSTs in flight at most
    deadline_s: float = 120.0  # longest one POST is retried, from its first attempt
    timeout_s: float = 10.0  # one attempt's timeout
    retry_initial_s: float = 0.2  # first retry backoff, doubled up to retry_max_s
    retry_max_s: float = 5.0

    def __post_init__(self) -> None:
        for name in (
            "duplicate_ratio",
            "status_duplicate_ratio",
            "reorder_ratio",
            "flow_ratio",
            "completion_ratio",
            "failure_ratio",
            "read_without_delivered_ratio",
            "conversation_ratio",
            "mixed_post_ratio",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")
        if self.failure_ratio + self.read_without_delivered_ratio > 1.0:
            raise ValueError("failure_ratio + read_without_delivered_ratio must not exceed 1")
        if self.messages < 0:
            raise ValueError(f"messages must be >= 0 (0 = endless), got {self.messages}")
        if not self.rate > 0:
            raise ValueError(f"rate must be > 0 POSTs per second, got {self.rate}")
        if not 1 <= self.max_batch <= 1000:
            raise ValueError(f"max_batch must be within [1, 1000], got {self.max_batch}")
        if self.recipients < 1 or self.concurrency < 1:
            raise ValueError("recipients and concurrency must be at least 1")
        if self.deadline_s < 0 or self.timeout_s <= 0 or self.retry_initial_s <= 0:
            raise ValueError("deadline_s must be >= 0, timeout_s and retry_initial_s > 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class Webhook:
    """One scheduled POST: the body (serialised once, so the signature covers exactly ``raw``)."""

    seq: int  # position in the send schedule
    at: float  # seconds after the start when it is due
    post_id: int  # a re-sent POST shares the post_id (and the bytes) of the original
    duplicate: bool  # True for a re-send of an earlier POST
    body: dict[str, Any]
    raw: bytes
    status_updates: int
    completions: int

    @property
    def digest(self) -> bytes:
        """Identity of the bytes: equal for a re-send (and for two POSTs that happen to be identical)."""
        return hashlib.blake2b(self.raw, digest_size=16).digest()

    def signature(self, app_secret: str) -> str:
        return sign(self.raw, app_secret)

    def headers(self, app_secret: str) -> dict[str, str]:
        return {"Content-Type": "application/json", SIGNATURE_HEADER: self.signature(app_secret)}


def sign(raw: bytes, app_secret: str) -> str:
    """``X-Hub-Signature-256`` value: ``sha256=`` + hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(app_secret.encode(), raw, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class PhoneNumber:
    phone_number_id: str
    waba_id: str
    display_phone_number: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowDefinition:
    flow_id: str
    name: str
    waba_id: str


@dataclass(slots=True, kw_only=True)
class GenerationStats:
    """What the generator did to stress exactness (counts of things emitted so far)."""

    messages: int = 0
    reordered_messages: int = 0
    duplicated_posts: int = 0
    duplicated_status_updates: int = 0


@dataclass(kw_only=True)
class Truth:
    """The ground truth of a simulation; see the module docstring for the JSON structure."""

    seed: int
    start_time: float
    complete: bool
    messages: int
    flow_messages: int
    statuses: dict[str, int]
    delivered_or_read: int
    read_without_delivered: int
    by_phone_number_id: dict[str, dict[str, int]]
    failed_by_error_code: dict[str, int]
    completions: int
    completions_by_phone_number_id: dict[str, int]
    flows: dict[str, dict[str, Any]]
    phone_numbers: dict[str, dict[str, str]]
    posts: dict[str, int]
    status_updates_sent_including_duplicates: int
    completions_sent_including_duplicates: int
    generated: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    def to_json(self) -> str:
        return orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()

    @classmethod
    def from_json(cls, text: str | bytes) -> Truth:
        return cls(**orjson.loads(text))


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


MAX_LATENCY_SAMPLES = 200_000


# --- the truth tally --------------------------------------------------------------------------------


@dataclass(slots=True)
class _MessageRecord:
    phone_number_id: str
    flow_id: str
    statuses: set[str] = field(default_factory=set)
    error_code: int | None = None


class _Tally:
    """Distinct (wamid, status) pairs and completions, by whatever path they are learnt."""

    def __init__(self, *, phone_numbers: list[PhoneNumber], flows: list[FlowDefinition]) -> None:
        self.phone_numbers = phone_numbers
        self.flows = flows
        self.messages: dict[str, _MessageRecord] = {}
        self.completions: dict[str, tuple[str, str]] = {}  # reply wamid → (pnid, flow message wamid)
        self.bodies: set[bytes] = set()  # digests of distinct POST bodies
        self.posts_including_duplicates = 0
        self.status_updates = 0
        self.completion_messages = 0

    def add_status(
        self, *, wamid: str, status: str, phone_number_id: str, flow_id: str, error_code: int | None
    ) -> None:
        record = self.messages.get(wamid)
        if record is None:
            record = self.messages[wamid] = _MessageRecord(phone_number_id, flow_id)
        record.statuses.add(status)
        if error_code is not None:
            record.error_code = error_code

    def add_completion(self, *, wamid: str, phone_number_id: str, flow_wamid: str) -> None:
        self.completions[wamid] = (phone_number_id, flow_wamid)

    def add_webhook(self, webhook: Webhook) -> None:
        """Learn from a body as a receiver would: statuses, completions, and the POST itself."""
        self.bodies.add(webhook.digest)
        self.posts_including_duplicates += 1
        self.status_updates += webhook.status_updates
        self.completion_messages += webhook.completions
        for entry in webhook.body["entry"]:
            for change in entry["changes"]:
                value = change["value"]
                pnid = value["metadata"]["phone_number_id"]
                for status in value.get("statuses", ()):
                    errors = status.get("errors")
                    self.add_status(
                        wamid=status["id"],
                        status=status["status"],
                        phone_number_id=pnid,
                        flow_id=flow_id_of(status.get("biz_opaque_callback_data", "")),
                        error_code=errors[0]["code"] if errors else None,
                    )
                for message in value.get("messages", ()):
                    self.add_completion(wamid=message["id"], phone_number_id=pnid, flow_wamid=message["context"]["id"])

    def truth(
        self, *, seed: int, start_time: float, complete: bool, retries: int, undelivered: int, stats: GenerationStats
    ) -> Truth:
        pnids = [p.phone_number_id for p in self.phone_numbers]
        statuses = dict.fromkeys(STATUSES, 0)
        by_pnid = {pnid: dict.fromkeys(STATUSES, 0) for pnid in pnids}
        by_code: dict[str, int] = {}
        flows: dict[str, dict[str, Any]] = {
            f.flow_id: {"name": f.name, "messages": 0, **dict.fromkeys(STATUSES, 0), "completions": 0}
            for f in self.flows
        }
        flow_messages = delivered_or_read = read_without_delivered = 0
        for record in self.messages.values():
            flow = flows.get(record.flow_id)
            if flow is not None:
                flow_messages += 1
                flow["messages"] += 1
            for status in record.statuses:
                statuses[status] += 1
                by_pnid.setdefault(record.phone_number_id, dict.fromkeys(STATUSES, 0))[status] += 1
                if flow is not None:
                    flow[status] += 1
            if "failed" in record.statuses and record.error_code is not None:
                code = str(record.error_code)
                by_code[code] = by_code.get(code, 0) + 1
            if "delivered" in record.statuses or "read" in record.statuses:
                delivered_or_read += 1
            if "read" in record.statuses and "delivered" not in record.statuses:
                read_without_delivered += 1
        completions_by_pnid = dict.fromkeys(pnids, 0)
        for pnid, flow_wamid in self.completions.values():
            completions_by_pnid[pnid] = completions_by_pnid.get(pnid, 0) + 1
            flow_record = self.messages.get(flow_wamid)
            if flow_record is not None and flow_record.flow_id in flows:
                flows[flow_record.flow_id]["completions"] += 1
        return Truth(
            seed=seed,
            start_time=start_time,
            complete=complete,
            messages=len(self.messages),
            flow_messages=flow_messages,
            statuses=statuses,
            delivered_or_read=delivered_or_read,
            read_without_delivered=read_without_delivered,
            by_phone_number_id=by_pnid,
            failed_by_error_code=dict(sorted(by_code.items())),
            completions=len(self.completions),
            completions_by_phone_number_id=completions_by_pnid,
            flows=flows,
            phone_numbers={
                p.phone_number_id: {"waba_id": p.waba_id, "display_phone_number": p.display_phone_number}
                for p in self.phone_numbers
            },
            posts={
                "unique": len(self.bodies),
                "sent_including_duplicates": self.posts_including_duplicates,
                "retries": retries,
                "undelivered": undelivered,
            },
            status_updates_sent_including_duplicates=self.status_updates,
            completions_sent_including_duplicates=self.completion_messages,
            generated={
                "reordered_messages": stats.reordered_messages,
                "duplicated_posts": stats.duplicated_posts,
                "duplicated_status_updates": stats.duplicated_status_updates,
            },
        )


def flow_id_of(callback_data: str) -> str:
    """The ``flow_id`` of a ``biz_opaque_callback_data`` such as ``flow_id=123;tok=ft_ab``, else ""."""
    for part in callback_data.split(";"):
        key, _, value = part.partition("=")
        if key.strip() == "flow_id":
            return value.strip()
    return ""


# --- the traffic model ------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Message:
    wamid: str
    lane: _Lane
    recipient: str
    contact_name: str
    path: tuple[str, ...]
    category: str
    pricing_type: str
    pricing_on: str  # the one of delivered/read that carries pricing ("" if neither)
    callback: str
    flow: FlowDefinition | None
    flow_token: str
    conversation_id: str
    error_code: int
    complete: bool  # the user completes the Flow (an nfm_reply follows the last status)
    swap_at: int  # path[swap_at] is posted after path[swap_at + 1]; -1 = in order
    last_ts: int = 0
    held: dict[str, Any] | None = None


@dataclass(slots=True, eq=False)
class _Lane:
    """One business phone number: its due updates and the updates it will post later."""

    phone: PhoneNumber
    flows: list[FlowDefinition]
    weight: float
    # (due seconds, tiebreak, message, step); step == len(path) is the completion
    pending: list[tuple[float, int, _Message, int]] = field(default_factory=list)
    # (release seq, tiebreak, created seq, is a duplicate copy, status update)
    deferred: list[tuple[int, int, int, bool, dict[str, Any]]] = field(default_factory=list)

    def busy(self) -> bool:
        return bool(self.pending or self.deferred)


@dataclass(slots=True)
class _Item:
    lane: _Lane
    status: dict[str, Any] | None = None
    completion: tuple[dict[str, Any], dict[str, Any]] | None = None  # (message, contact)


class TrafficGenerator:
    """Deterministic webhook schedule for a seed: iterate it for :class:`Webhook` objects in order.

    Lazy, with memory bounded by the messages in flight, so it also serves endless runs. ``clock``
    (seconds since the start) replaces simulated time with real time; ``record`` keeps every
    generated message so :meth:`truth` can report them (finite runs only).
    """

    def __init__(
        self, config: SimulationConfig, *, clock: Callable[[], float] | None = None, record: bool = False
    ) -> None:
        self.config = config
        self.start_time = float(config.start_time if config.start_time is not None else time.time())
        self._clock = clock
        self._rng = random.Random(config.seed)
        self._tie = itertools.count()
        self.stats = GenerationStats()
        self.phone_numbers: list[PhoneNumber] = []
        self.flows: list[FlowDefinition] = []
        self._lanes: list[_Lane] = []
        self._build_businesses()
        self._recipients = self._build_recipients()
        if config.traffic_seed is not None:
            # Same phone numbers, flows and users as every run with this ``seed``; new messages.
            self._rng = random.Random(f"traffic:{config.traffic_seed}")
        self._resend: list[tuple[int, int, Webhook]] = []  # (due seq, tiebreak, original)
        self._seq = 0
        self._post_ids = itertools.count()
        self._tally = _Tally(phone_numbers=self.phone_numbers, flows=self.flows) if record else None
        error_codes = list(_ERRORS)
        self._codes_any = error_codes
        self._weights_any = [_ERRORS[c][0] for c in error_codes]
        self._codes_plain = [c for c in error_codes if c not in _FLOW_ONLY_ERRORS]
        self._weights_plain = [_ERRORS[c][0] for c in self._codes_plain]

    # -- setup --

    def _digits(self, n: int) -> str:
        return str(self._rng.randrange(10 ** (n - 1), 10**n))

    def _build_businesses(self) -> None:
        rng = self._rng
        names = list(_FLOW_NAMES)
        rng.shuffle(names)
        for w in range(2):
            waba_id = "1" + self._digits(14)
            flows = [
                FlowDefinition(flow_id="1" + self._digits(15), name=names[2 * w + i], waba_id=waba_id)
                for i in range(rng.randint(1, 2))
            ]
            self.flows.extend(flows)
            for _ in range(rng.randint(1, 2)):
                phone = PhoneNumber(
                    phone_number_id="1" + self._digits(14),
                    waba_id=waba_id,
                    display_phone_number="1555" + self._digits(7),
                )
                self.phone_numbers.append(phone)
                self._lanes.append(_Lane(phone=phone, flows=flows, weight=rng.uniform(0.5, 1.5)))

    def _build_recipients(self) -> list[tuple[str, str]]:
        rng = self._rng
        numbers = rng.sample(range(10**8), self.config.recipients)
        return [("55119" + f"{n:08d}", f"{rng.choice(_FIRST_NAMES)} {rng.choice(_LAST_NAMES)}") for n in numbers]

    # -- public --

    @property
    def messages_created(self) -> int:
        return self.stats.messages

    def __iter__(self) -> Iterator[Webhook]:
        while (webhook := self.next_webhook()) is not None:
            yield webhook

    def next_webhook(self) -> Webhook | None:
        """The next POST of the schedule, or None when a finite run has sent everything."""
        seq = self._seq
        at = seq / self.config.rate
        now = self._clock() if self._clock is not None else at
        if self._resend and self._resend[0][0] <= seq:
            webhook = self._replay(heapq.heappop(self._resend)[2], seq, at)
        else:
            items = self._collect(seq, now)
            if items:
                webhook = self._post(items, seq, at)
            elif self._resend:
                webhook = self._replay(heapq.heappop(self._resend)[2], seq, at)
            else:
                return None
        self._seq += 1
        if self._tally is not None:
            self._tally.posts_including_duplicates += 1
            self._tally.bodies.add(webhook.digest)
            self._tally.status_updates += webhook.status_updates
            self._tally.completion_messages += webhook.completions
        return webhook

    def truth(self, *, retries: int = 0) -> Truth:
        """The truth of everything generated so far (needs ``record=True``)."""
        if self._tally is None:
            raise ValueError("truth() needs a TrafficGenerator made with record=True")
        return self._tally.truth(
            seed=self.config.seed,
            start_time=self.start_time,
            complete=True,
            retries=retries,
            undelivered=0,
            stats=self.stats,
        )

    # -- building POSTs --

    def _exhausted(self) -> bool:
        return 0 < self.config.messages <= self.stats.messages

    def _collect(self, seq: int, now: float) -> list[_Item]:
        rng = self._rng
        cfg = self.config
        batch = min(cfg.max_batch, 1 + int(rng.expovariate(1 / 7)))
        primary = rng.choices(self._lanes, weights=[lane.weight for lane in self._lanes])[0]
        lanes = [primary]
        if len(self._lanes) > 1 and rng.random() < cfg.mixed_post_ratio:
            lanes += [lane for lane in self._lanes if lane is not primary]
        items: list[_Item] = []
        for lane in lanes:
            while len(items) < batch and lane.deferred and lane.deferred[0][0] <= seq:
                items.append(self._release(lane, seq))
            while len(items) < batch and lane.pending and lane.pending[0][0] <= now:
                self._emit(lane, seq, now, items)
        while len(items) < batch and not self._exhausted():
            lane = rng.choices(lanes, weights=[lane.weight for lane in lanes])[0] if len(lanes) > 1 else primary
            self._new_message(lane, now)
            self._emit(lane, seq, now, items)
        if not items and self._exhausted():
            # Tail of a finite run: nothing is due any more; post what is left now.
            busy = [lane for lane in self._lanes if lane.busy()]
            if busy:
                lane = min(busy, key=lambda b: 0.0 if b.deferred else b.pending[0][0])
                while len(items) < batch and lane.deferred:
                    items.append(self._release(lane, seq))
                while len(items) < batch and lane.pending:
                    self._emit(lane, seq, now, items)
        return items

    def _release(self, lane: _Lane, seq: int) -> _Item:
        _, _, _, is_copy, status = heapq.heappop(lane.deferred)
        if not is_copy:
            self._maybe_duplicate(lane, seq, status)
        return _Item(lane, status=status)

    def _maybe_duplicate(self, lane: _Lane, seq: int, status: dict[str, Any]) -> None:
        if self._rng.random() < self.config.status_duplicate_ratio:
            release = seq + self._rng.randint(1, 30)
            heapq.heappush(lane.deferred, (release, next(self._tie), seq, True, status))
            self.stats.duplicated_status_updates += 1

    def _emit(self, lane: _Lane, seq: int, now: float, items: list[_Item]) -> None:
        """Pop the lane's earliest pending step: it happens now (or at its due time, if earlier)."""
        due, _, msg, step = heapq.heappop(lane.pending)
        event_time = min(due, now)
        ts = max(int(self.start_time + event_time), msg.last_ts + 1)
        msg.last_ts = ts
        if step == len(msg.path):
            items.append(_Item(lane, completion=self._completion(msg, ts)))
            return
        status_name = msg.path[step]
        status = self._status(msg, status_name, ts)
        if step == msg.swap_at:
            msg.held = status  # posted after the next status
        else:
            items.append(_Item(lane, status=status))
            self._maybe_duplicate(lane, seq, status)
            if msg.held is not None:
                release = seq + self._rng.randint(1, 8)
                heapq.heappush(lane.deferred, (release, next(self._tie), seq, False, msg.held))
                msg.held = None
        # Schedule the next step.
        nxt = step + 1
        if nxt < len(msg.path):
            delay = _delay(self._rng, status_name, msg.path[nxt])
        elif nxt == len(msg.path) and msg.complete:
            delay = 15.0 + min(self._rng.expovariate(1 / 60), 900.0)
        else:
            return
        heapq.heappush(lane.pending, (event_time + delay, next(self._tie), msg, nxt))

    def _post(self, items: list[_Item], seq: int, at: float) -> Webhook:
        # Group: one entry per WABA, one change per phone number for statuses, one per completion.
        entries: dict[str, list[dict[str, Any]]] = {}
        status_changes: dict[str, list[dict[str, Any]]] = {}
        n_status = n_completion = 0
        for item in items:
            phone = item.lane.phone
            changes = entries.setdefault(phone.waba_id, [])
            if item.status is not None:
                n_status += 1
                statuses = status_changes.get(phone.phone_number_id)
                if statuses is None:
                    statuses = status_changes[phone.phone_number_id] = []
                    changes.append(_change(phone, {"statuses": statuses}))
                statuses.append(item.status)
            elif item.completion is not None:
                n_completion += 1
                message, contact = item.completion
                changes.append(_change(phone, {"contacts": [contact], "messages": [message]}))
        body = {
            "object": "whatsapp_business_account",
            "entry": [{"id": waba_id, "changes": changes} for waba_id, changes in entries.items()],
        }
        webhook = Webhook(
            seq=seq,
            at=at,
            post_id=next(self._post_ids),
            duplicate=False,
            body=body,
            raw=orjson.dumps(body),
            status_updates=n_status,
            completions=n_completion,
        )
        if self._rng.random() < self.config.duplicate_ratio:
            heapq.heappush(self._resend, (seq + self._rng.randint(2, 50), next(self._tie), webhook))
            self.stats.duplicated_posts += 1
        return webhook

    @staticmethod
    def _replay(original: Webhook, seq: int, at: float) -> Webhook:
        return replace(original, seq=seq, at=at, duplicate=True)

    # -- the things Meta sends --

    def _wamid(self, user: str, *, inbound: bool) -> str:
        # Shaped like Meta's: base64 of a small protobuf holding the user's number and a hex id.
        hex_id = f"{self._rng.getrandbits(48):012X}{next(self._tie) & 0xFFFFFFFF:08X}"
        kind = b"\x12" if inbound else b"\x11"
        raw = (
            b"\x1c\x18"
            + bytes([len(user)])
            + user.encode()
            + b"\x15\x02\x00"
            + kind
            + b"\x18\x14"
            + hex_id.encode()
            + b"\x00"
        )
        return "wamid." + base64.b64encode(raw).decode()

    def _new_message(self, lane: _Lane, now: float) -> None:
        rng = self._rng
        cfg = self.config
        self.stats.messages += 1
        recipient, contact_name = rng.choice(self._recipients)
        flow: FlowDefinition | None = None
        flow_token = callback = ""
        if rng.random() < cfg.flow_ratio:
            flow = rng.choice(lane.flows)
            flow_token = f"ft_{rng.getrandbits(64):016x}"
            callback = f"flow_id={flow.flow_id};tok={flow_token}"
            if rng.random() < 0.6:  # template with a FLOW button
                category, pricing_type = rng.choice(("marketing", "utility")), "regular"
            else:  # interactive Flow message inside the customer service window
                category, pricing_type = "service", "free_customer_service"
        else:
            category, pricing_type, _ = rng.choices(_CATEGORIES, weights=[c[2] for c in _CATEGORIES])[0]
            if rng.random() < 0.4:
                callback = f"campaign={rng.choice(_CAMPAIGNS)}"
        draw = rng.random()
        error_code = 0
        if draw < cfg.failure_ratio:
            path: tuple[str, ...] = ("sent", "failed")
            codes, weights = (self._codes_any, self._weights_any) if flow else (self._codes_plain, self._weights_plain)
            error_code = rng.choices(codes, weights=weights)[0]
        elif draw < cfg.failure_ratio + cfg.read_without_delivered_ratio:
            path = _READ_WITHOUT_DELIVERED
        else:
            path = rng.choices([p for p, _ in _PATHS], weights=[w for _, w in _PATHS])[0]
        pricing_on = ""
        if "delivered" in path and "read" in path:
            pricing_on = "delivered" if rng.random() < 0.8 else "read"
        elif "delivered" in path:
            pricing_on = "delivered"
        elif "read" in path:
            pricing_on = "read"
        complete = flow is not None and path[-1] in ("delivered", "read") and rng.random() < cfg.completion_ratio
        swap_at = -1
        if len(path) >= 2 and rng.random() < cfg.reorder_ratio:
            swap_at = rng.randrange(len(path) - 1)
            self.stats.reordered_messages += 1
        conversation_id = f"{rng.getrandbits(128):032x}" if rng.random() < cfg.conversation_ratio else ""
        msg = _Message(
            wamid=self._wamid(recipient, inbound=False),
            lane=lane,
            recipient=recipient,
            contact_name=contact_name,
            path=path,
            category=category,
            pricing_type=pricing_type,
            pricing_on=pricing_on,
            callback=callback,
            flow=flow,
            flow_token=flow_token,
            conversation_id=conversation_id,
            error_code=error_code,
            complete=complete,
            swap_at=swap_at,
        )
        heapq.heappush(lane.pending, (now, next(self._tie), msg, 0))
        if self._tally is not None:
            for status in path:
                self._tally.add_status(
                    wamid=msg.wamid,
                    status=status,
                    phone_number_id=lane.phone.phone_number_id,
                    flow_id=flow.flow_id if flow else "",
                    error_code=error_code or None,
                )

    def _status(self, msg: _Message, status: str, ts: int) -> dict[str, Any]:
        out: dict[str, Any] = {"id": msg.wamid, "status": status, "timestamp": str(ts), "recipient_id": msg.recipient}
        priced = status == "sent" or status == msg.pricing_on
        if msg.conversation_id and priced:
            conversation: dict[str, Any] = {"id": msg.conversation_id}
            if status == "sent":
                conversation["expiration_timestamp"] = str(ts + 86_400)
            conversation["origin"] = {"type": msg.category}
            out["conversation"] = conversation
        if priced:
            out["pricing"] = {
                "billable": msg.pricing_type == "regular",
                "pricing_model": "PMP",
                "type": msg.pricing_type,
                "category": msg.category,
            }
        if msg.callback:
            out["biz_opaque_callback_data"] = msg.callback
        if status == "failed":
            _, title, details = _ERRORS[msg.error_code]
            out["errors"] = [
                {
                    "code": msg.error_code,
                    "title": title,
                    "message": title,
                    "error_data": {"details": details},
                    "href": ERROR_HREF,
                }
            ]
        return out

    def _completion(self, msg: _Message, ts: int) -> tuple[dict[str, Any], dict[str, Any]]:
        if msg.flow is None:  # pragma: no cover - only Flow messages are completed
            raise ValueError("completion of a message that is not a Flow")
        reply_id = self._wamid(msg.recipient, inbound=True)
        if self._tally is not None:
            self._tally.add_completion(
                wamid=reply_id, phone_number_id=msg.lane.phone.phone_number_id, flow_wamid=msg.wamid
            )
        response = {"flow_token": msg.flow_token, **_form_answers(self._rng, msg.flow.name, msg.contact_name)}
        message = {
            "context": {"from": msg.lane.phone.display_phone_number, "id": msg.wamid},
            "from": msg.recipient,
            "id": reply_id,
            "timestamp": str(ts),
            "type": "interactive",
            "interactive": {
                "type": "nfm_reply",
                "nfm_reply": {"name": "flow", "body": "Sent", "response_json": orjson.dumps(response).decode()},
            },
        }
        contact = {"profile": {"name": msg.contact_name}, "wa_id": msg.recipient}
        return message, contact


def _change(phone: PhoneNumber, content: dict[str, Any]) -> dict[str, Any]:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": phone.display_phone_number, "phone_number_id": phone.phone_number_id},
        **content,
    }
    return {"value": value, "field": "messages"}


def _delay(rng: random.Random, current: str, nxt: str) -> float:
    """Seconds between two statuses of one message."""
    if nxt == "delivered":
        return 0.5 + min(rng.expovariate(1 / 1.5), 30.0)
    if nxt == "read" and current == "delivered":
        return 1.0 + min(rng.expovariate(1 / 10), 300.0)
    if nxt == "read":  # chat open: read straight after sent
        return 1.0 + min(rng.expovariate(1 / 2), 30.0)
    return 0.5 + min(rng.expovariate(1 / 3), 60.0)  # failed


def _form_answers(rng: random.Random, flow_name: str, contact_name: str) -> dict[str, Any]:
    first, _, last = contact_name.partition(" ")
    email = f"{first.lower()}.{last.lower()}{rng.randint(1, 999)}@example.com".replace("ã", "a")
    if flow_name == "plan_picker":
        return {"plan": rng.choice(("basic", "pro", "enterprise")), "seats": rng.randint(1, 50), "email": email}
    if flow_name == "lead_capture":
        return {
            "full_name": contact_name,
            "email": email,
            "company": f"{last} Ltda",
            "interest": rng.choice(("pricing", "demo", "support")),
        }
    if flow_name == "nps_survey":
        return {"score": rng.randint(0, 10), "comment": rng.choice(("", "Great service", "Too slow")), "email": email}
    return {
        "date": f"2026-12-{rng.randint(1, 28):02d}",
        "slot": rng.choice(("morning", "afternoon")),
        "full_name": contact_name,
        "phone": "55119" + f"{rng.randrange(10**8):08d}",
    }


def iter_webhooks(config: SimulationConfig, *, clock: Callable[[], float] | None = None) -> Iterator[Webhook]:
    """The schedule, lazily (endless when ``config.messages == 0``)."""
    return iter(TrafficGenerator(config, clock=clock))


def generate(config: SimulationConfig) -> tuple[list[Webhook], Truth]:
    """Every POST of a finite run, in send order, and the truth (deterministic for seed + start_time).

    Without ``config.start_time`` the timestamps start at the current time; everything else is still
    the same for a seed.
    """
    if config.messages == 0:
        raise ValueError("generate() needs a finite run (messages > 0); use iter_webhooks() for endless")
    generator = TrafficGenerator(config, record=True)
    webhooks = list(generator)
    return webhooks, generator.truth()


# --- sending ----------------------------------------------------------------------------------------


class _Sender:
    def __init__(
        self,
        url: str,
        *,
        config: SimulationConfig,
        app_secret: str,
        client: httpx.AsyncClient,
        stop: asyncio.Event,
        tally: _Tally | None,
    ) -> None:
        self.url = url
        self.config = config
        self.app_secret = app_secret
        self.client = client
        self.stop = stop
        self.tally = tally
        self.acked = self.retries = self.failures = self.abandoned = self.status_updates = 0
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

    async def deliver(self, webhook: Webhook) -> None:
        loop = asyncio.get_running_loop()
        headers = webhook.headers(self.app_secret)
        first = loop.time()
        backoff = self.config.retry_initial_s
        while True:
            began = loop.time()
            try:
                response = await self.client.post(self.url, content=webhook.raw, headers=headers)
                ok = 200 <= response.status_code < 300
                kind = str(response.status_code)
            except httpx.HTTPError as exc:
                ok, kind = False, type(exc).__name__
            if ok:
                self._record_latency(loop.time() - began)
                self.acked += 1
                self.status_updates += webhook.status_updates
                if self.tally is not None:
                    self.tally.add_webhook(webhook)
                return
            self.answers[kind] = self.answers.get(kind, 0) + 1
            if self.stop.is_set():
                self.abandoned += 1
                return
            if loop.time() + backoff - first > self.config.deadline_s:
                self.failures += 1
                return
            self.retries += 1
            wait = backoff * random.uniform(0.8, 1.2)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), wait)
            if self.stop.is_set():
                self.abandoned += 1
                return
            backoff = min(backoff * 2, self.config.retry_max_s)


class _Progress:
    """One updating line on a TTY, else a line every few seconds."""

    def __init__(self, stream: TextIO, *, total_messages: int) -> None:
        self.stream = stream
        self.total = total_messages
        self.tty = stream.isatty()
        self.interval = 0.2 if self.tty else 5.0
        self._width = 0

    def line(self, sender: _Sender, generator: TrafficGenerator, elapsed: float) -> str:
        rate = sender.acked / elapsed if elapsed > 0 else 0.0
        messages = f"{generator.messages_created:,}" + (f"/{self.total:,}" if self.total else "")
        parts = [
            f"posts {sender.acked:,} acked",
            f"messages {messages}",
            f"statuses {sender.status_updates:,}",
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


def check_url(url: str) -> None:
    """Raise ValueError unless ``url`` is an absolute http(s) URL."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"invalid URL {url!r}: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"invalid URL {url!r}: expected http(s)://host[:port]/path")


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
    covers acknowledged POSTs only (None when endless).
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
    tally = None if endless else _Tally(phone_numbers=generator.phone_numbers, flows=generator.flows)
    limits = httpx.Limits(max_connections=config.concurrency, max_keepalive_connections=config.concurrency)
    reporter = _Progress(progress_stream or sys.stderr, total_messages=config.messages) if progress else None
    tasks: set[asyncio.Task[None]] = set()
    finished = False
    async with httpx.AsyncClient(timeout=config.timeout_s, limits=limits) as client:
        sender = _Sender(url, config=config, app_secret=app_secret, client=client, stop=stop, tally=tally)
        slots = asyncio.Semaphore(config.concurrency)

        async def deliver(webhook: Webhook) -> None:
            try:
                await sender.deliver(webhook)
            finally:
                slots.release()

        async def report() -> None:
            if reporter is None:
                return
            while True:
                await asyncio.sleep(reporter.interval)
                reporter.show(reporter.line(sender, generator, loop.time() - t0))

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
        reporter.show(reporter.line(sender, generator, elapsed), final=True)
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
        status_updates_acked=sender.status_updates,
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


# --- command line -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowscope simulate",
        description="Send simulated, signed WhatsApp Cloud API webhooks and write their ground truth. "
        "The app secret is read from FLOWSCOPE_APP_SECRET.",
    )
    defaults = SimulationConfig()
    parser.add_argument("--url", default=DEFAULT_URL, help="receiver URL (default: %(default)s)")
    parser.add_argument("--rate", type=float, default=defaults.rate, help="POSTs per second (default: %(default)s)")
    parser.add_argument(
        "--messages",
        type=int,
        default=defaults.messages,
        help="outbound messages to simulate; 0 = until stopped (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed (default: %(default)s)")
    parser.add_argument(
        "--duplicates",
        type=float,
        default=defaults.duplicate_ratio,
        help="share of POSTs re-sent later (default: %(default)s)",
    )
    parser.add_argument(
        "--status-duplicates",
        type=float,
        default=defaults.status_duplicate_ratio,
        help="share of status updates repeated in a later POST (default: %(default)s)",
    )
    parser.add_argument(
        "--reorder",
        type=float,
        default=defaults.reorder_ratio,
        help="share of messages with two statuses posted out of order (default: %(default)s)",
    )
    parser.add_argument(
        "--flow-ratio", type=float, default=defaults.flow_ratio, help="share of Flow messages (default: %(default)s)"
    )
    parser.add_argument(
        "--completion-ratio",
        type=float,
        default=defaults.completion_ratio,
        help="share of delivered Flow messages completed (default: %(default)s)",
    )
    parser.add_argument(
        "--failure-ratio",
        type=float,
        default=defaults.failure_ratio,
        help="share of messages that fail (default: %(default)s)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=defaults.concurrency, help="POSTs in flight at most (default: %(default)s)"
    )
    parser.add_argument(
        "--deadline",
        type=float,
        default=defaults.deadline_s,
        help="seconds one POST is retried before it counts as undelivered (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout", type=float, default=defaults.timeout_s, help="seconds one attempt may take (default: %(default)s)"
    )
    parser.add_argument(
        "--start-time", type=float, default=None, help="Unix seconds of the first timestamp (default: now)"
    )
    parser.add_argument(
        "--live-clock",
        action="store_true",
        help="timestamps from the real clock even in a finite run (bytes not reproducible)",
    )
    parser.add_argument("--truth", type=Path, default=None, help="write the ground truth JSON here")
    parser.add_argument("--no-progress", action="store_true", help="no progress output")
    return parser


async def _run_until_signalled(url: str, config: SimulationConfig, app_secret: str, progress: bool) -> SimulationResult:
    """``run`` with SIGINT/SIGTERM handled: the first stops cleanly, a second abandons what is in flight."""
    loop = asyncio.get_running_loop()
    stop, abort = asyncio.Event(), asyncio.Event()
    installed: list[signal.Signals] = []

    def on_signal() -> None:
        if stop.is_set():
            abort.set()
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_signal)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - not the main thread / Windows
            pass
    try:
        return await run(url, config=config, app_secret=app_secret, progress=progress, stop=stop, abort=abort)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        app_secret = Settings.from_env().app_secret
        check_url(args.url)
        config = SimulationConfig(
            messages=args.messages,
            rate=args.rate,
            seed=args.seed,
            duplicate_ratio=args.duplicates,
            status_duplicate_ratio=args.status_duplicates,
            reorder_ratio=args.reorder,
            flow_ratio=args.flow_ratio,
            completion_ratio=args.completion_ratio,
            failure_ratio=args.failure_ratio,
            concurrency=args.concurrency,
            deadline_s=args.deadline,
            timeout_s=args.timeout,
            start_time=args.start_time,
            live_clock=args.live_clock,
        )
    except (SettingsError, ValueError) as exc:
        sys.stderr.write(f"flowscope simulate: error: {exc}\n")
        return 2
    if args.truth is not None and config.messages == 0:
        sys.stderr.write("flowscope simulate: error: --truth needs a finite run (--messages > 0)\n")
        return 2
    try:
        result = asyncio.run(_run_until_signalled(args.url, config, app_secret, not args.no_progress))
    except KeyboardInterrupt:  # pragma: no cover - no signal handler could be installed
        return 130
    if result.truth is not None and args.truth is not None:
        args.truth.write_text(result.truth.to_json() + "\n")
    quantiles = result.latency_quantiles()
    latency = " ".join(f"{k} {v * 1000:.1f} ms" for k, v in quantiles.items()) or "none"
    answers = ", ".join(f"{k}: {v}" for k, v in result.answers.items()) or "none"
    sys.stderr.write(
        f"simulate: {result.acked:,} POSTs acknowledged in {result.elapsed_s:.1f} s, "
        f"{result.retries:,} retries, {result.failures:,} undelivered, {result.abandoned:,} abandoned; "
        f"latency {latency}; failed attempts: {answers}\n"
    )
    if result.failures:
        sys.stderr.write(f"flowscope simulate: {result.failures} POSTs were not delivered before the deadline\n")
        return 1
    if result.stopped and config.messages > 0:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
