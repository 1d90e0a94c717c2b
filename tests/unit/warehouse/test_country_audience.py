"""The recipient-country filter on people, costs, opt-outs, times and the Overview, in the real ClickHouse engine
(chDB in-process), over the hand-made messages and sessions of ``test_costs`` (Brazil and France): each figure
filtered by a country equals that country's (counted by hand, and as the pages group them by country), and the
countries' figures add up to the unfiltered ones."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from clickhouse_connect.driver.client import Client

from contract.events import UserPreference, event_id
from tests.unit.warehouse.test_costs import CARD, T0, write
from warehouse import audience, costs, overview, writer
from warehouse.flows import FlowFilter
from warehouse.queries import DeliveryFilter

COUNTRIES = ("BR", "FR", "")


def windows() -> tuple[DeliveryFilter, FlowFilter]:
    end = datetime.now(UTC).replace(tzinfo=None)
    return (DeliveryFilter(start=end - timedelta(days=1), end=end),
            FlowFilter(start=end - timedelta(days=1), end=end, timeout_s=1800, now=end))


def store(client: Client) -> None:
    write(client)
    # A French person who stopped marketing messages (the others' preferences carry no country).
    writer.write(client, *writer.inserts(preferences=[UserPreference(
        event_id=event_id("pref", "p7", "stop"), waba_id="waba", phone_number_id="pn", category="marketing_messages",
        value="stop", occurred_at=T0 + 100, received_at_ms=(T0 + 100) * 1000, user_id_hash="p7", person_hash="p7",
        country="FR")]))


def test_spend_and_messages_by_country_equal_each_country_and_add_up(client: Client) -> None:
    store(client)
    where, _ = windows()
    by_country = costs.spend(client, where, by=("country", "pricing_category"), card=CARD)
    rows = {(r.country, r.pricing_category): (r.messages, r.charged, r.free, r.unpriced, r.spend)
            for r in by_country.itertuples()}
    assert rows == {("BR", "marketing"): (4, 2, 1, 0, Decimal("0.125")),
                    ("FR", "utility"): (1, 1, 0, 0, Decimal("0.01")),
                    ("BR", "authentication"): (1, 0, 0, 1, Decimal(0))}
    messages = audience.delivery_by_country(client, where)
    for country in COUNTRIES:
        mine = dataclasses.replace(where, countries=(country,))
        filtered = costs.spend(client, mine, by=("pricing_category",), card=CARD)
        assert {(r.pricing_category,): (r.messages, r.charged, r.free, r.unpriced, r.spend)
                for r in filtered.itertuples()} == {(c,): v for (k, c), v in rows.items() if k == country}
        assert audience.delivery_by_country(client, mine).to_dict("records") == [
            r for r in messages.to_dict("records") if r["country"] == country]
    assert audience.delivery_persons(client, dataclasses.replace(where, countries=("BR",))) == 4
    assert audience.delivery_persons(client, dataclasses.replace(where, countries=("FR",))) == 1
    total = costs.spend(client, where, by=(), card=CARD)
    assert sum(costs.spend(client, dataclasses.replace(where, countries=(c,)), by=(), card=CARD)["spend"].sum()
               for c in COUNTRIES) == total["spend"].iloc[0] == Decimal("0.135")


def test_people_opt_outs_and_times_by_country_equal_each_country_and_add_up(client: Client) -> None:
    store(client)
    deliveries, where = windows()
    grouped = audience.audience(client, where, by=("country",), card=CARD)
    assert {k: (a.sessions, a.persons, a.opt_outs, a.spend.spend) for k, a in grouped.items()} == {
        ("BR",): (4, 3, 0, Decimal("0.0625")), ("FR",): (1, 1, 1, Decimal("0.01"))}
    for country in COUNTRIES:
        mine = dataclasses.replace(where, countries=(country,))
        filtered = audience.audience(client, mine, by=("flow_id",), card=CARD)
        assert list(filtered.values()) == ([grouped[(country,)]] if (country,) in grouped else [])
    times = [audience.time_to_complete(client, dataclasses.replace(where, countries=(c,))) for c in COUNTRIES]
    assert [int(t["completions"].sum()) for t in times] == [1, 0, 0]
    gaps = audience.stage_times(client, where, by=("flow_id",))
    per = [audience.stage_times(client, dataclasses.replace(where, countries=(c,)), by=("flow_id",)) for c in COUNTRIES]
    assert sum(int(p["sessions"].sum()) for p in per) == int(gaps["sessions"].sum()) > 0
    # Stops by the country their preference carried: the French one alone; the unknown ones; all of them.
    stops = {c: audience.stopped_people(client, dataclasses.replace(deliveries, countries=(c,))) for c in COUNTRIES}
    assert stops["FR"] == 1 and stops["BR"] == 0
    assert sum(stops.values()) == audience.stopped_people(client, deliveries) == 3  # p3, p9 (no country), p7


def test_the_overview_by_country_adds_up_to_the_overview(client: Client) -> None:
    store(client)
    deliveries, where = windows()
    shown = {c: overview.figures(client, deliveries.start, deliveries.end, timeout_s=1800, card=CARD,
                                 now=where.now, countries=(c,)) for c in COUNTRIES}
    everything = overview.figures(client, deliveries.start, deliveries.end, timeout_s=1800, card=CARD, now=where.now)
    assert (shown["BR"].sent, shown["FR"].sent, shown["BR"].flow_sessions, shown["FR"].flow_sessions) == (5, 1, 4, 1)
    for field in ("sent", "delivered", "read", "failed", "flow_sessions", "flow_completed", "spend", "opt_outs"):
        assert sum(getattr(f, field) for f in shown.values()) == getattr(everything, field), field
    # The page counts this period's sessions from its trend buckets instead of a funnel query: the same figures.
    for countries in ((), *((c,) for c in COUNTRIES)):
        page = overview.page(client, deliveries.start, deliveries.end, timeout_s=1800, card=CARD, now=where.now,
                             countries=countries)
        assert page.figures == (shown[countries[0]] if countries else everything), countries
