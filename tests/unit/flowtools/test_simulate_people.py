"""The delivery simulator (``flowscope simulate``) after Meta's 2026 changes: the identity mix, groups, per-message
pricing of every type, marketing opt-outs and value-level errors — every body parsed by the real receiver parser, and
the truth's people, spend, opt-out and error figures recounted from the bodies."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from typing import Any

import pytest

from config.exceptions import RateCardError
from config.ratecard import SAMPLE_PATH, RateCard
from contract.events import FlowCompletion, MessageStatus, UserPreference, WebhookError
from contract.privacy import Pseudonymiser
from flowtools.simulator.businesses import BusinessFlow, PhoneNumber
from flowtools.simulator.config import SimulationConfig
from flowtools.simulator.generator import generate
from flowtools.simulator.payloads import Webhook
from flowtools.simulator.truth import GenerationStats, Tally, Truth
from ingest.identity import bsuid_country, phone_country
from ingest.parsing import WebhookParser
from tests.unit.flowtools.pricing import sample_rate

START = 1_767_000_000.0
HOUR_S = 3600
CARD = RateCard.from_file(SAMPLE_PATH)
HASH = Pseudonymiser("test-key")
# A long simulated timeline (a POST every 200 s: about a day and a half) with many opt-outs, groups and errors, so
# that stops (60 s to 96 h after their Flow message) happen within the run; generating does not wait.
LONG = SimulationConfig(messages=2500, seed=21, start_time=START, rate=0.005, opt_out_ratio=0.5, group_ratio=0.1,
                        webhook_error_ratio=0.02)


@cache
def generated(config: SimulationConfig = LONG) -> tuple[list[Webhook], Truth]:
    return generate(config, rate_card=CARD)


def changes(webhooks: list[Webhook]) -> Iterator[tuple[Webhook, dict[str, Any], dict[str, Any]]]:
    """(POST, entry, change) of every change, in send order, from the raw bytes."""
    for webhook in webhooks:
        body = json.loads(webhook.raw)
        for entry in body["entry"]:
            for change in entry["changes"]:
                yield webhook, entry, change


def statuses(webhooks: list[Webhook]) -> Iterator[dict[str, Any]]:
    for _, _, change in changes(webhooks):
        yield from change["value"].get("statuses", [])


def by_wamid(webhooks: list[Webhook]) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for status in statuses(webhooks):
        out.setdefault(status["id"], {}).setdefault(status["status"], status)
    return out


def parsed(webhooks: list[Webhook], *, typed_statuses: bool = True) -> tuple[list[Any], list[Any]]:
    """Every event (deduplicated by event id, as the warehouse keeps them) and every rejected part."""
    parser = WebhookParser(pseudonymise=HASH, typed_statuses=typed_statuses)
    events: dict[str, Any] = {}
    rejected = []
    for webhook in webhooks:
        result = parser.parse(webhook.raw, received_at_ms=int(START * 1000) + 10**9)
        rejected += result.rejected
        events |= {e.event_id: e for e in result.events}
    return list(events.values()), rejected


class People:
    """Union-find over the receiver's hashes: identifiers named together are one person."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        while self.parent.setdefault(x, x) != x:
            x = self.parent[x]
        return x

    def union(self, *hashes: str) -> None:
        present = [h for h in hashes if h]
        for h in present[1:]:
            self.parent[self.find(h)] = self.find(present[0])


def people_of(events: list[Any]) -> People:
    people = People()
    for e in events:
        if isinstance(e, MessageStatus) and e.recipient_type != "group":
            people.union(e.recipient_hash, e.recipient_user_id_hash, e.recipient_parent_user_id_hash)
        elif isinstance(e, FlowCompletion):
            people.union(e.user_hash, e.user_id_hash, e.parent_user_id_hash)
        elif isinstance(e, UserPreference):
            people.union(e.phone_hash, e.user_id_hash, e.parent_user_id_hash)
    return people


# --- the receiver accepts every body ------------------------------------------------------------------------------


@pytest.mark.parametrize("typed_statuses", [True, False])
def test_every_body_parses_with_the_receivers_parser_and_nothing_is_rejected(typed_statuses: bool) -> None:
    webhooks, truth = generated()
    events, rejected = parsed(webhooks, typed_statuses=typed_statuses)

    assert rejected == []
    kinds = Counter(type(e).__name__ for e in events)
    assert kinds["MessageStatus"] == sum(truth.statuses.values())
    assert kinds["FlowCompletion"] == truth.completions
    assert kinds["UserPreference"] > 50
    errors = Counter(str(e.code) for e in events if isinstance(e, WebhookError))
    assert errors == truth.webhook_errors and set(errors) == {"131000", "130472", "368"}
    assert all(e.title and e.message and e.details and e.href for e in events if isinstance(e, WebhookError))
    assert {e.country for e in events if isinstance(e, MessageStatus)} == {"", "BR", "US", "IN", "MX", "DE", "GB"}


def test_a_default_run_parses_without_rejects_too() -> None:
    webhooks, truth = generate(SimulationConfig(messages=1500, seed=3, start_time=START))
    events, rejected = parsed(webhooks)

    assert rejected == []
    assert sum(isinstance(e, MessageStatus) for e in events) == sum(truth.statuses.values())


# --- the identity mix, groups, pricing --------------------------------------------------------------------------


def test_statuses_name_users_as_the_reference_says() -> None:
    webhooks, _ = generated()
    users: dict[str, set[bool]] = {}  # BSUID → whether each status showing it showed a phone number
    parents: set[str] = set()
    for status in statuses(webhooks):
        if status.get("recipient_type") == "group":
            assert "contacts" not in status and "recipient_user_id" not in status
            assert status["recipient_participant_id"] and phone_country(status["recipient_participant_id"])
            continue
        if status["status"] == "failed":
            assert "contacts" not in status
            # Sent to a number: that number alone; else the BSUIDs alone.
            assert ("recipient_id" in status) != ("recipient_user_id" in status)
            continue
        (contact,) = status["contacts"]
        user_id = status["recipient_user_id"]
        assert contact["user_id"] == user_id and contact.get("wa_id") == status.get("recipient_id")
        assert contact.get("parent_user_id") == status.get("recipient_parent_user_id")
        assert ("username" in contact.get("profile", {})) <= (status["status"] in {"delivered", "read"})
        country = bsuid_country(user_id)
        assert len(user_id) == 19 and user_id[3:].isdigit()
        if "recipient_id" in status:
            assert phone_country(status["recipient_id"]) == country
        if "recipient_parent_user_id" in status:
            parent = status["recipient_parent_user_id"]
            assert parent.startswith(f"{country}.ENT.") and len(parent) == 27 and parent[7:].isdigit()
            parents.add(user_id)
        users.setdefault(user_id, set()).add("recipient_id" in status)
    kinds = Counter("always" if shows == {True} else "never" if shows == {False} else "sometimes"
                    for shows in users.values())
    n = len(users)
    # A third never show a number; of the 15 % who sometimes do, those seen on a single status look like either.
    assert 0.28 < kinds["never"] / n < 0.42
    assert 0.05 < kinds["sometimes"] / n < 0.18
    assert 0.05 < len(parents) / n < 0.15


def test_groups_are_about_one_non_flow_message_in_50_by_default() -> None:
    webhooks, truth = generate(SimulationConfig(messages=8000, seed=5, start_time=START))
    sent = [s for s in statuses(webhooks) if s["status"] == "sent"]
    plain = {s["id"] for s in sent if not s.get("biz_opaque_callback_data", "").startswith("flow_id=")}
    groups = {s["id"] for s in sent if s.get("recipient_type") == "group"}

    assert groups <= plain
    assert 0.01 < len(groups) / len(plain) < 0.03
    assert truth.messages_by_country[""] == len(groups)


def test_every_pricing_type_and_category_appears_and_billable_means_regular() -> None:
    webhooks, truth = generated()
    seen = Counter((s["pricing"]["category"], s["pricing"]["type"]) for s in statuses(webhooks) if "pricing" in s)

    assert set(seen) == {
        ("marketing", "regular"), ("utility", "regular"), ("authentication", "regular"),
        ("authentication_international", "regular"), ("service", "free_customer_service"),
        ("marketing", "free_entry_point"), ("utility", "free_entry_point"),
    }
    assert all(s["pricing"]["billable"] == (s["pricing"]["type"] == "regular") for s in statuses(webhooks)
               if "pricing" in s)
    assert truth.billable_messages > 0 and truth.free_messages > 0


# --- the truth --------------------------------------------------------------------------------------------------


def test_truth_invariants() -> None:
    _, truth = generated()

    assert truth.billable_messages + truth.free_messages == truth.delivered_or_read
    assert sum(row["messages"] for row in truth.delivered_by_pricing) == truth.delivered_or_read
    assert sum(truth.messages_by_country.values()) == truth.messages
    assert set(truth.persons_by_phone_number_id) == set(truth.phone_numbers)
    assert max(truth.persons_by_phone_number_id.values()) <= truth.persons
    assert truth.persons <= sum(truth.persons_by_phone_number_id.values())
    assert 0 < truth.persons <= LONG.recipients
    opt_outs = truth.opt_outs
    assert opt_outs["window_s"] == 48 * HOUR_S
    assert 0 < opt_outs["persons_opted_out"] <= opt_outs["persons_sent_flow_messages"] <= truth.persons
    assert truth.opt_out_lags_s == sorted(truth.opt_out_lags_s) and min(truth.opt_out_lags_s) >= 60
    assert truth.spend is not None and truth.spend_by_country is not None
    assert sum(Decimal(v) for v in truth.spend_by_country.values()) == Decimal(truth.spend) > 0
    assert set(truth.spend_by_country) <= set(truth.messages_by_country)
    assert sum(truth.webhook_errors.values()) > 0


def test_a_tally_reading_every_body_finds_the_generated_truth() -> None:
    """What the runner does with acknowledged POSTs: only what Meta showed, joined by the identifiers each payload
    names, gives the same truth — people, prices, opt-outs and errors included — as the generator's own record."""
    webhooks, truth = generated()
    tally = Tally(
        phone_numbers=[PhoneNumber(phone_number_id=pnid, **p) for pnid, p in truth.phone_numbers.items()],
        flows=[BusinessFlow(flow_id=fid, name=f["name"], waba_id="") for fid, f in truth.flows.items()],
    )
    for webhook in webhooks:
        tally.add_webhook(webhook)
    read = tally.truth(seed=LONG.seed, start_time=START, complete=True, retries=0, undelivered=0,
                       stats=GenerationStats(**truth.generated), rate_card=CARD)

    assert read == truth
    assert truth.opt_out_lags_s and truth.messages_by_country[""] and truth.webhook_errors


def test_persons_equal_a_recount_from_parsed_events_joined_by_the_identifiers_they_name() -> None:
    webhooks, truth = generated()
    events, _ = parsed(webhooks)
    people = people_of(events)
    status_events = [e for e in events if isinstance(e, MessageStatus)]
    individual = [e for e in status_events if e.recipient_type != "group"]
    roots_of: dict[str, set[str]] = {}
    for e in individual:
        roots_of.setdefault(e.wamid, set()).add(people.find(e.person_hash))
    by_pnid: dict[str, set[str]] = {}
    for e in individual:
        by_pnid.setdefault(e.phone_number_id, set()).add(people.find(e.person_hash))
    countries: dict[str, str] = {}
    for e in status_events:
        countries.setdefault(e.wamid, e.country)

    assert all(len(roots) == 1 for roots in roots_of.values())  # every message's statuses name one person
    assert len({root for roots in roots_of.values() for root in roots}) == truth.persons
    assert {pnid: len(found) for pnid, found in by_pnid.items()} == {
        pnid: n for pnid, n in truth.persons_by_phone_number_id.items() if n}
    assert dict(sorted(Counter(countries.values()).items())) == truth.messages_by_country
    # Groups are nobody: their person key is the group's.
    assert all(e.country == "" and not e.recipient_user_id_hash for e in status_events if e.recipient_type == "group")


def test_opt_outs_follow_their_definition_and_happen_before_the_post_that_carries_them() -> None:
    webhooks, truth = generated()
    events, _ = parsed(webhooks)
    people = people_of(events)
    flow_sent: dict[str, list[int]] = {}  # person → sent times of their Flow messages
    for e in events:
        if isinstance(e, MessageStatus) and e.status == "sent" and e.biz_opaque_callback_data.startswith("flow_id="):
            flow_sent.setdefault(people.find(e.person_hash), []).append(e.occurred_at)
    stops: dict[str, list[int]] = {}
    for e in events:
        if isinstance(e, UserPreference) and e.value == "stop":
            assert e.category == "marketing_messages"
            stops.setdefault(people.find(e.person_hash), []).append(e.occurred_at)

    def opted(window_s: int) -> int:
        return sum(1 for person, times in flow_sent.items()
                   if any(s <= t < s + window_s for s in times for t in stops.get(person, ())))

    assert truth.opt_outs == {"window_s": 48 * HOUR_S, "persons_sent_flow_messages": len(flow_sent),
                              "persons_opted_out": opted(48 * HOUR_S)}
    narrow = truth.evaluated(rate_card=CARD, opt_out_window_s=6 * HOUR_S)
    assert narrow.opt_outs["persons_opted_out"] == opted(6 * HOUR_S) < opted(48 * HOUR_S)
    # Every stop follows one of the user's Flow messages by 60 s to 96 h, and none is later than its POST.
    for person, times in stops.items():
        assert all(any(s + 60 <= t <= s + 96 * HOUR_S for s in flow_sent[person]) for t in times)
    for webhook, _, change in changes(webhooks):
        for preference in change["value"].get("user_preferences", []):
            assert preference["timestamp"] <= START + webhook.at
            assert preference["user_id"] and preference.get("wa_id", "x")
    resumes = [e for e in events if isinstance(e, UserPreference) and e.value == "resume"]
    assert resumes and all(any(t + 60 <= e.occurred_at for t in stops[people.find(e.person_hash)]) for e in resumes)


def test_value_level_errors_are_about_one_post_in_500_by_default() -> None:
    webhooks, truth = generate(SimulationConfig(messages=20_000, seed=4, start_time=START))
    error_changes = [(w, entry, c) for w, entry, c in changes(webhooks) if "errors" in c["value"]]
    originals = [w for w, _, _ in error_changes if not w.duplicate]

    assert all(set(c["value"]) == {"messaging_product", "metadata", "errors"} and len(w.body["entry"]) == 1
               for w, _, c in error_changes)
    assert all(isinstance(entry["time"], int) for _, entry, _ in error_changes)
    assert 1 / 1000 < len(originals) / len(webhooks) < 1 / 250
    assert sum(truth.webhook_errors.values()) == len(originals)
    for _, _, change in error_changes:
        (error,) = change["value"]["errors"]
        assert error["code"] in {131000, 130472, 368}
        assert error["title"] and error["message"] and error["error_data"]["details"]
        assert error["href"].startswith("https://developers.facebook.com/")


def test_spend_equals_a_recount_from_the_bodies_priced_by_hand() -> None:
    config = SimulationConfig(messages=80, seed=2, start_time=START, group_ratio=0.3)
    webhooks, truth = generate(config, rate_card=CARD)
    spend: dict[str, Decimal] = {}
    billable = free = groups = 0
    for path in by_wamid(webhooks).values():
        if "delivered" not in path and "read" not in path:
            continue
        sent = path["sent"]
        pricing = sent["pricing"]
        if sent.get("recipient_type") == "group":
            country = ""
            groups += 1
        else:
            country = bsuid_country(sent["recipient_user_id"])
        day = datetime.fromtimestamp(int(sent["timestamp"]), UTC).date()
        price = sample_rate(country, pricing["category"], pricing["type"], day)
        spend[country] = spend.get(country, Decimal(0)) + price
        billable += pricing["billable"]
        free += pricing["type"] in {"free_customer_service", "free_entry_point"}

    assert groups > 0
    assert truth.spend_by_country is not None and truth.spend is not None
    assert {k: Decimal(v) for k, v in truth.spend_by_country.items()} == spend
    assert Decimal(truth.spend) == sum(spend.values()) > 0
    assert (truth.billable_messages, truth.free_messages) == (billable, free)


def test_a_card_without_a_rate_for_a_delivered_message_is_an_error() -> None:
    _, truth = generated()
    card = RateCard.from_csv("market,category,pricing_type,currency,price,effective_from\n"
                             "*,marketing,*,USD,0.01,2020-01-01\n")
    with pytest.raises(RateCardError, match="no rate"):
        truth.evaluated(rate_card=card)
    assert truth.evaluated(rate_card=None).spend is None


def test_a_run_is_deterministic_for_a_seed() -> None:
    config = replace(LONG, messages=400)
    first, first_truth = generate(config, rate_card=CARD)
    second, second_truth = generate(config, rate_card=CARD)
    other, other_truth = generate(replace(config, seed=22), rate_card=CARD)

    assert [w.raw for w in first] == [w.raw for w in second]
    assert first_truth == second_truth
    assert [w.raw for w in first] != [w.raw for w in other]
    assert first_truth != other_truth


def test_the_truth_of_an_older_run_still_loads_and_a_new_one_round_trips() -> None:
    _, truth = generated()
    older = {k: v for k, v in json.loads(truth.to_json()).items() if k not in {
        "persons", "persons_by_phone_number_id", "messages_by_country", "billable_messages", "free_messages",
        "delivered_by_pricing", "spend", "spend_by_country", "opt_outs", "opt_out_lags_s", "webhook_errors"}}

    loaded = Truth.from_json(json.dumps(older))
    assert (loaded.persons, loaded.spend, loaded.opt_outs, loaded.webhook_errors) == (0, None, {}, {})
    assert loaded.statuses == truth.statuses
    assert Truth.from_json(truth.to_json()) == truth
