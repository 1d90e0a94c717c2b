"""The exact ground truth of a delivery simulation: what was generated or acknowledged, counted distinctly."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import orjson

from config.exceptions import RateCardError
from config.ratecard import FREE_PRICING_TYPES, RateCard
from flowtools.simulator.businesses import BusinessFlow, PhoneNumber
from flowtools.simulator.fixtures import OPT_OUT_WINDOW_S, STATUSES
from flowtools.simulator.payloads import Webhook
from ingest.identity import bsuid_country, identifier, phone_country

GROUP = "group"  # a status's recipient_type for a group message
STOP, MARKETING_MESSAGES = "stop", "marketing_messages"


@dataclass(slots=True, kw_only=True)
class GenerationStats:
    """What the generator did to stress exactness (counts of things emitted so far)."""

    messages: int = 0
    reordered_messages: int = 0
    duplicated_posts: int = 0
    duplicated_status_updates: int = 0


@dataclass(kw_only=True)
class Truth:
    """The ground truth of a simulation, as written by ``flowscope simulate --truth FILE``.

    It counts **distinct** ``(wamid, status)`` pairs and distinct completions that were generated
    (``generate``) or acknowledged with a 2xx (``run``); for a finished run with no undelivered POST both
    are the same::

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
          "generated": {"reordered_messages": n, "duplicated_posts": n, "duplicated_status_updates": n},
          "persons": n,                      # distinct users the messages went to (groups are not persons)
          "persons_by_phone_number_id": {"<pnid>": n},
          "messages_by_country": {"BR": n, "": n},  # distinct messages by recipient country ("": group messages)
          "billable_messages": n,            # delivered or read, pricing.billable true
          "free_messages": n,                # delivered or read, a free pricing.type
          "delivered_by_pricing": [{"country": "BR", "category": "marketing", "pricing_type": "regular",
                                    "billable": 1, "day": "2026-01-01", "messages": n}, ...],
          "spend": "12.3456",                # str(Decimal), null without a rate card
          "spend_by_country": {"BR": "1.25", "": "0.074"},  # null without a rate card
          "opt_outs": {"window_s": 172800, "persons_sent_flow_messages": n, "persons_opted_out": n},
          "opt_out_lags_s": [s, ...],        # per opted-out person: the least stop − sent (window-free)
          "webhook_errors": {"131000": n, "368": n, ...}
        }

    ``posts.unique`` counts distinct bodies (a re-send has the bytes of its original; rarely, two POSTs
    carry the same lone status update and are identical too). Every phone number id appears in
    ``by_phone_number_id``, ``completions_by_phone_number_id`` and ``persons_by_phone_number_id``, every flow in
    ``flows``, and every status key in each ``statuses``-like object, even when the count is 0.

    People, prices, opt-outs and errors (finite runs; from Meta's 2026 identity mix, section 10 of the webhook
    reference):

    - A *person* is a user: all the phone numbers, BSUIDs and parent BSUIDs naming one user are one person. Group
      messages (``recipient_type: "group"``) name no person. ``persons`` counts the distinct persons of all
      individual messages, ``persons_by_phone_number_id`` those of each business number's messages.
    - A message's *country* is its recipient's: the BSUID's prefix, else the phone number's calling code (as
      ``ingest.identity``); ``""`` for a group message. ``messages_by_country`` counts distinct messages (wamids).
    - *Delivered* means a delivered or a read status (read implies delivered). ``billable_messages`` and
      ``free_messages`` count delivered messages with ``pricing.billable`` true and with a free ``pricing.type``
      (``free_customer_service``, ``free_entry_point``); every message carries pricing, so they add up to
      ``delivered_or_read``. ``delivered_by_pricing`` counts the delivered messages by (country, category, type,
      billable 1/0, UTC day of the ``sent`` status), sorted: what ``spend`` is priced from.
    - ``spend``: the sum, over delivered messages, of ``rate_card.price(country, category, pricing_type, billable,
      day)``; ``spend_by_country`` the same per country. Group messages are priced too (when billable) with
      country ``""``, so at the card's ``*`` rate. Both are ``str(Decimal)``, and null when no card was given.
    - ``opt_outs``: ``persons_sent_flow_messages`` is the distinct persons sent a Flow message; ``persons_opted_out``
      those of them with a ``user_preferences`` stop (category ``marketing_messages``) at t, sent ≤ t <
      sent + ``window_s``, for at least one Flow message they were sent (sent: the Unix seconds of its ``sent``
      status). ``opt_out_lags_s`` holds, per person with a stop at or after one of their Flow messages' sent, the
      least such t − sent, so any window can be counted again (:meth:`evaluated`).
    - ``webhook_errors``: value-level errors (``value.errors[]``) by code, each distinct error once (its business
      account, phone number, time and code), however often its POST was sent.
    """

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
    # Added with the 2026 identity mix: defaults, so the truth of an older run still loads.
    persons: int = 0
    persons_by_phone_number_id: dict[str, int] = field(default_factory=dict)
    messages_by_country: dict[str, int] = field(default_factory=dict)
    billable_messages: int = 0
    free_messages: int = 0
    delivered_by_pricing: list[dict[str, Any]] = field(default_factory=list)
    spend: str | None = None
    spend_by_country: dict[str, str] | None = None
    opt_outs: dict[str, int] = field(default_factory=dict)
    opt_out_lags_s: list[int] = field(default_factory=list)
    webhook_errors: dict[str, int] = field(default_factory=dict)

    def evaluated(self, *, rate_card: RateCard | None, opt_out_window_s: int = OPT_OUT_WINDOW_S) -> Truth:
        """This truth with ``spend``, ``spend_by_country`` (priced by ``rate_card``; null without one) and
        ``opt_outs`` (counted for ``opt_out_window_s``) recomputed. Raises :class:`RateCardError` when the card has
        no rate for a delivered message that is not free."""
        if opt_out_window_s <= 0:
            raise ValueError(f"opt_out_window_s must be > 0, got {opt_out_window_s}")
        spend: str | None = None
        spend_by_country: dict[str, str] | None = None
        if rate_card is not None:
            total = Decimal(0)
            by_country: dict[str, Decimal] = {}
            for row in self.delivered_by_pricing:
                day = date.fromisoformat(row["day"])
                price = rate_card.price(country=row["country"], category=row["category"],
                                        pricing_type=row["pricing_type"], billable=row["billable"], day=day)
                if price is None:
                    raise RateCardError(f"rate card: no rate for {row['country'] or '*'}/{row['category']}/"
                                        f"{row['pricing_type']} on {day}")
                cost = price * row["messages"]
                total += cost
                by_country[row["country"]] = by_country.get(row["country"], Decimal(0)) + cost
            spend = str(total)
            spend_by_country = {country: str(value) for country, value in sorted(by_country.items())}
        opt_outs = {
            "window_s": opt_out_window_s,
            "persons_sent_flow_messages": self.opt_outs.get("persons_sent_flow_messages", 0),
            "persons_opted_out": sum(1 for lag in self.opt_out_lags_s if lag < opt_out_window_s),
        }
        return replace(self, spend=spend, spend_by_country=spend_by_country, opt_outs=opt_outs)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    def to_json(self) -> str:
        return orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()

    @classmethod
    def from_json(cls, text: str | bytes) -> Truth:
        return cls(**orjson.loads(text))


@dataclass(slots=True)
class _MessageRecord:
    phone_number_id: str
    flow_id: str
    statuses: set[str] = field(default_factory=set)
    error_code: int | None = None
    group: bool = False
    identifiers: set[str] = field(default_factory=set)  # phone numbers, BSUIDs, parent BSUIDs of the recipient
    country: str = ""
    category: str = ""
    pricing_type: str = ""
    billable: int = -1  # 1 true, 0 false, -1 not known
    sent_at: int | None = None  # Unix seconds of the sent status
    first_at: int | None = None  # the earliest status time known


class Tally:
    """Distinct (wamid, status) pairs and completions, by whatever path they are learnt, with who each message went
    to, its price, the users' marketing preferences and the value-level errors.

    Two paths: the generator tells it what it generated (``add_status``, ``add_recipient``, ``add_pricing``,
    ``add_time``, ``add_preference``, ``add_value_error``: the user's every identifier, so one user is one person),
    the runner lets it read acknowledged bodies (``add_webhook``: only what Meta showed, joined by the identifiers
    each payload names together). For a finished run the two give the same truth.
    """

    def __init__(self, *, phone_numbers: list[PhoneNumber], flows: list[BusinessFlow]) -> None:
        self.phone_numbers = phone_numbers
        self.flows = flows
        self.messages: dict[str, _MessageRecord] = {}
        self.completions: dict[str, tuple[str, str]] = {}  # reply wamid → (pnid, flow message wamid)
        self.bodies: set[bytes] = set()  # digests of distinct POST bodies
        self.posts_including_duplicates = 0
        self.status_updates = 0
        self.completion_messages = 0
        # (identifiers, value, category, Unix seconds) of user_preferences entries
        self.preferences: set[tuple[frozenset[str], str, str, int]] = set()
        self.value_errors: set[tuple[str, str, int, int]] = set()  # (waba id, pnid, Unix seconds, code)

    def add_status(
        self, *, wamid: str, status: str, phone_number_id: str, flow_id: str, error_code: int | None
    ) -> None:
        record = self._record(wamid, phone_number_id, flow_id)
        record.statuses.add(status)
        if error_code is not None:
            record.error_code = error_code

    def add_recipient(self, *, wamid: str, identifiers: Iterable[str], group: bool, country: str) -> None:
        """Who the message went to: identifiers of a user (none for a group), the recipient's country."""
        record = self.messages[wamid]
        record.identifiers.update(i for i in identifiers if i)
        record.group = record.group or group
        record.country = record.country or country

    def add_pricing(self, *, wamid: str, category: str, pricing_type: str, billable: int) -> None:
        record = self.messages[wamid]
        record.category, record.pricing_type, record.billable = category, pricing_type, billable

    def add_time(self, *, wamid: str, status: str, timestamp: int) -> None:
        """When one of the message's statuses happened (Unix seconds)."""
        record = self.messages[wamid]
        if status == "sent":
            record.sent_at = timestamp
        record.first_at = timestamp if record.first_at is None else min(record.first_at, timestamp)

    def add_completion(self, *, wamid: str, phone_number_id: str, flow_wamid: str) -> None:
        self.completions[wamid] = (phone_number_id, flow_wamid)

    def add_preference(self, *, identifiers: Iterable[str], value: str, category: str, timestamp: int) -> None:
        self.preferences.add((frozenset(i for i in identifiers if i), value, category, timestamp))

    def add_value_error(self, *, waba_id: str, phone_number_id: str, timestamp: int, code: int) -> None:
        self.value_errors.add((waba_id, phone_number_id, timestamp, code))

    def add_post(self, webhook: Webhook) -> None:
        """Count the POST itself: its bytes, and the updates it carries (duplicates included)."""
        self.bodies.add(webhook.digest)
        self.posts_including_duplicates += 1
        self.status_updates += webhook.status_updates
        self.completion_messages += webhook.completions

    def add_webhook(self, webhook: Webhook) -> None:
        """Learn from a body as a receiver would: statuses, completions, preferences, errors, the POST itself."""
        self.add_post(webhook)
        for entry in webhook.body["entry"]:
            for change in entry["changes"]:
                value = change["value"]
                pnid = value["metadata"]["phone_number_id"]
                for status in value.get("statuses", ()):
                    self._learn_status(status, pnid)
                for message in value.get("messages", ()):
                    self.add_completion(wamid=message["id"], phone_number_id=pnid, flow_wamid=message["context"]["id"])
                for preference in value.get("user_preferences", ()):
                    contact = _contact_of(value.get("contacts", ()), preference)
                    self.add_preference(
                        identifiers=_named(preference.get("wa_id") or contact.get("wa_id"),
                                           preference.get("user_id") or contact.get("user_id"),
                                           preference.get("parent_user_id") or contact.get("parent_user_id")),
                        value=preference["value"], category=preference["category"],
                        timestamp=int(preference["timestamp"]))
                for error in value.get("errors", ()):
                    self.add_value_error(waba_id=entry["id"], phone_number_id=pnid, timestamp=int(entry["time"]),
                                         code=int(error["code"]))

    def _record(self, wamid: str, phone_number_id: str, flow_id: str) -> _MessageRecord:
        record = self.messages.get(wamid)
        if record is None:
            record = self.messages[wamid] = _MessageRecord(phone_number_id, flow_id)
        return record

    def _learn_status(self, status: dict[str, Any], pnid: str) -> None:
        wamid = status["id"]
        errors = status.get("errors")
        self.add_status(
            wamid=wamid,
            status=status["status"],
            phone_number_id=pnid,
            flow_id=flow_id_of(status.get("biz_opaque_callback_data", "")),
            error_code=errors[0]["code"] if errors else None,
        )
        self.add_time(wamid=wamid, status=status["status"], timestamp=int(status["timestamp"]))
        if status.get("recipient_type") == GROUP:
            self.add_recipient(wamid=wamid, identifiers=(), group=True, country="")
        else:
            contacts = status.get("contacts") or [{}]
            phone = identifier(status.get("recipient_id")) or identifier(contacts[0].get("wa_id"))
            user_id = identifier(status.get("recipient_user_id")) or identifier(contacts[0].get("user_id"))
            parent = identifier(status.get("recipient_parent_user_id")) or identifier(contacts[0].get("parent_user_id"))
            self.add_recipient(wamid=wamid, identifiers=(phone, user_id, parent), group=False,
                               country=bsuid_country(user_id) or bsuid_country(parent) or phone_country(phone))
        pricing = status.get("pricing")
        if pricing is not None:
            billable = pricing.get("billable")
            self.add_pricing(wamid=wamid, category=pricing.get("category", ""), pricing_type=pricing.get("type", ""),
                             billable=int(billable) if isinstance(billable, bool) else -1)

    def truth(
        self, *, seed: int, start_time: float, complete: bool, retries: int, undelivered: int, stats: GenerationStats,
        rate_card: RateCard | None = None, opt_out_window_s: int = OPT_OUT_WINDOW_S,
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
        errors: dict[str, int] = {}
        for *_, error_code in self.value_errors:
            errors[str(error_code)] = errors.get(str(error_code), 0) + 1
        truth = Truth(
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
            webhook_errors=dict(sorted(errors.items())),
            **self._people(pnids, set(flows)),
            **self._prices(),
        )
        return truth.evaluated(rate_card=rate_card, opt_out_window_s=opt_out_window_s)

    def _people(self, pnids: list[str], flow_ids: set[str]) -> dict[str, Any]:
        """persons, persons_by_phone_number_id, messages_by_country, and the opt-outs' window-free part."""
        people = _People()
        for record in self.messages.values():
            people.join(record.identifiers)
        for identifiers, *_ in self.preferences:
            people.join(identifiers)
        persons: set[str] = set()
        by_pnid: dict[str, set[str]] = {pnid: set() for pnid in pnids}
        by_country: dict[str, int] = {}
        sends: dict[str, list[int]] = {}  # person → sent times of their Flow messages
        for record in self.messages.values():
            by_country[record.country] = by_country.get(record.country, 0) + 1
            if record.group or not record.identifiers:
                continue
            person = people.find(next(iter(record.identifiers)))
            persons.add(person)
            by_pnid.setdefault(record.phone_number_id, set()).add(person)
            if record.flow_id in flow_ids:
                times = sends.setdefault(person, [])
                if record.sent_at is not None:
                    times.append(record.sent_at)
        lags: dict[str, int] = {}
        for identifiers, value, category, at in self.preferences:
            if value != STOP or category != MARKETING_MESSAGES or not identifiers:
                continue
            person = people.find(next(iter(identifiers)))
            for sent in sends.get(person, ()):
                if at >= sent:
                    lags[person] = min(lags.get(person, at - sent), at - sent)
        return {
            "persons": len(persons),
            "persons_by_phone_number_id": {pnid: len(found) for pnid, found in by_pnid.items()},
            "messages_by_country": dict(sorted(by_country.items())),
            "opt_outs": {"persons_sent_flow_messages": len(sends)},
            "opt_out_lags_s": sorted(lags.values()),
        }

    def _prices(self) -> dict[str, Any]:
        """billable_messages, free_messages and delivered_by_pricing, of the delivered (or read) messages."""
        counts: dict[tuple[str, str, str, int, str], int] = {}
        billable = free = 0
        for record in self.messages.values():
            if "delivered" not in record.statuses and "read" not in record.statuses:
                continue
            billable += record.billable == 1
            free += record.pricing_type in FREE_PRICING_TYPES
            sent = record.sent_at if record.sent_at is not None else record.first_at
            day = datetime.fromtimestamp(sent, UTC).date().isoformat() if sent is not None else ""
            key = (record.country, record.category, record.pricing_type, record.billable, day)
            counts[key] = counts.get(key, 0) + 1
        rows = [{"country": country, "category": category, "pricing_type": kind, "billable": paid, "day": day,
                 "messages": n} for (country, category, kind, paid, day), n in sorted(counts.items())]
        return {"billable_messages": billable, "free_messages": free, "delivered_by_pricing": rows}


class _People:
    """Union-find over identifiers: the identifiers named together belong to one person."""

    def __init__(self) -> None:
        self._parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        parent = self._parent
        root = parent.setdefault(x, x)
        while root != parent[root]:
            root = parent[root]
        while x != root:
            parent[x], x = root, parent[x]
        return root

    def join(self, identifiers: Iterable[str]) -> None:
        it = iter(identifiers)
        first = next(it, None)
        if first is None:
            return
        root = self.find(first)
        for other in it:
            other_root = self.find(other)
            if other_root != root:
                self._parent[other_root] = root


def _named(*values: Any) -> tuple[str, ...]:
    return tuple(identifier(v) for v in values)


def _contact_of(contacts: Iterable[dict[str, Any]], preference: dict[str, Any]) -> dict[str, Any]:
    """The ``contacts[]`` entry of a preference's user (same wa_id or user_id), else an empty one."""
    for contact in contacts:
        if (preference.get("user_id") and contact.get("user_id") == preference.get("user_id")) or (
                preference.get("wa_id") and contact.get("wa_id") == preference.get("wa_id")):
            return contact
    return {}


def flow_id_of(callback_data: str) -> str:
    """The ``flow_id`` of a ``biz_opaque_callback_data`` such as ``flow_id=123;tok=ft_ab``, else ""."""
    for part in callback_data.split(";"):
        key, _, value = part.partition("=")
        if key.strip() == "flow_id":
            return value.strip()
    return ""
