"""TrafficGenerator: the deterministic schedule of signed-to-be webhook POSTs Meta would send for a seed."""

from __future__ import annotations

import heapq
import itertools
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from config.ratecard import RateCard
from flowtools.simulator import payloads, users
from flowtools.simulator.businesses import BusinessFlow, PhoneNumber
from flowtools.simulator.config import SimulationConfig
from flowtools.simulator.fixtures import (
    CAMPAIGNS,
    CATEGORIES,
    ERRORS,
    FAILED_PATH,
    FLOW_NAMES,
    FLOW_ONLY_ERRORS,
    MAX_PENDING_PREFERENCES,
    OPT_OUT_WINDOW_S,
    READ_WITHOUT_DELIVERED,
    STATUS_PATHS,
    VALUE_ERRORS,
    Group,
    Recipient,
    audience,
    completion_delay,
    form_answers,
    preference_times,
    status_delay,
)
from flowtools.simulator.payloads import Webhook
from flowtools.simulator.truth import MARKETING_MESSAGES, GenerationStats, Tally, Truth


@dataclass(slots=True, eq=False)
class _Message:
    wamid: str
    lane: _Lane
    recipient: Recipient | None  # None for a group message
    group: Group | None
    participant: str  # a group message: the member its statuses name
    shown: bool | None  # whether its statuses show the phone number: decided once for a failed message, else per status
    path: tuple[str, ...]
    category: str
    pricing_type: str
    pricing_on: str  # the one of delivered/read that carries pricing ("" if neither)
    callback: str
    flow: BusinessFlow | None
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
    flows: list[BusinessFlow]
    weight: float
    # (due seconds, tiebreak, message, step); step == len(path) is the completion
    pending: list[tuple[float, int, _Message, int]] = field(default_factory=list)
    # (release seq, tiebreak, created seq, is a duplicate copy, status update)
    deferred: list[tuple[int, int, int, bool, dict[str, Any]]] = field(default_factory=list)
    # (due seconds, tiebreak, user, "stop" | "resume"): marketing preferences, posted once due (never compressed)
    preferences: list[tuple[float, int, Recipient, str]] = field(default_factory=list)
    last_error_ts: int = 0  # Unix seconds of its last value-level error (each one at a later second)

    def busy(self) -> bool:
        return bool(self.pending or self.deferred)

    def preference_due(self, now: float) -> bool:
        return bool(self.preferences) and self.preferences[0][0] <= now


@dataclass(slots=True)
class _Item:
    lane: _Lane
    status: dict[str, Any] | None = None
    completion: tuple[dict[str, Any], dict[str, Any]] | None = None  # (message, contact)
    preference: tuple[dict[str, Any], dict[str, Any]] | None = None  # (user_preferences entry, contact)


class TrafficGenerator:
    """Deterministic webhook schedule for a seed: iterate it for :class:`Webhook` objects in order.

    The generator plays Meta: a few businesses (two WABAs with one or two phone numbers each) send
    outbound messages to a pool of users; some are Flow messages. Every message walks a realistic status
    path (``sent → delivered → read``, ``sent → delivered``, ``sent``, ``sent → failed`` with a real error
    code, or ``sent → read`` when the chat is open), and some Flow messages come back completed as an
    inbound ``nfm_reply`` message. Status updates that are due are batched into webhook POSTs (1 to
    ``max_batch`` updates, mostly one phone number per POST, sometimes several entries and changes).

    Recipients are named as Meta names them since 2026 (:func:`flowtools.simulator.fixtures.audience`); a few
    messages that are not Flows go to a WhatsApp group (``group_ratio``); every message carries per-message pricing
    (``fixtures.CATEGORIES``: every type). Some Flow messages' recipients later stop marketing messages
    (``opt_out_ratio``; ``user_preferences``, some resumed later), each posted once its time has come, never later
    than the POST carrying it (those due after the end of a finite run never happen). About one POST in 500
    (``webhook_error_ratio``) carries only a value-level error (``value.errors[]``).

    What stresses exactness, as Meta does: whole POSTs re-sent later (``duplicate_ratio``), single status
    updates repeated in a later POST (``status_duplicate_ratio``), and one pair of a message's statuses
    posted in swapped order (``reorder_ratio``: read before delivered, delivered before sent, ...).
    Timestamps stay correct event times (strings of Unix seconds, strictly increasing along each path)
    whatever order the updates are posted in.

    Time: POST number ``seq`` is due ``seq / rate`` seconds after the start. Timestamps are ``start_time``
    + the simulated event time. ``clock`` (seconds since the start) replaces simulated time with real time
    (endless and live-clock runs; the bytes are then no longer reproducible). Once every message of a
    finite run exists, what is left (late reads, completions) is posted at once, with event times
    compressed to "now", so a run never idles.

    Lazy, with memory bounded by the messages in flight, so it also serves endless runs. ``record`` keeps
    every generated message so :meth:`truth` can report them (finite runs only).
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
        self.flows: list[BusinessFlow] = []
        self._lanes: list[_Lane] = []
        self._build_businesses()
        self._recipients, self._groups = audience(self._rng, config.recipients)
        self._pending_preferences = 0
        if config.traffic_seed is not None:
            # Same phone numbers, flows and users as every run with this ``seed``; new messages.
            self._rng = random.Random(f"traffic:{config.traffic_seed}")
        self._resend: list[tuple[int, int, Webhook]] = []  # (due seq, tiebreak, original)
        self._seq = 0
        self._post_ids = itertools.count()
        self._tally = Tally(phone_numbers=self.phone_numbers, flows=self.flows) if record else None

    # -- setup --

    def _digits(self, n: int) -> str:
        return str(self._rng.randrange(10 ** (n - 1), 10**n))

    def _build_businesses(self) -> None:
        rng = self._rng
        names = list(FLOW_NAMES)
        rng.shuffle(names)
        for w in range(2):
            waba_id = "1" + self._digits(14)
            flows = [BusinessFlow(flow_id="1" + self._digits(15), name=names[2 * w + i], waba_id=waba_id)
                     for i in range(rng.randint(1, 2))]
            self.flows.extend(flows)
            for _ in range(rng.randint(1, 2)):
                phone = PhoneNumber(phone_number_id="1" + self._digits(14), waba_id=waba_id,
                                    display_phone_number="1555" + self._digits(7))
                self.phone_numbers.append(phone)
                self._lanes.append(_Lane(phone=phone, flows=flows, weight=rng.uniform(0.5, 1.5)))

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
        elif self._rng.random() < self.config.webhook_error_ratio and (
                not self._exhausted() or any(lane.busy() for lane in self._lanes)):
            webhook = self._value_error(seq, at, now)
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
            self._tally.add_post(webhook)
        return webhook

    def truth(self, *, retries: int = 0, rate_card: RateCard | None = None,
              opt_out_window_s: int = OPT_OUT_WINDOW_S) -> Truth:
        """The truth of everything generated so far (needs ``record=True``); ``spend`` priced by ``rate_card``."""
        if self._tally is None:
            raise ValueError("truth() needs a TrafficGenerator made with record=True")
        return self._tally.truth(seed=self.config.seed, start_time=self.start_time, complete=True, retries=retries,
                                 undelivered=0, stats=self.stats, rate_card=rate_card,
                                 opt_out_window_s=opt_out_window_s)

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
            while len(items) < batch and lane.preference_due(now):
                items.append(self._preference(lane))
        while len(items) < batch and not self._exhausted():
            lane = rng.choices(lanes, weights=[lane.weight for lane in lanes])[0] if len(lanes) > 1 else primary
            self._new_message(lane, now)
            self._emit(lane, seq, now, items)
        if not items and self._exhausted():
            # Tail of a finite run: nothing is due any more; post what is left now (preferences only once due:
            # those due later never happen within the run).
            busy = [lane for lane in self._lanes if lane.busy() or lane.preference_due(now)]
            if busy:
                lane = min(busy, key=lambda b: 0.0 if b.deferred or b.preference_due(now) else b.pending[0][0])
                while len(items) < batch and lane.deferred:
                    items.append(self._release(lane, seq))
                while len(items) < batch and lane.pending:
                    self._emit(lane, seq, now, items)
                while len(items) < batch and lane.preference_due(now):
                    items.append(self._preference(lane))
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
        if step == 0 and self._tally is not None:
            self._tally.add_time(wamid=msg.wamid, status=status_name, timestamp=ts)
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
            delay = status_delay(self._rng, status_name, msg.path[nxt])
        elif nxt == len(msg.path) and msg.complete:
            delay = completion_delay(self._rng)
        else:
            return
        heapq.heappush(lane.pending, (event_time + delay, next(self._tie), msg, nxt))

    def _post(self, items: list[_Item], seq: int, at: float) -> Webhook:
        # One entry per WABA; per phone number one change of statuses and one of preferences; one per completion.
        parts: dict[str, list[tuple[PhoneNumber, list[Any] | None, _Item]]] = {}
        lists: dict[tuple[str, bool], list[Any]] = {}
        for item in items:
            phone = item.lane.phone
            waba_parts = parts.setdefault(phone.waba_id, [])
            if item.completion is not None:
                waba_parts.append((phone, None, item))
                continue
            key = (phone.phone_number_id, item.status is not None)
            if key not in lists:
                waba_parts.append((phone, lists.setdefault(key, []), item))
            lists[key].append(item.status if item.status is not None else item.preference)
        body = payloads.webhook_body(payloads.entry(waba_id=waba_id, changes=[
            _change(phone, found, item) for phone, found, item in part]) for waba_id, part in parts.items())
        return self._webhook(body, seq, at, status_updates=sum(item.status is not None for item in items),
                             completions=sum(item.completion is not None for item in items))

    def _value_error(self, seq: int, at: float, now: float) -> Webhook:
        """A POST carrying only a value-level error of one phone number (each at a later second than the last)."""
        rng = self._rng
        lane = rng.choices(self._lanes, weights=[lane.weight for lane in self._lanes])[0]
        code = rng.choice(sorted(VALUE_ERRORS))
        title, details = VALUE_ERRORS[code]
        ts = lane.last_error_ts = max(int(self.start_time + now), lane.last_error_ts + 1)
        phone = lane.phone
        if self._tally is not None:
            self._tally.add_value_error(waba_id=phone.waba_id, phone_number_id=phone.phone_number_id, timestamp=ts,
                                        code=code)
        change = payloads.change(phone_number_id=phone.phone_number_id, display_phone_number=phone.display_phone_number,
                                 errors=[payloads.error(code=code, title=title, details=details)])
        return self._webhook(payloads.webhook_body([payloads.entry(waba_id=phone.waba_id, changes=[change], time=ts)]),
                             seq, at, status_updates=0, completions=0)

    def _webhook(self, body: dict[str, Any], seq: int, at: float, *, status_updates: int, completions: int) -> Webhook:
        webhook = Webhook(seq=seq, at=at, post_id=next(self._post_ids), duplicate=False, body=body,
                          raw=payloads.encode(body), status_updates=status_updates, completions=completions)
        if self._rng.random() < self.config.duplicate_ratio:
            heapq.heappush(self._resend, (seq + self._rng.randint(2, 50), next(self._tie), webhook))
            self.stats.duplicated_posts += 1
        return webhook

    @staticmethod
    def _replay(original: Webhook, seq: int, at: float) -> Webhook:
        return replace(original, seq=seq, at=at, duplicate=True)

    # -- the things Meta sends --

    def _wamid(self, user: str, *, inbound: bool) -> str:
        hex_id = f"{self._rng.getrandbits(48):012X}{next(self._tie) & 0xFFFFFFFF:08X}"
        return payloads.wamid(user, hex_id, inbound=inbound)

    def _new_message(self, lane: _Lane, now: float) -> None:
        rng = self._rng
        cfg = self.config
        self.stats.messages += 1
        recipient: Recipient | None = rng.choice(self._recipients)
        group: Group | None = None
        participant = ""
        flow: BusinessFlow | None = None
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
            category, pricing_type, _ = rng.choices(CATEGORIES, weights=[c[2] for c in CATEGORIES])[0]
            if rng.random() < 0.4:
                callback = f"campaign={rng.choice(CAMPAIGNS)}"
            if rng.random() < cfg.group_ratio:
                recipient, group = None, rng.choice(self._groups)
                participant = rng.choice(group.members) if group.members else ""
        draw = rng.random()
        error_code = 0
        if draw < cfg.failure_ratio:
            path: tuple[str, ...] = FAILED_PATH
            codes = [code for code in ERRORS if flow or code not in FLOW_ONLY_ERRORS]
            error_code = rng.choices(codes, weights=[ERRORS[code][0] for code in codes])[0]
        elif draw < cfg.failure_ratio + cfg.read_without_delivered_ratio:
            path = READ_WITHOUT_DELIVERED
        else:
            path = rng.choices([p for p, _ in STATUS_PATHS], weights=[w for _, w in STATUS_PATHS])[0]
        pricing_on = "delivered" if "delivered" in path else "read" if "read" in path else ""
        if pricing_on == "delivered" and "read" in path and rng.random() >= 0.8:
            pricing_on = "read"
        complete = flow is not None and path[-1] in ("delivered", "read") and rng.random() < cfg.completion_ratio
        swap_at = -1
        if len(path) >= 2 and rng.random() < cfg.reorder_ratio:
            swap_at = rng.randrange(len(path) - 1)
            self.stats.reordered_messages += 1
        conversation_id = f"{rng.getrandbits(128):032x}" if rng.random() < cfg.conversation_ratio else ""
        # A failed message names one number on both its statuses, or none: a number named alone on ``failed``
        # is named with the BSUID on ``sent`` too.
        shown = recipient.user.shown(rng) if recipient is not None and "failed" in path else None
        addressed = group.group_id if group is not None else recipient.address if recipient is not None else ""
        msg = _Message(
            wamid=self._wamid(addressed, inbound=False), lane=lane, recipient=recipient, group=group,
            participant=participant, shown=shown, path=path, category=category, pricing_type=pricing_type,
            pricing_on=pricing_on, callback=callback, flow=flow, flow_token=flow_token,
            conversation_id=conversation_id, error_code=error_code, complete=complete, swap_at=swap_at,
        )
        heapq.heappush(lane.pending, (now, next(self._tie), msg, 0))
        if flow is not None and recipient is not None and rng.random() < cfg.opt_out_ratio:
            for due, value in preference_times(rng, now, resume_ratio=cfg.resume_ratio):  # after the sent status
                if self._pending_preferences < MAX_PENDING_PREFERENCES:
                    heapq.heappush(lane.preferences, (due, next(self._tie), recipient, value))
                    self._pending_preferences += 1
        if self._tally is not None:
            for status in path:
                self._tally.add_status(wamid=msg.wamid, status=status, phone_number_id=lane.phone.phone_number_id,
                                       flow_id=flow.flow_id if flow else "", error_code=error_code or None)
            self._tally.add_recipient(wamid=msg.wamid, identifiers=recipient.identifiers if recipient else (),
                                      group=group is not None, country=recipient.user.country if recipient else "")
            self._tally.add_pricing(wamid=msg.wamid, category=category, pricing_type=pricing_type,
                                    billable=int(pricing_type == "regular"))

    def _preference(self, lane: _Lane) -> _Item:
        """The lane's earliest due preference, at its own time (never compressed)."""
        due, _, recipient, value = heapq.heappop(lane.preferences)
        self._pending_preferences -= 1
        ts = int(self.start_time + due)
        shown = recipient.user.shown(self._rng)
        if self._tally is not None:
            self._tally.add_preference(identifiers=recipient.identifiers, value=value, category=MARKETING_MESSAGES,
                                       timestamp=ts)
        entry = users.preference(recipient.user, shown=shown, value=value, timestamp=ts)
        return _Item(lane, preference=(entry, recipient.contact(shown=shown)))

    def _status(self, msg: _Message, status: str, ts: int) -> dict[str, Any]:
        priced = status == "sent" or status == msg.pricing_on
        _, title, details = ERRORS.get(msg.error_code, (0, "", ""))
        parts: dict[str, Any] = {
            "conversation": payloads.conversation(conversation_id=msg.conversation_id, category=msg.category,
                                                  expires=ts + 86_400 if status == "sent" else None)
            if msg.conversation_id and priced else None,
            "pricing": payloads.pricing(pricing_type=msg.pricing_type, category=msg.category) if priced else None,
            "callback_data": msg.callback,
            "errors": [payloads.error(code=msg.error_code, title=title, details=details)] if status == "failed"
            else None,
        }
        if msg.group is not None:
            return payloads.status(wamid=msg.wamid, status=status, timestamp=ts, recipient_type="group",
                                   recipient_id=msg.group.group_id, recipient_participant_id=msg.participant, **parts)
        if msg.recipient is None:  # pragma: no cover - a message goes to a user or a group
            raise ValueError("a message without a recipient")
        user, handle = msg.recipient.user, msg.recipient.handle
        phone = msg.recipient.phone(shown=msg.shown if msg.shown is not None else user.shown(self._rng))
        return payloads.user_status(wamid=msg.wamid, status=status, timestamp=ts, phone=phone, user_id=handle.user_id,
                                    parent_user_id=handle.parent_user_id, username=user.username, **parts)

    def _completion(self, msg: _Message, ts: int) -> tuple[dict[str, Any], dict[str, Any]]:
        if msg.flow is None or msg.recipient is None:  # pragma: no cover - only Flow messages are completed
            raise ValueError("completion of a message that is not a Flow")
        recipient = msg.recipient
        reply_id = self._wamid(recipient.address, inbound=True)
        if self._tally is not None:
            self._tally.add_completion(wamid=reply_id, phone_number_id=msg.lane.phone.phone_number_id,
                                       flow_wamid=msg.wamid)
        response = {"flow_token": msg.flow_token, **form_answers(self._rng, msg.flow.name, recipient.name)}
        shown = recipient.user.shown(self._rng)
        message = payloads.flow_reply(wamid=reply_id, user=recipient.phone(shown=shown),
                                      user_id=recipient.handle.user_id, flow_wamid=msg.wamid,
                                      business_number=msg.lane.phone.display_phone_number, timestamp=ts,
                                      response=response)
        return message, recipient.contact(shown=shown)


def _change(phone: PhoneNumber, found: list[Any] | None, item: _Item) -> dict[str, Any]:
    """The change of a phone number's status updates, of its marketing preferences (with their contacts), or of
    one completion (with its contact)."""
    number: dict[str, Any] = {"phone_number_id": phone.phone_number_id,
                              "display_phone_number": phone.display_phone_number}
    if found is not None and item.status is not None:
        return payloads.change(**number, statuses=found)
    if found is not None:
        return payloads.preferences_change(**number, contacts=[c for _, c in found], preferences=[e for e, _ in found])
    if item.completion is None:  # pragma: no cover - a part is statuses, preferences or a completion
        raise ValueError("a change needs status updates, preferences or a completion")
    message, contact = item.completion
    return payloads.change(**number, contacts=[contact], messages=[message])


def iter_webhooks(config: SimulationConfig, *, clock: Callable[[], float] | None = None) -> Iterator[Webhook]:
    """The schedule, lazily (endless when ``config.messages == 0``)."""
    return iter(TrafficGenerator(config, clock=clock))


def generate(
    config: SimulationConfig, *, rate_card: RateCard | None = None, opt_out_window_s: int = OPT_OUT_WINDOW_S
) -> tuple[list[Webhook], Truth]:
    """Every POST of a finite run, in send order, and the truth (deterministic for seed + start_time; ``spend``
    priced by ``rate_card``, opt-outs counted for ``opt_out_window_s``). Without ``config.start_time`` the timestamps
    start at the current time; everything else is still the same for a seed."""
    if config.messages == 0:
        raise ValueError("generate() needs a finite run (messages > 0); use iter_webhooks() for endless")
    generator = TrafficGenerator(config, record=True)
    webhooks = list(generator)
    return webhooks, generator.truth(rate_card=rate_card, opt_out_window_s=opt_out_window_s)
