"""The exact ground truth of a delivery simulation: what was generated or acknowledged, counted distinctly."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from flowtools.simulator.businesses import BusinessFlow, PhoneNumber
from flowtools.simulator.fixtures import STATUSES
from flowtools.simulator.payloads import Webhook


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
          "generated": {"reordered_messages": n, "duplicated_posts": n, "duplicated_status_updates": n}
        }

    ``posts.unique`` counts distinct bodies (a re-send has the bytes of its original; rarely, two POSTs
    carry the same lone status update and are identical too). Every phone number id appears in
    ``by_phone_number_id`` and ``completions_by_phone_number_id``, every flow in ``flows``, and every
    status key in each ``statuses``-like object, even when the count is 0.
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


class Tally:
    """Distinct (wamid, status) pairs and completions, by whatever path they are learnt."""

    def __init__(self, *, phone_numbers: list[PhoneNumber], flows: list[BusinessFlow]) -> None:
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

    def add_post(self, webhook: Webhook) -> None:
        """Count the POST itself: its bytes, and the updates it carries (duplicates included)."""
        self.bodies.add(webhook.digest)
        self.posts_including_duplicates += 1
        self.status_updates += webhook.status_updates
        self.completion_messages += webhook.completions

    def add_webhook(self, webhook: Webhook) -> None:
        """Learn from a body as a receiver would: statuses, completions, and the POST itself."""
        self.add_post(webhook)
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
