"""People across phone numbers and BSUIDs: the groups of ``person_links`` resolved into ``person_map`` in the real
ClickHouse engine (chDB in-process), the same whatever the order the links arrive in and whether a pass reads
every link or only the new ones."""

from __future__ import annotations

import itertools
import random
from datetime import datetime, timedelta

from clickhouse_connect.driver.client import Client

from contract.events import IdentityLink, MessageStatus
from warehouse import tables, writer
from warehouse.identity import People, PersonResolver, resolved_person

T0 = 1_790_000_000
LINKS = [("p1", "b1"), ("p2", "b2"), ("b1", "b1new"), ("p3", "b3"), ("p2", "b1new")]
# p1, b1, b1new, p2, b2 are one person (the smallest: b1); p3 and b3 another (b3).
PEOPLE = {"p1": "b1", "b1": "b1", "b1new": "b1", "p2": "b1", "b2": "b1", "p3": "b3", "b3": "b3"}


def test_each_group_is_one_person_whatever_the_order_of_its_links() -> None:
    for order in itertools.permutations(LINKS):
        people = People()
        for a, b in order:
            people.link(a, b)
        assert people.person == PEOPLE


def test_a_link_reports_exactly_the_identifiers_whose_person_changed() -> None:
    people = People()
    assert sorted(people.link("p1", "b1")) == ["b1", "p1"]
    assert people.link("p1", "b1") == []
    assert sorted(people.link("a0", "p1")) == ["a0", "b1", "p1"]  # a0 is smaller: the group's person moves
    assert people.link("z9", "b1") == ["z9"]


def status(wamid: str, *, phone: str, bsuid: str, at: int) -> MessageStatus:
    return MessageStatus(event_id=f"{wamid}.{phone}.{bsuid}", waba_id="w", phone_number_id="pn", wamid=wamid,
                         status="sent", occurred_at=at, received_at_ms=at * 1000, recipient_hash=phone,
                         recipient_user_id_hash=bsuid, person_hash=bsuid or phone)


def link(a: str, b: str, at: int) -> IdentityLink:
    return IdentityLink(event_id=f"{a}>{b}", waba_id="w", kind="user_id_update", from_hash=a, to_hash=b,
                        occurred_at=at, received_at_ms=at * 1000)


def persons(client: Client) -> int:
    join, person = resolved_person("s.person_hash")
    return int(client.query(f"SELECT uniqExact({person}) FROM {tables.MESSAGE_STATUSES_TABLE} AS s {join}")
               .result_rows[0][0])


def mapped(client: Client) -> dict[str, str]:
    rows = client.query(f"SELECT identifier, argMax(person, resolved_at) FROM {tables.PERSON_MAP_TABLE} "
                        "GROUP BY identifier").result_rows
    return {identifier: person for identifier, person in rows}


def test_a_person_seen_by_phone_then_by_bsuid_then_changed_is_counted_once(client: Client) -> None:
    resolver = PersonResolver(client, full_every=timedelta(days=1))
    began = datetime(2026, 12, 1)
    # A failed status names only the phone number; the sent status of the same message names both.
    writer.write(client, *writer.inserts(statuses=[
        status("m1", phone="p1", bsuid="", at=T0), status("m2", phone="p2", bsuid="", at=T0),
        status("m3", phone="p3", bsuid="b3", at=T0)]))
    assert resolver.run_once(began).full
    assert persons(client) == 3
    writer.write(client, *writer.inserts(statuses=[status("m4", phone="p1", bsuid="b1", at=T0 + 5),
                                                   status("m5", phone="", bsuid="b1", at=T0 + 6)]))
    assert persons(client) == 4  # not yet resolved: p1 and b1 are two keys
    incremental = resolver.run_once(began + timedelta(seconds=5))
    assert not incremental.full and incremental.written == 2
    assert persons(client) == 3
    writer.write(client, *writer.inserts(identity_links=[link("b1", "b0", T0 + 9), link("p2", "b0", T0 + 9)]))
    resolver.run_once(began + timedelta(seconds=10))
    assert persons(client) == 2
    assert mapped(client) == {"p1": "b0", "b1": "b0", "b0": "b0", "p2": "b0", "p3": "b3", "b3": "b3"}


def test_incremental_passes_end_where_a_full_pass_ends(client: Client) -> None:
    rng = random.Random(7)
    ids = [f"i{n:03d}" for n in range(60)]
    pairs = [(rng.choice(ids), rng.choice(ids)) for _ in range(80)]
    resolver = PersonResolver(client, full_every=timedelta(days=1))
    began = datetime(2026, 12, 1)
    for n in range(0, len(pairs), 10):
        writer.write(client, *writer.inserts(identity_links=[link(a, b, T0 + n) for a, b in pairs[n:n + 10]]))
        resolver.run_once(began + timedelta(seconds=n))
    incremental = mapped(client)
    expected = People()
    for a, b in pairs:
        if a != b:
            expected.link(a, b)
    assert incremental == expected.person
    fresh = PersonResolver(client).run_once(began + timedelta(minutes=5))
    assert fresh.full and fresh.written == 0  # a full pass finds nothing to correct
