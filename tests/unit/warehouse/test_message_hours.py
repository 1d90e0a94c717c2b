"""Resolved messages and their hour sums (warehouse/message_hours.py) in the real ClickHouse engine (chDB
in-process): spend read from the sums, the resolved rows and the live merge is the spend of the messages, before
and after each rollup pass, when a late status lands in a summed hour, when a message's first status moves to an
earlier hour, and when its first-party send tags it after it was resolved."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import clickhouse_connect
import msgspec
import pytest
from clickhouse_connect.driver.client import Client

from contract.events import MessageStatus
from tests.unit.warehouse.test_costs import CARD, sent, status
from tests.unit.warehouse.touches import age_message_touches
from warehouse import costs, message_hours, tables, writer
from warehouse.message_hours import MessageRollup, whole_hours
from warehouse.migrate import apply_and_backfill
from warehouse.queries import DeliveryFilter
from warehouse.rollup import progress, server_now

H = (int(time.time()) - 5 * 3600) // 3600 * 3600  # five hours ago, on the hour
BR = Decimal("0.0625")  # the card's BR marketing rate (2026)
UTILITY = Decimal("0.01")


def at(seconds: int) -> datetime:
    return datetime.utcfromtimestamp(H + seconds)  # noqa: DTZ004 - naive UTC, as the warehouse's parameters


def store(client: Client, *statuses: MessageStatus) -> None:
    writer.write(client, *writer.inserts(statuses=list(statuses)))


def history(client: Client) -> None:
    """Hour 0: a1 (delivered, BR), a2 (read, FR utility), a3 (failed), a4 (sent only) of another number.
    Hour 1: b1 at :10 (delivered, campaign tag), b2 at :50 (delivered, free). Hour 2: c1 (delivered).
    Seven messages."""
    store(client,
          status("a1", "sent", H + 60), status("a1", "delivered", H + 90),
          status("a2", "sent", H + 600, country="FR", category="utility"),
          status("a2", "read", H + 900, country="FR", category="utility"),
          status("a3", "sent", H + 1200), status("a3", "failed", H + 1260),
          msgspec.structs.replace(status("a4", "sent", H + 1800), phone_number_id="pn2"),
          status("b1", "sent", H + 4200, callback="campaign=promo"),
          status("b1", "delivered", H + 4300, callback="campaign=promo"),
          status("b2", "sent", H + 6600, pricing_type="free_entry_point"),
          status("b2", "delivered", H + 6700, pricing_type="free_entry_point"),
          status("c1", "sent", H + 7300), status("c1", "delivered", H + 7400))


def resolve(client: Client) -> None:
    """A rollup pass, then its touches made old: as the queries see it once the margin for inserts in flight is
    over."""
    MessageRollup(client, touch_margin=timedelta(0)).run_once(server_now(client))
    age_message_touches(client)


def spend(client: Client, start: int, end: int, *, by: tuple[str, ...] = (), phone_number_ids: tuple[str, ...] = (),
          countries: tuple[str, ...] = ()) -> dict[tuple[object, ...], tuple[int, int, int, Decimal]]:
    """{group: (messages, charged, free, spend)} of the messages first seen in [H + start, H + end]."""
    frame = costs.spend(client, DeliveryFilter(at(start), at(end), phone_number_ids, countries), by=by, card=CARD)
    return {tuple(getattr(r, g) for g in by): (r.messages, r.charged, r.free, r.spend) for r in frame.itertuples()}


RANGES = [(0, 3 * 3600 - 1), (0, 3599), (3600, 7199), (300, 5000), (4200, 4200), (4201, 7300), (-7200, 100_000)]


def every_figure(client: Client) -> list[object]:
    return [spend(client, a, b, by=by) for a, b in RANGES for by in ((), ("day",), ("campaign", "country"))] + [
        spend(client, 0, 3 * 3600, phone_number_ids=("pn2",)), spend(client, 0, 3 * 3600, countries=("FR",))]


def test_whole_hours_are_those_with_every_second_in_the_range() -> None:
    assert whole_hours(at(0), at(7199)) == {"message_hours_from": at(0), "message_hours_to": at(7200),
                                            "message_edge_hours": []}
    assert whole_hours(at(1), at(7198)) == {"message_hours_from": at(3600), "message_hours_to": at(3600),
                                            "message_edge_hours": [at(0), at(3600)]}
    assert whole_hours(at(300), at(600)) == {"message_hours_from": at(3600), "message_hours_to": at(3600),
                                             "message_edge_hours": [at(0)]}
    assert whole_hours(at(0), at(3600)) == {"message_hours_from": at(0), "message_hours_to": at(3600),
                                            "message_edge_hours": [at(3600)]}


def test_figures_from_the_sums_rows_and_live_merge_equal_those_merged_live(client: Client) -> None:
    history(client)
    merged_live = every_figure(client)  # no pass yet: every message is merged live
    assert spend(client, 0, 3 * 3600 - 1) == {(): (7, 4, 1, BR * 3 + UTILITY)}  # a1, a2, b1, c1 charged; b2 free
    assert spend(client, 0, 3599) == {(): (4, 2, 0, BR + UTILITY)}
    assert spend(client, 300, 5000, by=("campaign",)) == {("",): (3, 1, 0, UTILITY), ("promo",): (1, 1, 0, BR)}
    assert spend(client, 0, 3 * 3600, phone_number_ids=("pn2",)) == {(): (1, 0, 0, Decimal(0))}
    resolve(client)
    assert client.command(f"SELECT count() FROM {tables.MESSAGE_ROWS_TABLE} FINAL") == 7
    assert client.command(f"SELECT sum(messages) FROM {tables.MESSAGE_HOUR_COUNTS_TABLE} FINAL") == 7
    assert every_figure(client) == merged_live
    resolve(client)  # a pass with nothing touched changes nothing
    assert every_figure(client) == merged_live
    # Whole hours come from the sums, the rest from the rows: a wrong sum shows in whole hours only.
    client.command(f"INSERT INTO {tables.MESSAGE_HOUR_COUNTS_TABLE} SELECT * REPLACE (messages + 100 AS messages, "
                   f"computed_at + 1 AS computed_at) FROM {tables.MESSAGE_HOUR_COUNTS_TABLE} FINAL "
                   f"WHERE hour = '{at(0)}' AND pricing_category = 'utility'")
    assert spend(client, 0, 3599) == {(): (104, 2, 0, BR + UTILITY)}
    assert spend(client, 1, 3599) == {(): (4, 2, 0, BR + UTILITY)}


def test_a_late_status_in_a_summed_hour_counts_before_and_after_the_next_pass(client: Client) -> None:
    history(client)
    resolve(client)
    # a4 (sent at 0:30, of pn2) is delivered two hours later; a3 gets a read status with a country.
    store(client, msgspec.structs.replace(status("a4", "delivered", H + 9000), phone_number_id="pn2"))
    expected = {(): (4, 3, 0, BR * 2 + UTILITY)}
    assert spend(client, 0, 3599) == expected
    assert spend(client, 0, 3599, phone_number_ids=("pn2",)) == {(): (1, 1, 0, BR)}
    resolve(client)
    assert spend(client, 0, 3599) == expected
    assert spend(client, 0, 3599, phone_number_ids=("pn2",)) == {(): (1, 1, 0, BR)}
    assert spend(client, 7200, 10_799) == {(): (1, 1, 0, BR)}  # c1 only: a4 stays in its first hour


def test_a_message_whose_first_status_moves_to_an_earlier_hour_leaves_its_old_hour(client: Client) -> None:
    history(client)
    store(client, status("m1", "delivered", H + 3900))  # seen first delivered, at 1:05
    resolve(client)
    assert spend(client, 3600, 7199) == {(): (3, 2, 1, BR * 2)}
    store(client, status("m1", "sent", H + 3300))  # its sent status, at 0:55, arrives late
    hour_0 = {(): (5, 3, 0, BR * 2 + UTILITY)}
    hour_1 = {(): (2, 1, 1, BR)}
    assert (spend(client, 0, 3599), spend(client, 3600, 7199)) == (hour_0, hour_1)
    resolve(client)
    assert (spend(client, 0, 3599), spend(client, 3600, 7199)) == (hour_0, hour_1)
    rows = client.query(f"SELECT hour FROM {tables.MESSAGE_ROWS_TABLE} FINAL WHERE wamid = 'm1'").result_rows
    assert rows == [(at(0).replace(tzinfo=rows[0][0].tzinfo),)]


def test_a_send_tagged_after_resolution_moves_its_spend_to_its_campaign(client: Client) -> None:
    history(client)
    resolve(client)
    assert spend(client, 0, 3599, by=("campaign",)) == {("",): (4, 2, 0, BR + UTILITY)}
    writer.write(client, *writer.inserts(flow_sends=[msgspec.structs.replace(sent(1), wamid="a1")]))
    tagged = {("",): (3, 1, 0, UTILITY), ("spring",): (1, 1, 0, BR)}
    assert spend(client, 0, 3599, by=("campaign",)) == tagged
    resolve(client)
    assert spend(client, 0, 3599, by=("campaign",)) == tagged
    assert spend(client, 0, 3599, by=("flow_id",)) == {("",): (3, 1, 0, UTILITY), ("F1",): (1, 1, 0, BR)}


def test_a_pass_over_history_resolves_every_message_in_buckets(client: Client,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    history(client)
    merged_live = every_figure(client)
    monkeypatch.setattr(message_hours, "BULK_MESSAGES", 3)  # several hash buckets
    done = MessageRollup(client, touch_margin=timedelta(0)).run_once(server_now(client))
    assert (done.messages, done.moved, done.hours) == (7, 0, 3)
    age_message_touches(client)
    assert every_figure(client) == merged_live


def test_migration_0018_backfills_the_messages_of_a_warehouse_with_history(client: Client, tmp_path: Path) -> None:
    history(client)
    merged_live = every_figure(client)  # the same history, merged live (no pass) in a warehouse of its own
    client.command("CREATE DATABASE before_0018")
    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path}", database="before_0018")
    apply_and_backfill(client, "before_0018", upto=17)
    history(client)
    assert [m.name for m in apply_and_backfill(client, "before_0018")] == [
        "0018_message_hours.sql", "0019_message_persons.sql"]
    assert client.command(f"SELECT count() FROM {tables.MESSAGE_ROWS_TABLE} FINAL") == 7
    assert client.command(f"SELECT sum(messages) FROM {tables.MESSAGE_HOUR_COUNTS_TABLE} FINAL") == 7
    assert progress(client, message_hours.MESSAGE_HOURS) is not None
    assert every_figure(client) == merged_live
    client.close()
