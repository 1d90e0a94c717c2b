"""Costs, persons, opt-outs and times to complete, in the real ClickHouse engine (chDB in-process): hand-made
messages and sessions with duplicates, a message costed once, free and unpriced messages, a person seen by phone
and by BSUID, stops inside and outside the window."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from clickhouse_connect.driver.client import Client

from config.exceptions import RateCardError
from config.ratecard import SAMPLE_PATH, RateCard
from contract.events import (
    FlowCompletion,
    FlowSent,
    MessageStatus,
    NodeEvent,
    UserPreference,
    WebhookError,
    event_id,
)
from warehouse import audience, costs, queries, writer
from warehouse.flows import FlowFilter
from warehouse.identity import PersonResolver
from warehouse.queries import DeliveryFilter

NOW_S = int(time.time())
T0 = NOW_S - 7200
CARD = RateCard.from_csv("""# a card
market,category,pricing_type,currency,price,effective_from
BR,marketing,regular,USD,0.05,2020-01-01
BR,marketing,regular,USD,0.0625,2026-01-01
*,marketing,regular,USD,0.07,2020-01-01
*,utility,*,USD,0.01,2020-01-01
""")


def test_the_card_picks_the_most_specific_rate_in_force() -> None:
    price = CARD.price
    assert price(country="BR", category="marketing", pricing_type="regular", billable=1,
                 day=date(2025, 12, 31)) == Decimal("0.05")
    assert price(country="BR", category="marketing", pricing_type="regular", billable=1,
                 day=date(2026, 1, 1)) == Decimal("0.0625")
    assert price(country="FR", category="marketing", pricing_type="regular", billable=1,
                 day=date(2026, 1, 1)) == Decimal("0.07")
    assert price(country="FR", category="utility", pricing_type="regular", billable=-1,
                 day=date(2026, 1, 1)) == Decimal("0.01")
    assert price(country="BR", category="marketing", pricing_type="free_entry_point", billable=0,
                 day=date(2026, 1, 1)) == Decimal(0)
    assert price(country="BR", category="authentication", pricing_type="regular", billable=1,
                 day=date(2026, 1, 1)) is None
    assert RateCard.from_file(SAMPLE_PATH).currency == "USD"


@pytest.mark.parametrize(("text", "reason"), [
    ("market,category\nBR,marketing", "header must be"),
    ("market,category,pricing_type,currency,price,effective_from\nBRA,marketing,regular,USD,1,2026-01-01",
     "line 2: market must be"),
    ("market,category,pricing_type,currency,price,effective_from\nBR,marketing,regular,USD,-1,2026-01-01",
     "price must be a number >= 0"),
    ("market,category,pricing_type,currency,price,effective_from\nBR,marketing,regular,USD,1,tomorrow",
     "effective_from must be a date"),
    ("market,category,pricing_type,currency,price,effective_from\nBR,marketing,regular,USD,1,2026-01-01\n"
     "BR,marketing,regular,USD,2,2026-01-01", "a second rate"),
    ("market,category,pricing_type,currency,price,effective_from\nBR,marketing,regular,USD,1,2026-01-01\n"
     "US,marketing,regular,EUR,2,2026-01-01", "one currency per card"),
])
def test_a_bad_card_is_refused_with_its_line_and_reason(text: str, reason: str) -> None:
    with pytest.raises(RateCardError, match=reason):
        RateCard.from_csv(text)


def status(wamid: str, value: str, at: int, *, phone: str = "", bsuid: str = "", country: str = "BR",
           category: str = "marketing", pricing_type: str = "regular", callback: str = "") -> MessageStatus:
    priced = value != "failed"
    return MessageStatus(
        event_id=event_id("status", wamid, value), waba_id="waba", phone_number_id="pn", wamid=wamid, status=value,
        occurred_at=at, received_at_ms=at * 1000, recipient_hash=phone, recipient_user_id_hash=bsuid,
        person_hash=bsuid or phone, country=country,
        pricing_category=category if priced else "", pricing_type=pricing_type if priced else "",
        pricing_model="PMP" if priced else "", billable=int(pricing_type == "regular") if priced else -1,
        biz_opaque_callback_data=callback, error_code=131049 if value == "failed" else 0)


def sent(n: int, *, campaign: str = "spring", at: int = T0) -> FlowSent:
    return FlowSent(event_id=event_id("flow_sent", f"w{n}"), wamid=f"w{n}", flow_id="F1", flow_version="1",
                    flow_token=f"tok{n}", campaign=campaign, occurred_at_ms=at * 1000 + 250,
                    received_at_ms=at * 1000)


def opened(n: int, at: int) -> NodeEvent:
    return NodeEvent(event_id=event_id("node", f"tok{n}", "A", "view"), flow_token=f"tok{n}", flow_id="F1",
                     flow_version="1", screen="A", action="view", occurred_at_ms=at * 1000, received_at_ms=at * 1000)


def completed(n: int, at: int) -> FlowCompletion:
    return FlowCompletion(event_id=event_id("nfm_reply", f"r{n}"), waba_id="waba", phone_number_id="pn",
                          wamid=f"r{n}", flow_wamid=f"w{n}", flow_token=f"tok{n}", occurred_at=at,
                          received_at_ms=at * 1000, user_hash="")


def stop(person: str, at: int, *, value: str = "stop") -> UserPreference:
    return UserPreference(event_id=event_id("pref", person, value, str(at)), waba_id="waba", phone_number_id="pn",
                          category="marketing_messages", value=value, occurred_at=at, received_at_ms=at * 1000,
                          user_id_hash=person, person_hash=person)


def write(client: Client) -> None:
    # Session 1: phone p1 and BSUID b1 (one person); delivered, read, opened, completed; BR marketing (charged).
    # Session 2: the same person, only by BSUID; delivered; free entry point (free).
    # Session 3: a phone-only person p3 in FR; read without delivered; utility (charged at the * rate); stops in
    #            the window. Session 4: failed (never charged). Session 5: person b5, authentication in BR: no rate.
    statuses = [
        status("w1", "sent", T0 + 1, phone="p1", bsuid="b1"), status("w1", "delivered", T0 + 4, phone="p1", bsuid="b1"),
        status("w1", "read", T0 + 8, bsuid="b1"),
        status("w2", "sent", T0 + 1, bsuid="b1", pricing_type="free_entry_point"),
        status("w2", "delivered", T0 + 5, bsuid="b1", pricing_type="free_entry_point"),
        status("w3", "sent", T0 + 1, phone="p3", country="FR", category="utility"),
        status("w3", "read", T0 + 30, phone="p3", country="FR", category="utility"),
        status("w4", "sent", T0 + 1, phone="p4"), status("w4", "failed", T0 + 3, phone="p4"),
        status("w5", "sent", T0 + 1, bsuid="b5", category="authentication"),
        status("w5", "delivered", T0 + 2, bsuid="b5", category="authentication"),
        status("m9", "sent", T0 + 1, phone="p9", callback="campaign=promo"),
        status("m9", "delivered", T0 + 3, phone="p9", callback="campaign=promo"),
    ]
    writer.write(client, *writer.inserts(
        statuses=statuses + statuses[:5],  # duplicates change nothing
        flow_sends=[sent(1), sent(2), sent(3, campaign="autumn"), sent(4), sent(5)],
        node_events=[opened(1, T0 + 20)], completions=[completed(1, T0 + 80), completed(1, T0 + 80)],
        preferences=[stop("p3", T0 + 3600), stop("b1", T0 + 3 * 86400), stop("p9", T0 + 60)],
    ))
    PersonResolver(client).run_once(datetime.now(UTC).replace(tzinfo=None))


def test_spend_costs_each_delivered_billable_message_once(client: Client) -> None:
    write(client)
    end = datetime.now(UTC).replace(tzinfo=None)
    where = DeliveryFilter(start=end - timedelta(days=1), end=end)
    frame = costs.spend(client, where, by=("country", "pricing_category"), card=CARD)
    rows = {(r.country, r.pricing_category): (r.messages, r.charged, r.free, r.unpriced, r.spend)
            for r in frame.itertuples()}
    assert rows == {
        ("BR", "marketing"): (4, 2, 1, 0, Decimal("0.125")),  # w1, m9 charged; w2 free; w4 failed
        ("FR", "utility"): (1, 1, 0, 0, Decimal("0.01")),
        ("BR", "authentication"): (1, 0, 0, 1, Decimal(0)),
    }
    by_campaign = costs.spend(client, where, by=("campaign",), card=CARD)
    assert dict(zip(by_campaign.campaign, by_campaign.spend, strict=True)) == {
        "spring": Decimal("0.0625"), "autumn": Decimal("0.01"), "promo": Decimal("0.0625")}


def test_flow_audience_counts_people_costs_and_opt_outs(client: Client) -> None:
    write(client)
    costs.store_rate_card(client, CARD, source="test.csv")
    loaded = costs.rate_card(client)
    assert loaded is not None and loaded.source == "test.csv" and loaded.card.rates == CARD.rates
    end = datetime.now(UTC).replace(tzinfo=None)
    where = FlowFilter(start=end - timedelta(days=1), end=end, timeout_s=1800, now=end)
    figures = audience.audience(client, where, by=("campaign",))
    spring, autumn = figures[("spring",)], figures[("autumn",)]
    # spring: w1, w2 (one person b1), w4 (p4), w5 (b5): 3 persons; b1's stop is after the 48 h window.
    assert (spring.sessions, spring.persons, spring.opt_outs) == (4, 3, 0)
    assert (spring.delivered, spring.read, spring.opened, spring.completed) == (3, 1, 1, 1)
    assert (spring.spend.charged, spring.spend.free, spring.spend.unpriced) == (1, 1, 1)
    assert spring.spend.spend == Decimal("0.0625")
    assert spring.cost_per("completed") == Decimal("0.0625") and spring.cost_per("delivered") == Decimal("0.020833")
    assert (autumn.sessions, autumn.persons, autumn.opt_outs, autumn.spend.spend) == (1, 1, 1, Decimal("0.01"))
    assert autumn.cost_per("completed") is None
    countries = audience.audience(client, where, by=("country",))
    assert {k: (a.sessions, a.persons, a.opt_outs, a.spend.spend) for k, a in countries.items()} == {
        ("BR",): (4, 3, 0, Decimal("0.0625")), ("FR",): (1, 1, 1, Decimal("0.01"))}
    wide = audience.audience(client, where, by=("campaign",), window=timedelta(days=4))
    assert wide[("spring",)].opt_outs == 1

    times = audience.time_to_complete(client, where)
    assert times.to_dict("records") == [{"flow_id": "F1", "flow_version": "1", "completions": 1,
                                         "p50_ms": 79_750, "p90_ms": 79_750}]
    gaps = audience.stage_times(client, where, by=("flow_id",))
    medians = dict(zip(gaps.gap, gaps.median_ms, strict=True))
    # sent→delivered: w5 1750, w1 3750, w2 4750, w3 29750 (read, no delivered): the upper median.
    assert medians == {"sent→delivered": 4750, "delivered→read": 4000, "read→opened": 12_000,
                       "opened→completed": 60_000}


def test_delivery_by_country_counts_messages_and_people_once(client: Client) -> None:
    write(client)
    writer.write(client, *writer.inserts(webhook_errors=[
        WebhookError(event_id=f"e{n}", waba_id="waba", phone_number_id="pn", field="messages", code=131000,
                     title="Something went wrong", message="m", details="d", href="https://h", occurred_at=T0 + n,
                     received_at_ms=(T0 + n) * 1000) for n in (1, 2, 2)]))
    end = datetime.now(UTC).replace(tzinfo=None)
    where = DeliveryFilter(start=end - timedelta(days=1), end=end)
    frame = audience.delivery_by_country(client, where)
    assert frame.to_dict("records") == [
        {"country": "BR", "messages": 5, "delivered": 4, "read": 1, "failed": 1, "persons": 4},
        {"country": "FR", "messages": 1, "delivered": 1, "read": 1, "failed": 0, "persons": 1},
    ]
    assert audience.delivery_persons(client, where) == 5  # b1 (also p1), p3, p4, b5, p9
    assert queries.webhook_error_counts(client, where) == {131000: 2}
    listed = queries.webhook_errors(client, where)
    assert list(listed.code) == [131000, 131000] and listed.occurred_at.iloc[0] > listed.occurred_at.iloc[1]
    other = DeliveryFilter(start=end - timedelta(days=1), end=end, phone_number_ids=("another",))
    assert audience.delivery_persons(client, other) == 0 and queries.webhook_error_counts(client, other) == {}
