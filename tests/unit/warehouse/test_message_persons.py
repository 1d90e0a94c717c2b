"""Distinct people messaged from the hours' sets of people (warehouse/person_sets.py, read by
warehouse/message_hours.py) in the real ClickHouse engine (chDB in-process): the Delivery page's people, in total and
per country, for every range and filter, equal the people counted by merging every message live, before and after
each rollup pass, when a person's identifiers are linked after their hours were set, when a new message goes to
someone already counted, and after the migration that adds the sets backfills a warehouse with history."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path

import clickhouse_connect
import msgspec
from clickhouse_connect.driver.client import Client

from contract.events import IdentityLink, MessageStatus
from tests.unit.warehouse.test_costs import status
from tests.unit.warehouse.touches import age_message_touches
from warehouse import audience, tables, writer
from warehouse.identity import PersonResolver, resolved_person
from warehouse.message_hours import MessageRollup
from warehouse.migrate import apply_and_backfill
from warehouse.queries import COUNTRY_FILTER, DeliveryFilter
from warehouse.rollup import server_now

H = (int(time.time()) - 5 * 3600) // 3600 * 3600  # five hours ago, on the hour


def at(seconds: int) -> datetime:
    return datetime.utcfromtimestamp(H + seconds)  # noqa: DTZ004 - naive UTC, as the warehouse's parameters


def store(client: Client, *statuses: MessageStatus) -> None:
    writer.write(client, *writer.inserts(statuses=list(statuses)))


def to(wamid: str, at_s: int, *, phone: str = "", bsuid: str = "", country: str = "BR", number: str = "pn",
       value: str = "sent") -> MessageStatus:
    return msgspec.structs.replace(status(wamid, value, H + at_s, phone=phone, bsuid=bsuid, country=country),
                                   phone_number_id=number)


def history(client: Client) -> None:
    """Hour 0: m1 to p1, m2 to p2, m3 to p1 again (from pn2), m4 to the BSUID u3 (US), g1 to nobody (no person key).
    Hour 1: m5 to p2, m6 to p4 (US, from pn2). Hour 2: m7 to p1, m8 to the BSUID u4 (US): p4's, not linked yet.
    Six people as keys: p1, p2, u3, p4, u4 (five until u4 is linked to p4)."""
    store(client,
          to("m1", 60, phone="p1"), to("m1", 90, phone="p1", value="delivered"), to("m2", 600, phone="p2"),
          to("m3", 1200, phone="p1", number="pn2"), to("m4", 1800, bsuid="u3", country="US"), to("g1", 1900),
          to("m5", 4200, phone="p2"), to("m6", 6600, phone="p4", country="US", number="pn2"),
          to("m7", 7300, phone="p1"), to("m8", 9000, bsuid="u4", country="US"),
          to("m8", 9060, bsuid="u4", country="US", value="read"))


def link(a: str, b: str) -> IdentityLink:
    return IdentityLink(event_id=f"{a}>{b}", waba_id="w", kind="user_id_update", from_hash=a, to_hash=b,
                        occurred_at=H, received_at_ms=H * 1000)


def resolve(client: Client) -> None:
    """A message pass, then its touches made old (as the queries see it once the margin for inserts in flight is
    over)."""
    MessageRollup(client, touch_margin=timedelta(0)).run_once(server_now(client))
    age_message_touches(client)


# The people counted by merging every message's statuses live (what the Delivery page ran before the sets).
_JOIN, _PERSON = resolved_person("m.person_hash")


def merged_live_sql(group: str) -> str:
    """The people of the filter's range, per ``group`` (a column, or nothing), merging every message live."""
    return f"""
        SELECT {group}{"," if group else ""} uniqExactIf({_PERSON}, m.person_hash != '')
        FROM (SELECT wamid, max(phone_number_id) AS phone_number_id, min(first_at) AS first_at,
                     max(person_hash) AS person_hash, max(country) AS country
              FROM {tables.OUTBOUND_MESSAGES_TABLE} GROUP BY wamid
              HAVING first_at >= {{start:DateTime('UTC')}} AND first_at <= {{end:DateTime('UTC')}}
                 AND (empty({{phone_number_ids:Array(String)}})
                      OR has({{phone_number_ids:Array(String)}}, phone_number_id))
                 AND {COUNTRY_FILTER}) AS m
        {_JOIN}
        {"GROUP BY " + group if group else ""}
    """


RANGES = [(0, 3 * 3600 - 1), (3600, 7199), (300, 5000), (4201, 9000), (1, 10_799), (-7200, 100_000)]
FILTERS = [((), ()), (("pn2",), ()), ((), ("US",)), (("pn",), ("US", "BR"))]


def figures(client: Client) -> list[object]:
    """Every range and filter: (people, people per country) as the Delivery page counts them."""
    out: list[object] = []
    for a, b in RANGES:
        for numbers, countries in FILTERS:
            where = DeliveryFilter(at(a), at(b), numbers, countries)
            by_country = audience.delivery_by_country(client, where)
            out.append((audience.delivery_persons(client, where),
                        {r.country: r.persons for r in by_country.itertuples()}))
    return out


def merged_live(client: Client) -> list[object]:
    """:func:`figures` by merging every message live."""
    out: list[object] = []
    for a, b in RANGES:
        for numbers, countries in FILTERS:
            parameters = DeliveryFilter(at(a), at(b), numbers, countries).parameters
            total = client.query(merged_live_sql(""), parameters=parameters).result_rows
            per_country = client.query(merged_live_sql("m.country"), parameters=parameters).result_rows
            out.append((int(total[0][0]), {country: int(n) for country, n in per_country}))
    return out


def people(client: Client, a: int, b: int, numbers: tuple[str, ...] = (), countries: tuple[str, ...] = ()) -> int:
    return audience.delivery_persons(client, DeliveryFilter(at(a), at(b), numbers, countries))


def test_people_from_the_sets_rows_and_live_merge_equal_those_merged_live(client: Client) -> None:
    history(client)
    truth = merged_live(client)
    assert people(client, 0, 3 * 3600 - 1) == 5  # p1, p2, u3, p4, u4
    assert people(client, 0, 3599) == 3  # p1, p2, u3 (g1 names no one)
    assert people(client, 0, 3 * 3600 - 1, ("pn2",)) == 2  # p1, p4
    assert people(client, 0, 3 * 3600 - 1, (), ("US",)) == 3  # u3, p4, u4
    assert figures(client) == truth  # no pass yet: every message merged live
    resolve(client)
    assert client.command(f"SELECT count() FROM {tables.PERSON_IDS_TABLE}") == 5
    assert figures(client) == truth
    resolve(client)  # an idle pass changes nothing
    assert figures(client) == truth


def test_whole_hours_are_read_from_the_sets(client: Client) -> None:
    history(client)
    resolve(client)
    assert people(client, 0, 7199) == 4  # p1, p2, u3, p4
    # A number nobody has, put in hour 1's set on purpose: counted in a range where hour 1 is whole, not in one
    # a second shorter, where hour 1 is read row by row.
    client.insert(tables.PERSON_HOUR_INPUT_TABLE, [(at(3600), 0, "", "", [4, 5, 999], at(6600), server_now(client), 0)],
                  column_names=["hour", "level", "phone_number_id", "country", "ids", "last_at", "computed_at",
                                "is_deleted"])
    assert people(client, 0, 7199) == 5
    assert people(client, 0, 7198) == 4


def test_people_linked_after_their_hours_were_set_are_one_person_at_once(client: Client) -> None:
    history(client)
    resolve(client)
    resolver = PersonResolver(client, full_every=timedelta(days=1))
    resolver.run_once(server_now(client))
    assert people(client, 0, 3 * 3600 - 1) == 5
    writer.write(client, *writer.inserts(identity_links=[link("u4", "p4")]))
    resolver.run_once(server_now(client))  # person_map: u4 is p4's now
    # Hours 1 and 2 (whole, set before the link) are read row by row until the next pass sets them again.
    assert people(client, 0, 3 * 3600 - 1) == 4
    assert people(client, 3600, 3 * 3600 - 1, (), ("US",)) == 1
    truth = merged_live(client)
    assert figures(client) == truth
    resolve(client)
    assert figures(client) == truth
    assert people(client, 0, 3 * 3600 - 1) == 4


def test_a_new_message_to_someone_counted_counts_once_before_and_after_the_pass(client: Client) -> None:
    history(client)
    resolve(client)
    store(client, to("m9", 7500, phone="p2"), to("m10", 7600, phone="p9", country="MX"))
    assert people(client, 0, 3 * 3600 - 1) == 6  # p2 again; p9 is new, not numbered yet
    truth = merged_live(client)
    assert figures(client) == truth
    resolve(client)
    assert client.command(f"SELECT count() FROM {tables.PERSON_IDS_TABLE}") == 6
    assert figures(client) == truth


def test_migration_0019_backfills_the_people_of_a_warehouse_with_history(client: Client, tmp_path: Path) -> None:
    client.command("CREATE DATABASE before_0019")
    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path}", database="before_0019")
    apply_and_backfill(client, "before_0019", upto=18)
    history(client)
    truth = merged_live(client)
    assert [m.name for m in apply_and_backfill(client, "before_0019")] == ["0019_message_persons.sql"]
    assert client.command(f"SELECT count() FROM {tables.PERSON_IDS_TABLE}") == 5
    age_message_touches(client)
    sets = f"SELECT count() FROM {tables.PERSON_HOUR_SETS_TABLE} FINAL WHERE level = 0"
    assert client.command(sets) == 3  # hours 0, 1, 2
    assert figures(client) == truth
    client.close()
