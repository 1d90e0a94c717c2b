"""The recipient-country filter, in the real ClickHouse engine (chDB in-process): every delivery and flow figure
filtered by a country equals the truth counted by hand from the events, and the countries' figures add up to the
unfiltered ones, whether read from the live sets, sealed minutes and hours, resolved sessions or hour sums, after a
late status lands in a sealed minute, and after migration 0017 backfills a warehouse that held rows before it."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import clickhouse_connect
import pytest
from clickhouse_connect.driver.client import Client

from contract.events import FlowCompletion, FlowSent, MessageStatus, NodeEvent, event_id
from tests.unit.warehouse.touches import age_touches
from warehouse import flows, queries, tables, writer
from warehouse.migrate import apply_and_backfill
from warehouse.resolution import ROW_COLUMNS, SessionRollup, resolve_sql
from warehouse.rollup import DELIVERY_HOURS, DELIVERY_SEALED, READS_CHECKED, DeliveryRollup, server_now

NOW_S = int(time.time())
T0 = (NOW_S - 5 * 3600) // 3600 * 3600  # the start of an hour four to five hours ago: sealed and summed
COUNTRIES = ("BR", "IN", "MX", "")
ALL = queries.DeliveryFilter(start=datetime(2014, 1, 1), end=datetime(2100, 1, 1))
# A range with ragged ends (minutes of its first and last hours): sealed minutes as well as whole hours.
RAGGED = queries.DeliveryFilter(start=datetime.fromtimestamp(T0 + 1500, UTC).replace(tzinfo=None),
                                end=datetime.fromtimestamp(T0 + 3 * 3600 + 900, UTC).replace(tzinfo=None))
STATUSES = (*queries.DELIVERY_STATUSES, "delivered_or_read")


def status(wamid: str, value: str, at: int, country: str, *, pnid: str = "p1", code: int = 0) -> MessageStatus:
    return MessageStatus(event_id=event_id("status", wamid, value), waba_id="waba", phone_number_id=pnid,
                         wamid=wamid, status=value, occurred_at=at, received_at_ms=at * 1000, recipient_hash="h",
                         error_code=code, country=country)


def messages() -> list[MessageStatus]:
    """48 messages over four hours, two numbers and four countries (one unknown): reads with and without a
    delivered status, failures with two codes."""
    out = []
    for i in range(48):
        at, country, pnid = T0 + 300 * i + 7, COUNTRIES[i % 4], f"p{i % 2}"
        out.append(status(f"m{i}", "sent", at, country, pnid=pnid))
        if i % 7 == 3:
            out.append(status(f"m{i}", "failed", at + 30, country, pnid=pnid, code=131049 if i % 2 else 131026))
            continue
        if i % 5 != 2:
            out.append(status(f"m{i}", "delivered", at + 65, country, pnid=pnid))
        if i % 3 == 0:
            out.append(status(f"m{i}", "read", at + 130, country, pnid=pnid))
    return out


def delivery_truth(events: Sequence[MessageStatus], where: queries.DeliveryFilter) -> dict[str, dict[str, int]]:
    """Per country: distinct messages per status in the range (by the minute of the status), and delivered_or_read
    (delivered in the range, or read in it with no delivered status at all)."""
    start = where.start.replace(tzinfo=UTC).timestamp() // 60 * 60
    end = where.end.replace(tzinfo=UTC).timestamp()
    inside = {(e.wamid, e.status, e.country) for e in events if start <= e.occurred_at // 60 * 60 <= end}
    delivered = {e.wamid for e in events if e.status == "delivered"}
    out = {}
    for country in COUNTRIES:
        counts = {s: len({w for w, st, c in inside if st == s and c == country}) for s in queries.DELIVERY_STATUSES}
        counts["delivered_or_read"] = counts["delivered"] + len(
            {w for w, st, c in inside if st == "read" and c == country and w not in delivered})
        out[country] = counts
    return out


def delivery_figures(client: Client, where: queries.DeliveryFilter) -> dict[str, object]:
    return {
        "totals": queries.delivery_totals(client, where),
        "failures": queries.failures_by_error_code(client, where).to_dict("records"),
        "numbers": queries.delivery_by_phone_number(client, where),
        "hourly": queries.delivery_timeseries(client, where, bucket_minutes=60).to_dict("records"),
    }


def check_delivery(client: Client, events: Sequence[MessageStatus], *, reads_refreshed: bool = True) -> None:
    """Per country: totals equal the truth; totals, failures, numbers and hourly series add up to the unfiltered.
    ``reads_refreshed``: the rollup refreshed the read-undelivered set since the last read (else delivered_or_read,
    which counts it, is left out)."""
    for where in (ALL, RAGGED):
        truth = delivery_truth(events, where)
        per = {c: delivery_figures(client, dataclasses.replace(where, countries=(c,))) for c in COUNTRIES}
        if not reads_refreshed:
            for figures in (*per.values(), *truth.values()):
                totals = figures["totals"] if "totals" in figures else figures
                totals.pop("delivered_or_read")  # type: ignore[attr-defined]
        for country in COUNTRIES:
            assert per[country]["totals"] == truth[country], country
        unfiltered = delivery_figures(client, where)
        unfiltered_totals = unfiltered["totals"]
        if not reads_refreshed:
            unfiltered_totals.pop("delivered_or_read")  # type: ignore[attr-defined]
        assert unfiltered_totals == {s: sum(truth[c][s] for c in COUNTRIES) for s in truth[""]}
        every = delivery_figures(client, dataclasses.replace(where, countries=COUNTRIES))
        if not reads_refreshed:
            every["totals"].pop("delivered_or_read")  # type: ignore[attr-defined]
        assert every == unfiltered
        assert _summed(per, "failures", ("error_code", "meaning"), "messages") == _records(
            unfiltered["failures"], ("error_code", "meaning"), "messages")
        assert _summed(per, "hourly", ("bucket", "status"), "messages") == _records(
            unfiltered["hourly"], ("bucket", "status"), "messages")
        numbers: dict[tuple[str, str], int] = {}
        for figures in per.values():
            for pnid, counts in figures["numbers"].items():  # type: ignore[attr-defined]
                for s, n in counts.items():
                    numbers[(pnid, s)] = numbers.get((pnid, s), 0) + n
        assert {k: n for k, n in numbers.items() if n} == {
            (pnid, s): n for pnid, counts in unfiltered["numbers"].items()  # type: ignore[attr-defined]
            for s, n in counts.items() if n}


def _records(rows: object, key: tuple[str, ...], value: str) -> dict[tuple[object, ...], int]:
    return {tuple(r[k] for k in key): int(r[value]) for r in rows if r[value]}  # type: ignore[attr-defined]


def _summed(per: dict[str, dict[str, object]], name: str, key: tuple[str, ...],
            value: str) -> dict[tuple[object, ...], int]:
    out: dict[tuple[object, ...], int] = {}
    for figures in per.values():
        for k, n in _records(figures[name], key, value).items():
            out[k] = out.get(k, 0) + n
    return out


def rollup(client: Client) -> DeliveryRollup:
    return DeliveryRollup(client, seal_after_s=120, reads_interval_s=0, touch_margin=timedelta(seconds=60))


def test_delivery_figures_by_country_are_exact_live_sealed_in_hours_and_after_a_late_status(client: Client) -> None:
    events = messages()
    writer.write(client, *writer.inserts(statuses=events))
    writer.write(client, *writer.inserts(statuses=events[::3]))  # duplicates
    check_delivery(client, events, reads_refreshed=False)  # live sets only
    done = rollup(client).run_once()
    assert done.sealed_minutes > 0 and done.read_undelivered_changes > 0
    hours = client.query(f"SELECT DISTINCT country FROM {tables.MESSAGE_STATUS_HOUR_COUNTS_TABLE} FINAL").result_rows
    assert {c for (c,) in hours} == set(COUNTRIES)  # whole hours are summed per country
    check_delivery(client, events)  # sealed minutes and hours
    # Late, in sealed minutes: a delivered status of a BR message read without one (it leaves the read-undelivered
    # set), and a read without a delivered status of an MX message (it joins the set, refreshed incrementally).
    late = [status("m12", "delivered", T0 + 300 * 12 + 70, "BR", pnid="p0"),  # read, not delivered until now
            status("m2", "read", T0 + 300 * 2 + 200, "MX", pnid="p0")]  # sent only until now
    assert {e.status for e in events if e.wamid == "m12"} == {"sent", "read"}
    assert {e.status for e in events if e.wamid == "m2"} == {"sent"}
    writer.write(client, *writer.inserts(statuses=late))
    events += late
    again = rollup(client).run_once()
    assert again.resealed_minutes >= 2 and again.read_undelivered_changes == 2  # (and touches within the margin)
    check_delivery(client, events)
    assert rollup(client).run_once().read_undelivered_changes == 0  # a pass run again changes nothing


# --- flows ------------------------------------------------------------------------------------------------------


def sessions() -> list[object]:
    """24 Flow sessions over four hours: the Flow message's statuses carry the recipient's country (none for
    every sixth session: unknown); screen events, completions, failures."""
    out: list[object] = []
    for i in range(24):
        at, country, token, wamid = T0 + 600 * i, COUNTRIES[i % 4], f"tok{i}", f"fw{i}"
        out.append(FlowSent(event_id=event_id("flow_sent", wamid), wamid=wamid, flow_id="F1", flow_version="1",
                            flow_token=token, campaign="spring", occurred_at_ms=at * 1000, received_at_ms=at * 1000))
        if i % 6 != 5:
            out.append(status(wamid, "sent", at + 1, country))
            if i % 7 == 6:
                out.append(status(wamid, "failed", at + 2, country, code=131049))
                continue
            if i % 5 != 1:
                out.append(status(wamid, "delivered", at + 3, country))
            if i % 3 == 0:
                out.append(status(wamid, "read", at + 4, country))
        if i % 4 == 3:
            continue
        for n, (screen, action) in enumerate((("A", "view"), ("A", "submit"), ("B", "view"))):
            out.append(_node(token, screen, action, (at + 10 + 5 * n) * 1000))
        if i % 2 == 0:
            out.append(_node(token, "B", "submit", (at + 30) * 1000))
            out.append(FlowCompletion(event_id=event_id("nfm_reply", f"r{i}"), waba_id="waba", phone_number_id="p1",
                                      wamid=f"r{i}", flow_wamid=wamid, flow_token=token, occurred_at=at + 40,
                                      received_at_ms=(at + 40) * 1000, user_hash="u", country=country))
    return out


def _node(token: str, screen: str, action: str, at_ms: int) -> NodeEvent:
    return NodeEvent(event_id=event_id("node", token, screen, action, str(at_ms)), flow_token=token, flow_id="F1",
                     flow_version="1", screen=screen, action=action, occurred_at_ms=at_ms, received_at_ms=at_ms)


def store_flows(client: Client, events: Sequence[object]) -> None:
    writer.write(client, *writer.inserts(
        flow_sends=[e for e in events if isinstance(e, FlowSent)],
        node_events=[e for e in events if isinstance(e, NodeEvent)],
        statuses=[e for e in events if isinstance(e, MessageStatus)],
        completions=[e for e in events if isinstance(e, FlowCompletion)]))


def flow_truth(events: Sequence[object]) -> dict[str, dict[str, int]]:
    """Per country (the largest its Flow message's statuses carried): sessions per stage, and sessions that
    reached screens A and B."""
    out = {c: dict.fromkeys(("sent", "delivered", "read", "opened", "completed", "failed", "A", "B"), 0)
           for c in COUNTRIES}
    for send in (e for e in events if isinstance(e, FlowSent)):
        mine = [e for e in events if getattr(e, "wamid", None) == send.wamid or
                getattr(e, "flow_token", None) == send.flow_token]
        reached = {e.status for e in mine if isinstance(e, MessageStatus)}
        screens = {e.screen for e in mine if isinstance(e, NodeEvent)}
        completed = any(isinstance(e, FlowCompletion) for e in mine)
        counts = out[max((e.country for e in mine if isinstance(e, MessageStatus)), default="")]
        counts["sent"] += 1
        counts["delivered"] += bool(reached & {"delivered", "read"})
        counts["read"] += "read" in reached
        counts["failed"] += "failed" in reached
        counts["opened"] += bool(screens) or completed
        counts["completed"] += completed
        for screen in screens:
            counts[screen] += 1
    return out


def window(**changes: object) -> flows.FlowFilter:
    where = flows.FlowFilter(start=datetime(2014, 1, 1), end=datetime(2100, 1, 1), timeout_s=1800,
                             now=datetime.fromtimestamp(NOW_S, UTC).replace(tzinfo=None))
    return dataclasses.replace(where, **changes)  # type: ignore[arg-type]


def flow_figures(client: Client, where: flows.FlowFilter) -> dict[str, int]:
    funnel = flows.funnel(client, where, by=("flow_id",))
    counts = {stage: int(funnel[stage].sum()) for stage in ("sent", "delivered", "read", "opened", "completed",
                                                           "failed")}
    nodes = flows.node_stats(client, where)
    counts.update({screen: int(nodes.loc[nodes["screen"] == screen, "reached"].sum()) for screen in ("A", "B")})
    return counts


def check_flows(client: Client, events: Sequence[object]) -> None:
    truth = flow_truth(events)
    for country in COUNTRIES:
        assert flow_figures(client, window(countries=(country,))) == truth[country], country
    unfiltered = flow_figures(client, window())
    assert unfiltered == {k: sum(truth[c][k] for c in COUNTRIES) for k in unfiltered}
    assert flow_figures(client, window(countries=COUNTRIES)) == unfiltered
    over_time = [flows.funnel_over_time(client, window(countries=(c,)), bucket_minutes=60) for c in COUNTRIES]
    assert sum(int(frame["sent"].sum()) for frame in over_time) == unfiltered["sent"]
    paths = [flows.paths(client, window(countries=(c,))) for c in COUNTRIES]
    assert sum(int(frame["sessions"].sum()) for frame in paths) == int(flows.paths(client, window())["sessions"].sum())


def test_flow_figures_by_country_are_exact_live_resolved_summed_and_after_a_late_status(client: Client) -> None:
    events = sessions()
    store_flows(client, events)
    store_flows(client, events[::4])  # duplicates
    check_flows(client, events)  # merged live
    SessionRollup(client, touch_margin=timedelta(0)).run_once(server_now(client))
    age_touches(client)  # read from the rows and sums the pass wrote, not merged live
    summed = client.query(f"SELECT country, sum(sessions) FROM {tables.FLOW_HOUR_PATHS_TABLE} FINAL "
                          "GROUP BY country ORDER BY country").result_rows
    truth = flow_truth(events)
    assert summed == [(c, truth[c]["sent"]) for c in sorted(COUNTRIES)]
    until = client.query(f"WITH {flows._SESSIONS} SELECT {flows._SUMMED_UNTIL}", parameters=window().parameters)
    assert until.result_rows[0][0].replace(tzinfo=None) > datetime.fromtimestamp(T0 + 4 * 3600, UTC).replace(
        tzinfo=None)  # every hour of the sessions is read from its sums
    check_flows(client, events)  # resolved rows and hour sums
    # A status of a session whose message had none gives it its country: counted at once (merged live), then
    # resolved and summed again by the next pass.
    late = status("fw5", "delivered", T0 + 600 * 5 + 3, "MX")
    store_flows(client, [late])
    events.append(late)
    assert flow_truth(events)["MX"]["sent"] == truth["MX"]["sent"] + 1
    check_flows(client, events)
    SessionRollup(client, touch_margin=timedelta(0)).run_once(server_now(client))
    age_touches(client)  # read from the rows and sums the pass wrote
    check_flows(client, events)


# --- migration 0017 over a warehouse with history ------------------------------------------------------------------


@pytest.fixture
def before_0017(tmp_path: Path) -> Iterator[Client]:
    """A warehouse migrated up to 0016, as it was before countries."""
    admin = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path}")
    admin.command("CREATE DATABASE IF NOT EXISTS flowscope")
    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path}", database="flowscope")
    apply_and_backfill(client, "flowscope", upto=16)
    yield client
    client.close()


def seal_as_before_0017(client: Client) -> None:
    """What the rollup wrote before migration 0017, without countries: sealed minute and hour counts, the
    read-undelivered set and resolved sessions (the same statements as then, less the country)."""
    sealed = (NOW_S - 300) // 3600 * 3600
    at = f"toDateTime({sealed}, 'UTC')"
    client.command(f"INSERT INTO {tables.MESSAGE_STATUS_COUNTS_TABLE} (phone_number_id, minute, status, error_code, "
                   f"messages, sealed_at) SELECT phone_number_id, minute, status, error_code, "
                   f"uniqExactMerge(messages), now64(3) FROM {tables.MESSAGE_STATUS_MINUTE_TABLE} WHERE minute < {at} "
                   "GROUP BY ALL")
    client.command(f"INSERT INTO {tables.MESSAGE_STATUS_HOUR_COUNTS_TABLE} (phone_number_id, hour, status, error_code, "
                   f"messages, sealed_at) SELECT phone_number_id, toStartOfHour(minute) AS hour, status, error_code, "
                   f"sum(messages), now64(3) FROM {tables.MESSAGE_STATUS_COUNTS_TABLE} FINAL GROUP BY ALL")
    client.command(f"INSERT INTO {tables.MESSAGES_READ_UNDELIVERED_TABLE} (phone_number_id, wamid, read_at, version, "
                   f"is_deleted) SELECT phone_number_id, wamid, minIf(occurred_at, status = 'read'), now64(3), 0 "
                   f"FROM {tables.MESSAGE_STATUSES_TABLE} WHERE status IN ('delivered', 'read') "
                   "GROUP BY phone_number_id, wamid HAVING countIf(status = 'delivered') = 0")
    then = [c for c in ROW_COLUMNS if c != "country"]
    client.command(f"INSERT INTO {tables.FLOW_SESSION_ROWS_TABLE} ({', '.join(then)}, resolved_at, is_deleted) "
                   f"SELECT {', '.join(then)}, now64(3), 0 FROM ({resolve_sql('1')})")
    client.command(f"INSERT INTO {tables.FLOW_SESSION_KEYS_TABLE} (flow_token, flow_id, sent_at) "
                   f"SELECT flow_token, flow_id, sent_at FROM {tables.FLOW_SESSION_ROWS_TABLE} FINAL")
    client.insert(tables.ROLLUP_PROGRESS_TABLE, [
        (DELIVERY_SEALED, datetime.fromtimestamp(sealed, UTC).replace(tzinfo=None), server_now(client)),
        (DELIVERY_HOURS, datetime.fromtimestamp(sealed, UTC).replace(tzinfo=None), server_now(client)),
        (READS_CHECKED, server_now(client), server_now(client)),
        (flows.SESSIONS_RESOLVED, server_now(client), server_now(client))],
        column_names=["task", "until", "updated_at"])


def test_migration_0017_backfills_the_countries_of_a_warehouse_with_history(before_0017: Client) -> None:
    client = before_0017
    assert "country" not in {name for (name,) in client.query(
        f"SELECT name FROM system.columns WHERE database = 'flowscope' AND table = "
        f"'{tables.MESSAGE_STATUS_COUNTS_TABLE}'").result_rows}
    deliveries, flow_events = messages(), sessions()
    writer.write(client, *writer.inserts(statuses=deliveries))
    store_flows(client, flow_events)
    seal_as_before_0017(client)

    applied = apply_and_backfill(client, "flowscope", upto=17)
    assert [m.name for m in applied] == ["0017_country.sql"]
    for table in (tables.MESSAGE_STATUS_MINUTE_TABLE, tables.MESSAGE_STATUS_COUNTS_TABLE,
                  tables.MESSAGE_STATUS_HOUR_COUNTS_TABLE, tables.MESSAGES_READ_UNDELIVERED_TABLE,
                  tables.FLOW_SESSION_ROWS_TABLE, tables.FLOW_HOUR_PATHS_TABLE, tables.FLOW_HOUR_VISITS_TABLE):
        final = "" if table == tables.MESSAGE_STATUS_MINUTE_TABLE else "FINAL"
        found = {c for (c,) in client.query(f"SELECT DISTINCT country FROM {table} {final}").result_rows}
        assert found == set(COUNTRIES) or (table == tables.MESSAGES_READ_UNDELIVERED_TABLE and found - {""}), table
    age_touches(client)  # the sessions are read from their backfilled rows and hour sums, not merged live
    statuses = [e for e in (*deliveries, *flow_events) if isinstance(e, MessageStatus)]
    check_delivery(client, statuses)
    check_flows(client, flow_events)
    # The rollup goes on from the backfilled tables: its passes change no figure.
    rollup(client).run_once()
    SessionRollup(client).run_once(server_now(client))
    check_delivery(client, statuses)
    check_flows(client, flow_events)
