"""The delivery rollup in the real ClickHouse engine (chDB in-process): sealed counts add up to exactly the
distinct messages the per-minute sets hold, whatever is sealed, resealed, late, duplicated or run twice."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from clickhouse_connect.driver.client import Client

from contract.events import MessageStatus
from warehouse import tables, writer
from warehouse.queries import (
    DeliveryFilter,
    delivery_by_phone_number,
    delivery_timeseries,
    delivery_totals,
    failures_by_error_code,
)
from warehouse.rollup import DELIVERY_HOURS, DELIVERY_SEALED, DeliveryRollup, progress

NOW = int(time.time())
T0 = (NOW - 3600) // 60 * 60  # a minute an hour ago: sealed by any pass with the default seal delay
ALL = DeliveryFilter(start=datetime(2014, 1, 1), end=datetime(2100, 1, 1))


def status(wamid: str, value: str, at: int, *, pnid: str = "p1", code: int = 0) -> MessageStatus:
    return MessageStatus(event_id=f"{wamid}.{value}", waba_id="waba", phone_number_id=pnid, wamid=wamid,
                         status=value, occurred_at=at, received_at_ms=at * 1000, recipient_hash="h",
                         error_code=code)


def store(client: Client, *statuses: MessageStatus) -> None:
    writer.write(client, *writer.inserts(statuses=statuses))


def rollup(client: Client, *, seal_after_s: float = 120, touch_margin_s: float = 60) -> DeliveryRollup:
    return DeliveryRollup(client, seal_after_s=seal_after_s, reads_interval_s=0,
                          touch_margin=timedelta(seconds=touch_margin_s))


def truth(client: Client, where: DeliveryFilter = ALL) -> dict[str, int]:
    """Distinct messages per status straight from the raw table, as the sets say."""
    rows = client.query(
        f"SELECT status, uniqExact(wamid) FROM {tables.MESSAGE_STATUSES_TABLE} "
        "WHERE toStartOfMinute(occurred_at) >= toStartOfMinute({start:DateTime('UTC')}) "
        "AND toStartOfMinute(occurred_at) <= {end:DateTime('UTC')} GROUP BY status",
        parameters={"start": where.start, "end": where.end}).result_rows
    return {status: count for status, count in rows}


def history() -> list[MessageStatus]:
    """Ten messages over five minutes and two phone numbers, with a failure and a read without delivered."""
    out = []
    for i in range(10):
        at, pnid = T0 + 60 * (i % 5), f"p{i % 2}"
        out.append(status(f"w{i}", "sent", at, pnid=pnid))
        if i == 7:
            out.append(status(f"w{i}", "failed", at + 61, pnid=pnid, code=131049))
            continue
        if i != 3:
            out.append(status(f"w{i}", "delivered", at + 2, pnid=pnid))
        if i % 3 == 0:
            out.append(status(f"w{i}", "read", at + 90, pnid=pnid))
    return out


def test_sealed_counts_give_the_same_figures_as_the_sets(client: Client) -> None:
    store(client, *history())
    store(client, *history()[:6])  # duplicates: the same statuses again
    before = (delivery_totals(client, ALL), delivery_by_phone_number(client, ALL),
              failures_by_error_code(client, ALL).to_dict("records"),
              delivery_timeseries(client, ALL, bucket_minutes=2).to_dict("records"))
    done = rollup(client).run_once()
    assert done.sealed_minutes == 6  # sends in minutes 0..4, and a read in minute 5
    assert progress(client, DELIVERY_SEALED) == done.sealed_until
    after = (delivery_totals(client, ALL), delivery_by_phone_number(client, ALL),
             failures_by_error_code(client, ALL).to_dict("records"),
             delivery_timeseries(client, ALL, bucket_minutes=2).to_dict("records"))
    assert after[1:] == before[1:]
    expected = truth(client)
    assert {status: after[0][status] for status in expected} == expected
    # w3 was read and never delivered: delivered counts it once the rollup knows it.
    assert after[0]["delivered_or_read"] == expected["delivered"] + 1 == 9
    sealed = client.command(f"SELECT count() FROM {tables.MESSAGE_STATUS_COUNTS_TABLE} FINAL")
    assert sealed == client.command(
        f"SELECT count() FROM (SELECT DISTINCT phone_number_id, minute, status, error_code "
        f"FROM {tables.MESSAGE_STATUS_MINUTE_TABLE})")


def test_a_late_status_in_a_sealed_minute_is_counted_by_the_next_pass(client: Client) -> None:
    store(client, *history())
    roll = rollup(client, touch_margin_s=0)  # the next pass reads only touches after this one began
    roll.run_once()
    sealed_before = delivery_totals(client, ALL)
    store(client, status("late", "sent", T0 + 30))  # a new message in the first, sealed minute
    assert delivery_totals(client, ALL)["sent"] == sealed_before["sent"]  # the seal is behind until a pass
    done = roll.run_once()
    assert done.resealed_minutes == 1
    assert delivery_totals(client, ALL)["sent"] == sealed_before["sent"] + 1 == truth(client)["sent"]


def test_duplicates_after_the_seal_and_repeated_passes_change_nothing(client: Client) -> None:
    store(client, *history())
    roll = rollup(client)
    roll.run_once()
    figures = delivery_totals(client, ALL)
    store(client, *history())
    for _ in range(3):
        roll.run_once()
        assert delivery_totals(client, ALL) == figures
    another = rollup(client)  # a restarted rollup
    another.run_once()
    assert delivery_totals(client, ALL) == figures


def test_a_range_across_the_seal_adds_sealed_counts_and_live_sets(client: Client) -> None:
    now = int(time.time())
    recent = [status(f"r{i}", value, now - 600 + 60 * i)
              for i in range(10) for value in ("sent", "delivered")]
    store(client, *recent)
    done = rollup(client, seal_after_s=300).run_once()
    assert datetime.fromtimestamp(now - 600) < done.sealed_until < datetime.fromtimestamp(now)  # noqa: DTZ006
    where = DeliveryFilter(start=datetime.utcfromtimestamp(now - 480), end=datetime(2100, 1, 1))  # noqa: DTZ004
    totals = delivery_totals(client, where)
    assert (totals["sent"], totals["delivered"]) == (8, 8)
    assert {k: totals[k] for k in ("sent", "delivered")} == truth(client, where)


def test_a_message_read_without_delivered_counts_as_delivered_until_its_delivered_status_arrives(
        client: Client) -> None:
    store(client, status("a", "delivered", T0), status("a", "read", T0 + 60), status("b", "read", T0 + 60))
    roll = rollup(client)
    roll.run_once()
    assert delivery_totals(client, ALL)["delivered_or_read"] == 2
    store(client, status("b", "delivered", T0 + 30))  # late: b was delivered after all
    done = roll.run_once()
    assert done.read_undelivered_changes == 1
    totals = delivery_totals(client, ALL)
    assert (totals["delivered"], totals["delivered_or_read"]) == (2, 2)
    store(client, status("c", "read", T0 + 120))  # a new read, never delivered: the next pass adds it
    assert roll.run_once().read_undelivered_changes == 1
    assert delivery_totals(client, ALL)["delivered_or_read"] == 3
    # A message delivered before a range and read in it was not delivered in that range.
    second_minute = DeliveryFilter(start=datetime.utcfromtimestamp(T0 + 60), end=datetime(2100, 1, 1))  # noqa: DTZ004
    assert delivery_totals(client, second_minute)["delivered_or_read"] == 1  # c, read in it, never delivered
    assert delivery_totals(client, second_minute)["read"] == 3


def test_an_empty_warehouse_seals_nothing_and_answers_zero(client: Client) -> None:
    done = rollup(client).run_once()
    assert (done.sealed_minutes, done.resealed_minutes) == (0, 0)
    assert set(delivery_totals(client, ALL).values()) == {0}
    assert client.command(f"SELECT count() FROM {tables.MESSAGE_STATUS_COUNTS_TABLE}") == 0


def test_sealing_moves_forward_with_time(client: Client) -> None:
    store(client, *history())
    roll = rollup(client)
    first = roll.run_once()
    second = roll.run_once()
    assert second.sealed_until >= first.sealed_until
    assert second.sealed_minutes == 0  # no status in the minutes sealed since
    assert first.sealed_until > datetime.utcfromtimestamp(T0 + 600) - timedelta(minutes=1)  # noqa: DTZ004


def test_whole_hours_are_summed_and_ranges_with_ragged_ends_stay_exact(client: Client) -> None:
    # Messages every 7 minutes over the five hours before the last one, on two phone numbers.
    start = (NOW // 3600 - 6) * 3600
    statuses = []
    for i in range(5 * 60 // 7):
        at, pnid = start + 420 * i + 13, f"p{i % 2}"
        statuses += [status(f"h{i}", "sent", at, pnid=pnid), status(f"h{i}", "delivered", at + 200, pnid=pnid)]
        if i % 4 == 0:
            statuses.append(status(f"h{i}", "read", at + 3000, pnid=pnid))
        if i % 9 == 0:
            statuses.append(status(f"h{i}", "failed", at + 100, pnid=pnid, code=131026))
    store(client, *statuses)
    roll = rollup(client, touch_margin_s=0)
    before = int(time.time())
    sealed_until = roll.run_once().sealed_until
    after = int(time.time())
    # Sealed up to two minutes (the seal delay) before the pass, and every hour whose minutes are all sealed summed.
    assert datetime.utcfromtimestamp((before - 120) // 60 * 60) <= sealed_until  # noqa: DTZ004
    assert sealed_until <= datetime.utcfromtimestamp((after - 120) // 60 * 60 + 60)  # noqa: DTZ004
    assert progress(client, DELIVERY_HOURS) == sealed_until.replace(minute=0, second=0, microsecond=0)
    assert client.command(f"SELECT uniqExact(hour) FROM {tables.MESSAGE_STATUS_HOUR_COUNTS_TABLE}") >= 5
    # Ranges with ragged ends: minutes before the first whole hour and after the last one come from minutes.
    ranges = [ALL] + [DeliveryFilter(start=datetime.utcfromtimestamp(start + a),  # noqa: DTZ004
                                     end=datetime.utcfromtimestamp(start + b))  # noqa: DTZ004
                      for a, b in ((0, 3600 * 3 - 1), (1234, 3600 * 4 + 59), (3599, 3600 * 2 + 60), (61, 3000))]
    for where in ranges:
        totals = delivery_totals(client, where)
        assert {s: totals[s] for s in truth(client, where)} == truth(client, where), where
        by_phone = delivery_by_phone_number(client, where)
        assert sum(counts.get("sent", 0) for counts in by_phone.values()) == truth(client, where).get("sent", 0)
    hourly = delivery_timeseries(client, ranges[1], bucket_minutes=60)
    assert int(hourly[hourly.status == "sent"].messages.sum()) == truth(client, ranges[1])["sent"]
    by_minute = delivery_timeseries(client, ranges[1], bucket_minutes=1)
    assert len(by_minute[by_minute.status == "sent"]) == truth(client, ranges[1])["sent"]  # one send a minute
    # A late status in a summed hour: the next pass counts its minute and sums its hour again.
    store(client, status("late", "sent", start + 3600 + 5, pnid="p1"))
    assert roll.run_once().resealed_minutes == 1
    for where in ranges:
        assert delivery_totals(client, where)["sent"] == truth(client, where).get("sent", 0)
    # Resealing (what a rebuild runs) leaves every figure as it was.
    before = [delivery_totals(client, where) for where in ranges]
    roll.reseal(since=None, until=None, sealed_at=datetime.utcnow())  # noqa: DTZ003
    assert [delivery_totals(client, where) for where in ranges] == before
