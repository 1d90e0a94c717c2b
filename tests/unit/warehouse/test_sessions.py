"""Session assembly, in the real ClickHouse engine (chDB in-process): hand-made sessions covering the
edge cases — duplicates, events before the send, BACK navigation, completion without screen events,
abandonment, failure — and the exact funnel, per-screen and path figures the dashboards read."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import clickhouse_connect
import msgspec
import pandas as pd
import pytest
from clickhouse_connect.driver.client import Client

from contract.events import FlowCompletion, FlowSent, MessageStatus, NodeEvent, event_id
from contract.flowjson import parse_flow_json
from tests.samples import FLOW_JSON
from tests.unit.warehouse.touches import age_touches
from warehouse import buckets, flows, screens, tables, writer
from warehouse.migrate import _apply, backfill_new_derived_tables, load_migrations
from warehouse.resolution import SessionRollup
from warehouse.rollup import server_now

NOW_S = int(time.time())
T0 = (NOW_S - 7200) * 1000  # sessions two hours ago: older than the 30 min abandonment timeout



def sent(n: int, at_ms: int = T0) -> FlowSent:
    return FlowSent(event_id=event_id("flow_sent", f"w{n}"), wamid=f"w{n}", flow_id="F1", flow_version="1",
                    flow_token=f"tok{n}", campaign="spring", occurred_at_ms=at_ms, received_at_ms=at_ms)


def node(n: int, screen: str, action: str, offset_s: float, *, base: int = T0, **fields: str) -> NodeEvent:
    at = base + int(offset_s * 1000)
    return NodeEvent(event_id=event_id("node", f"tok{n}", screen, action, str(at)), flow_token=f"tok{n}",
                     flow_id="F1", flow_version="1", screen=screen, action=action, occurred_at_ms=at,
                     received_at_ms=at, fields=dict(fields), field_keys=sorted(fields))


def status(n: int, value: str, offset_s: int) -> MessageStatus:
    return MessageStatus(event_id=event_id("status", f"w{n}", value), waba_id="waba", phone_number_id="p",
                         wamid=f"w{n}", status=value, occurred_at=T0 // 1000 + offset_s, received_at_ms=T0,
                         recipient_hash="h", error_code=131049 if value == "failed" else 0)


def completion(n: int, offset_s: int) -> FlowCompletion:
    return FlowCompletion(event_id=event_id("nfm_reply", f"r{n}"), waba_id="waba", phone_number_id="p",
                          wamid=f"r{n}", flow_wamid=f"w{n}", flow_token=f"tok{n}",
                          occurred_at=T0 // 1000 + offset_s, received_at_ms=T0, user_hash="u")


_KIND = {FlowSent: "flow_sends", NodeEvent: "node_events", MessageStatus: "statuses", FlowCompletion: "completions"}


def insert(client: Client, events: Sequence[object], *, as_then: bool = False) -> None:
    """Each kind into its table, in the order given, one insert per event (worst case for merges); ``as_then``: only
    the columns the tables have (an older schema, before later migrations added columns)."""
    if as_then:
        existing = set(client.query("SELECT table, name FROM system.columns WHERE database = currentDatabase()")
                       .result_rows)
        for event in events:
            for part in writer.inserts(**{_KIND[type(event)]: [event]}):
                keep = [i for i, column in enumerate(part.columns) if (part.table, column) in existing]
                writer.write(client, writer.Insert(part.table, tuple(part.columns[i] for i in keep),
                                                   [part.data[i] for i in keep], part.rows))
        return
    for event in events:
        if isinstance(event, FlowSent):
            writer.write(client, *writer.inserts(flow_sends=[event]))
        elif isinstance(event, NodeEvent):
            writer.write(client, *writer.inserts(node_events=[event]))
        elif isinstance(event, MessageStatus):
            writer.write(client, *writer.inserts(statuses=[event]))
        elif isinstance(event, FlowCompletion):
            writer.write(client, *writer.inserts(completions=[event]))


def scenario() -> list[object]:
    s1 = [sent(1), status(1, "sent", 1), status(1, "delivered", 2), status(1, "read", 5),
          node(1, "A", "view", 10), node(1, "A", "submit", 20), node(1, "B", "view", 21),
          node(1, "B", "submit", 40, plan="pro"), node(1, "C", "view", 41), node(1, "C", "submit", 50),
          completion(1, 55)]
    s2 = [sent(2), status(2, "sent", 1), status(2, "read", 3),  # read with no delivered: chat was open
          node(2, "A", "view", 10), node(2, "A", "submit", 15), node(2, "B", "view", 16), node(2, "B", "back", 20),
          node(2, "A", "view", 21), node(2, "A", "submit", 30), node(2, "B", "view", 31)]
    s3 = [sent(3), status(3, "sent", 1), status(3, "delivered", 2), completion(3, 100)]  # static flow
    s4 = [sent(4), status(4, "sent", 1), status(4, "failed", 2)]
    s5_nodes = [node(5, "A", "view", 10), node(5, "A", "submit", 20), node(5, "B", "view", 21)]
    s5 = [*s5_nodes, sent(5), status(5, "delivered", 2)]  # screen events before the send
    recent = (NOW_S - 60) * 1000
    s6 = [sent(6, recent), node(6, "A", "view", 30, base=recent)]  # still going
    duplicates = [s1[4], s1[7], s2[6], s3[-1], s4[-1], s5_nodes[0]]
    return [*s5_nodes[:2], *s1, *s2, *duplicates, *s3, *s4, *s5[2:], *s6]


def window() -> flows.FlowFilter:
    return flows.FlowFilter(start=datetime(2014, 1, 1), end=datetime(2100, 1, 1), timeout_s=1800,
                            now=datetime.fromtimestamp(NOW_S, UTC).replace(tzinfo=None))


def test_funnel_counts_each_session_once_in_each_stage(client: Client) -> None:
    insert(client, scenario())
    funnel = flows.funnel(client, window())
    assert funnel.to_dict("records") == [{
        "flow_id": "F1", "flow_version": "1", "sent": 6, "delivered": 4, "read": 2, "opened": 5, "completed": 2,
        "abandoned": 2, "ongoing": 1, "failed": 1,
    }]
    by_campaign = flows.funnel(client, window(), by=("campaign",))
    assert by_campaign[["campaign", "sent", "completed"]].to_dict("records") == [
        {"campaign": "spring", "sent": 6, "completed": 2}
    ]


def test_per_screen_reach_drop_off_and_time(client: Client) -> None:
    insert(client, scenario())
    stats = flows.node_stats(client, window())
    assert stats.drop(columns=["flow_id", "flow_version"]).to_dict("records") == [
        {"screen": "A", "reached": 4, "dropped": 0, "completed_after": 1, "visits": 4, "median_ms": 11000,
         "p90_ms": 11000},
        {"screen": "B", "reached": 3, "dropped": 2, "completed_after": 1, "visits": 2, "median_ms": 20000,
         "p90_ms": 20000},
        {"screen": "C", "reached": 1, "dropped": 0, "completed_after": 1, "visits": 1, "median_ms": 14000,
         "p90_ms": 14000},
    ]


def test_paths_follow_back_navigation(client: Client) -> None:
    insert(client, scenario())
    found = flows.paths(client, window())
    assert sorted(found[["path", "completed", "abandoned", "ongoing"]].itertuples(index=False, name=None)) == [
        ("A", 0, 0, 1), ("A>B", 0, 1, 0), ("A>B>A>B", 0, 1, 0), ("A>B>C", 1, 0, 0),
    ]
    moves = flows.transitions(client, window())
    assert sorted(moves.itertuples(index=False, name=None)) == [
        (1, "A", "B", 3), (1, "A", "ongoing", 1), (2, "B", "A", 1), (2, "B", "C", 1), (2, "B", "dropped", 1),
        (3, "A", "B", 1), (3, "C", "completed", 1), (4, "B", "dropped", 1),
    ]


def test_selections_count_sessions_not_events(client: Client) -> None:
    insert(client, scenario())
    assert flows.selections(client, flow_id="F1").to_dict("records") == [
        {"flow_version": "1", "screen": "B", "field": "plan", "value": "pro", "sessions": 1}
    ]


def test_abandonment_depends_on_the_timeout(client: Client) -> None:
    insert(client, scenario())
    patient = flows.FlowFilter(start=datetime(2014, 1, 1), end=datetime(2100, 1, 1), timeout_s=3 * 3600,
                               now=datetime.fromtimestamp(NOW_S, UTC).replace(tzinfo=None))
    funnel = flows.funnel(client, patient).iloc[0]
    assert (funnel["abandoned"], funnel["ongoing"]) == (0, 3)


def test_registered_screens_come_in_routing_order(client: Client) -> None:
    definition = parse_flow_json(FLOW_JSON, flow_id="F1", version="1")
    writer.write(client, *writer.inserts(definitions=[writer.FlowRegistration(definition, "{}", T0)]))
    registered = screens.flow_screens(client, "F1", "1")
    assert registered[["screen", "position", "title", "terminal"]].to_dict("records") == [
        {"screen": "A", "position": 0, "title": "Start", "terminal": 0},
        {"screen": "B", "position": 1, "title": "Plan", "terminal": 0},
        {"screen": "C", "position": 2, "title": "Done", "terminal": 1},
    ]
    assert screens.load_catalog(client) == {("F1", "1"): ("A", frozenset({"A", "B", "C"}))}


def test_a_range_counts_only_the_sessions_sent_in_it(client: Client) -> None:
    # s6 was sent a minute ago, s1..s5 two hours ago; a session with two sends counts at its first.
    insert(client, [*scenario(), sent(7, T0 - 86_400_000), sent(7, (NOW_S - 30) * 1000)])
    now = datetime.fromtimestamp(NOW_S, UTC).replace(tzinfo=None)
    last_hour = flows.FlowFilter(start=datetime.fromtimestamp(NOW_S - 3600, UTC).replace(tzinfo=None), end=now,
                                 timeout_s=1800, now=now)
    assert flows.funnel(client, last_hour)[["sent", "opened", "ongoing"]].to_dict("records") == [
        {"sent": 1, "opened": 1, "ongoing": 1}
    ]
    assert flows.funnel(client, window())["sent"].tolist() == [7]
    assert flows.funnel(client, dataclasses.replace(window(), flow_id="F2")).empty


def test_sends_stored_before_the_time_index_existed_are_indexed_by_its_migration(tmp_path: Path) -> None:
    migrations = load_migrations()
    index = next(m for m in migrations if m.name.startswith("0006"))
    admin = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path}")
    admin.command("CREATE DATABASE IF NOT EXISTS flowscope")
    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path}", database="flowscope")
    for migration in migrations:
        if migration.version < index.version:
            for statement in migration.statements:
                client.command(statement)
    insert(client, scenario(), as_then=True)
    for statement in index.statements:
        client.command(statement)
    # The later migrations, then the backfill migrate() runs for the derived tables they created.
    before = {row[0] for row in client.query("SELECT name FROM system.tables WHERE database = 'flowscope'").result_rows}
    _apply(client)
    after = {row[0] for row in client.query("SELECT name FROM system.tables WHERE database = 'flowscope'").result_rows}
    assert tables.FLOW_SESSION_ROWS_TABLE in backfill_new_derived_tables(client, "flowscope", created=after - before)
    assert flows.funnel(client, window())["sent"].tolist() == [6]
    client.close()


def test_flow_versions_lists_sent_and_registered_versions(client: Client) -> None:
    insert(client, scenario())
    assert flows.flow_versions(client).to_dict("records") == [
        {"flow_id": "F1", "flow_version": "1", "campaign": "spring"}
    ]
    definition = parse_flow_json(FLOW_JSON, flow_id="F2", version="3")
    writer.write(client, *writer.inserts(definitions=[writer.FlowRegistration(definition, "{}", T0)]))
    assert flows.flow_versions(client).to_dict("records") == [
        {"flow_id": "F1", "flow_version": "1", "campaign": "spring"},
        {"flow_id": "F2", "flow_version": "3", "campaign": ""},
    ]


def every_figure(client: Client) -> dict[str, object]:
    where = window()
    one = dataclasses.replace(where, flow_version="1")
    return {
        "funnel": flows.funnel(client, where).to_dict("records"),
        "by_campaign": flows.funnel(client, where, by=("campaign",)).to_dict("records"),
        "over_time": flows.funnel_over_time(client, where, bucket_minutes=60).to_dict("records"),
        "nodes": flows.node_stats(client, one).to_dict("records"),
        "paths": flows.paths(client, one).to_dict("records"),
        "transitions": flows.transitions(client, one).to_dict("records"),
    }


def resolved_rows(client: Client) -> int:
    return int(client.command(f"SELECT count() FROM {tables.FLOW_SESSION_ROWS_TABLE} FINAL"))


def test_resolved_sessions_give_the_figures_of_the_live_merge(client: Client) -> None:
    insert(client, scenario())
    live = every_figure(client)  # no pass yet: every session is merged live
    rollup = SessionRollup(client, touch_margin=timedelta(0))
    first = rollup.run_once(server_now(client))
    assert first.sessions == resolved_rows(client) == 6  # every sent session (tok5's events came before its send)
    assert every_figure(client) == live  # now read from the resolved rows
    again = rollup.run_once(server_now(client))
    assert again.sessions == 0 and every_figure(client) == live  # nothing touched since: nothing to do


def test_a_session_touched_after_it_was_resolved_counts_at_once_and_is_resolved_again(client: Client) -> None:
    insert(client, scenario())
    rollup = SessionRollup(client, touch_margin=timedelta(0))
    rollup.run_once(server_now(client))
    before = flows.funnel(client, window()).iloc[0]
    assert (before["completed"], before["delivered"]) == (2, 4)
    # tok2, resolved as abandoned on screen B, completes later; tok6's message is delivered later.
    time.sleep(0.01)
    insert(client, [completion(2, 600), status(6, "delivered", 7000)])
    touched = flows.funnel(client, window()).iloc[0]  # merged live until the next pass
    assert (touched["completed"], touched["delivered"], touched["abandoned"]) == (3, 5, 1)
    done = rollup.run_once(server_now(client))
    assert done.sessions == 2
    assert flows.funnel(client, window()).to_dict("records") == [touched.to_dict()]
    assert resolved_rows(client) == 6


def test_a_session_whose_send_moves_leaves_no_row_behind(client: Client) -> None:
    insert(client, scenario())
    rollup = SessionRollup(client, touch_margin=timedelta(0))
    rollup.run_once(server_now(client))
    time.sleep(0.01)
    earlier = msgspec.structs.replace(sent(3, T0 - 60_000), event_id="another send of tok3")
    insert(client, [earlier])  # a second send of tok3, a minute earlier: the session's send time moves
    done = rollup.run_once(server_now(client))
    assert done.moved == 1
    assert resolved_rows(client) == 6
    assert flows.funnel(client, window())["sent"].tolist() == [6]


def summed_until(client: Client, where: flows.FlowFilter) -> datetime:
    """Where the sums of whole hours end for ``where`` (its hours_from: none read)."""
    sql = f"WITH {flows._SESSIONS} SELECT {flows._SUMMED_UNTIL}"
    return client.query(sql, parameters=where.parameters).result_rows[0][0].replace(tzinfo=None)


def test_hour_sums_give_the_figures_of_the_resolved_rows(client: Client) -> None:
    insert(client, scenario())
    live = every_figure(client)
    age_touches(client)
    SessionRollup(client, touch_margin=timedelta(0)).run_once(server_now(client))
    sums = client.query(f"SELECT sum(sessions), sum(completed), sum(open) FROM {tables.FLOW_HOUR_PATHS_TABLE} FINAL")
    assert sums.result_rows == [(6, 2, 3)]  # tok2 and tok5 (abandoned) and tok6 (ongoing) are open
    # The hour of the old sessions is read from the sums; the hour of tok6 (still going) from its row.
    old_hour = datetime.fromtimestamp(T0 // 1000, UTC).replace(tzinfo=None, minute=0, second=0, microsecond=0)
    assert summed_until(client, window()) > old_hour
    assert every_figure(client) == live
    # A range whose first hour is ragged reads its sessions from the rows: same figures as without sums.
    ragged = dataclasses.replace(window(), start=datetime.fromtimestamp(T0 // 1000 - 1, UTC).replace(tzinfo=None))
    assert ragged.hours()["hours_from"] > old_hour  # the old sessions' hour is not whole in it
    assert flows.funnel(client, ragged).to_dict("records") == flows.funnel(client, window()).to_dict("records")
    client.command(f"DELETE FROM {tables.ROLLUP_PROGRESS_TABLE} WHERE task = 'flow_hours'")  # no sums read
    assert summed_until(client, window()) == window().hours()["hours_from"]
    assert every_figure(client) == live


def test_a_resolved_session_moving_out_of_an_hour_leaves_no_sum_behind(client: Client) -> None:
    insert(client, scenario())
    age_touches(client)
    rollup = SessionRollup(client, touch_margin=timedelta(0))
    rollup.run_once(server_now(client))
    time.sleep(0.01)
    # A second send of tok3 three hours earlier: its session moves to another hour, which a pass sums again.
    earlier = msgspec.structs.replace(sent(3, T0 - 3 * 3600_000), event_id="an earlier send of tok3")
    insert(client, [earlier])
    rollup.run_once(server_now(client))
    hours = client.query(f"SELECT hour, sum(sessions) FROM {tables.FLOW_HOUR_PATHS_TABLE} FINAL "
                         "GROUP BY hour ORDER BY hour").result_rows
    assert [n for _, n in hours][:2] == [1, 4]  # tok3 alone three hours earlier; tok1, 2, 4, 5 in their hour
    assert sum(n for _, n in hours) == 6
    assert flows.funnel(client, window())["sent"].tolist() == [6]  # tok3 touched: its hours read from rows
    age_touches(client)
    rollup.run_once(server_now(client))
    assert summed_until(client, window()) > hours[1][0].replace(tzinfo=None)  # now both hours from the sums
    assert flows.funnel(client, window())["sent"].tolist() == [6]


def test_quantiles_picked_from_counted_lengths_are_those_of_quantile_exact(client: Client) -> None:
    import random

    rng = random.Random(7)
    for size in (1, 2, 3, 4, 5, 9, 10, 11, 100, 257):
        values = [rng.choice((5, 5, 7, 1000, 1001, 42_000)) + rng.randrange(3) for _ in range(size)]
        sql = f"""
            SELECT quantileExact(0.5)(v), quantileExact(0.9)(v), {flows.pick(0.5)}, {flows.pick(0.9)}
            FROM (SELECT arraySort(arrayMap(x -> (x, toUInt64(countEqual({{vs:Array(Int64)}}, x))),
                                            arrayDistinct({{vs:Array(Int64)}}))) AS pairs,
                         arrayCumSum(arrayMap(p -> p.2, pairs)) AS counted,
                         toUInt64(length({{vs:Array(Int64)}})) AS visits)
            ARRAY JOIN {{vs:Array(Int64)}} AS v
            GROUP BY pairs, counted, visits
        """
        median, p90, picked_median, picked_p90 = client.query(sql, parameters={"vs": values}).result_rows[0]
        assert (picked_median, picked_p90) == (median, p90), values


def test_one_active_bucket_becomes_a_series_over_the_whole_range(client: Client) -> None:
    # Issue 15: sessions all sent within one hour of a 24-hour range come back as one bucket, which the page
    # drew as a line of one point (nothing drawn, an axis of milliseconds around that instant).
    at = datetime(2026, 3, 1, 10, 17, 5)
    at_ms = int(at.replace(tzinfo=UTC).timestamp() * 1000)
    insert(client, [sent(1, at_ms), sent(2, at_ms + 60_000), sent(3, at_ms + 1_800_000), completion(1, 0)])
    where = flows.FlowFilter(start=datetime(2026, 3, 1, 0, 30), end=datetime(2026, 3, 2, 0, 30), timeout_s=1800,
                             now=datetime(2026, 3, 2, 0, 30))
    bucket = buckets.over_time_bucket_minutes(where.end - where.start)
    assert bucket == 60
    raw = flows.funnel_over_time(client, where, bucket_minutes=bucket)
    assert raw[["bucket", "sent"]].to_dict("records") == [{"bucket": pd.Timestamp("2026-03-01 10:00"), "sent": 3}]
    series = buckets.every_bucket(raw, start=where.start, end=where.end, bucket_minutes=bucket)
    # Every hour from the one holding the start (00:00) to the one holding the end (the next day's 00:00).
    assert series["bucket"].tolist() == list(pd.date_range("2026-03-01 00:00", "2026-03-02 00:00", freq="h"))
    assert series["sent"].tolist() == [0] * 10 + [3] + [0] * 14
    assert series["completed"].tolist() == [0] * 10 + [1] + [0] * 14  # by send time: tok1's, whenever it came
    assert str(series["bucket"].dtype) == "datetime64[ns]"
    assert {str(series[stage].dtype) for stage in flows.STAGES} == {"int64"}


def test_every_bucket_fills_the_range_whatever_the_bucket_and_time_zone() -> None:
    columns = {stage: [2] for stage in flows.STAGES}
    utc = pd.DataFrame({"bucket": [pd.Timestamp("2026-03-01 10:05", tz="UTC")], **columns})
    series = buckets.every_bucket(utc, start=datetime(2026, 3, 1, 9, 58), end=datetime(2026, 3, 1, 10, 12),
                                bucket_minutes=5)
    assert series.to_dict("records") == [
        {"bucket": pd.Timestamp(f"2026-03-01 {t}"), **{stage: n for stage in flows.STAGES}}
        for t, n in (("09:55", 0), ("10:00", 0), ("10:05", 2), ("10:10", 0))
    ]
    empty = pd.DataFrame(columns=["bucket", *flows.STAGES])
    days = buckets.every_bucket(empty, start=datetime(2026, 1, 1, 12), end=datetime(2026, 1, 31, 12),
                              bucket_minutes=24 * 60)
    assert days["bucket"].tolist() == list(pd.date_range("2026-01-01", "2026-01-31", freq="D"))
    assert days[list(flows.STAGES)].to_numpy().sum() == 0
    with pytest.raises(ValueError, match="bucket_minutes must be positive"):
        buckets.every_bucket(empty, start=datetime(2026, 1, 1), end=datetime(2026, 1, 2), bucket_minutes=0)
    with pytest.raises(ValueError, match="ends .* before it starts"):
        buckets.every_bucket(empty, start=datetime(2026, 1, 2), end=datetime(2026, 1, 1), bucket_minutes=5)


def test_over_time_buckets_by_range() -> None:
    assert [buckets.over_time_bucket_minutes(span) for span in (
        timedelta(hours=1), timedelta(hours=6), timedelta(hours=6, seconds=1), timedelta(days=7),
        timedelta(days=7, seconds=1), timedelta(days=90))] == [5, 5, 60, 60, 1440, 1440]
