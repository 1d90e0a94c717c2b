"""Funnels, node drop-off, people, costs and opt-outs, exact, end to end on the real broker and warehouse.

The simulator's flows (one with conditional branches) are registered, at least 20,000 sessions are
simulated across them (duplicates and reordering included; Meta's 2026 identity mix: a third of the users
known only by BSUID, phones shown on some events and not others, parent BSUIDs, number and BSUID changes in
the middle of sessions; every pricing type; opt-outs inside and outside the window; value-level errors), the
stream worker is killed and restarted in the middle, and every funnel stage, per-screen figure, distinct
person count, cost, opt-out count and time-to-complete percentile the dashboard queries return must equal the
simulator's truth exactly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from config.ratecard import SAMPLE_PATH, RateCard
from flowtools.simulator.flows import ALLOWLIST, write_flow_jsons
from flowtools.simulator.sessions import generate_sessions, requests, send, truth
from tests.stack import Stack, poll
from warehouse import audience, costs, flows, queries, screens
from warehouse.client import connect

SESSIONS = 20_000
OPT_OUT_WINDOW = timedelta(hours=48)



def register(stack: Stack, directory: Path) -> list[tuple[str, str]]:
    """Half the versions through the CLI, half through the receiver's HTTP endpoint."""
    registered = []
    for n, (flow_id, version, path) in enumerate(write_flow_jsons(directory)):
        if n % 2 == 0:
            subprocess.run(
                [sys.executable, "-m", "flowscope.cli", "flows", "register", str(path), "--flow-id", flow_id,
                 "--version", version],
                check=True, env={**stack.supervisor.base_env, **stack.settings.as_env()}, capture_output=True,
            )
        else:
            response = httpx.put(
                f"http://127.0.0.1:{stack.settings.ingest_port}/flows/{flow_id}/versions/{version}",
                content=path.read_bytes(), headers={"Authorization": f"Bearer {stack.settings.events_token}"},
            )
            assert response.status_code == 200, response.text
        registered.append((flow_id, version))
    return registered


def test_every_funnel_and_node_number_equals_the_truth(stack_factory: Callable[..., Stack], tmp_path: Path) -> None:
    stack = stack_factory("broker", "warehouse", "receiver", "stream", form_fields_allowlist=ALLOWLIST)
    registered = register(stack, tmp_path / "flows")
    client = connect(stack.settings.warehouse_url_for("analyst"))
    assert poll(lambda: len(screens.load_catalog(client)), want=len(registered), deadline_s=30) == len(registered)
    card = RateCard.from_file(SAMPLE_PATH)
    costs.store_rate_card(connect(stack.settings.warehouse_url_for("writer")), card, source=SAMPLE_PATH.name)

    sessions = generate_sessions(SESSIONS, seed=2026, start_ms=int((time.time() - 7200) * 1000), spacing_ms=200)
    posts = requests(sessions, seed=2026)
    undelivered: list[int] = []
    settings = stack.settings
    simulation = threading.Thread(target=lambda: undelivered.append(asyncio.run(send(
        posts, webhook_url=stack.webhook_url, events_url=f"http://127.0.0.1:{settings.ingest_port}/events",
        app_secret=settings.app_secret, events_token=settings.events_token, concurrency=24))))
    simulation.start()
    # Restart the stream worker once, in the middle of the traffic.
    assert poll(lambda: client.command("SELECT count() >= 4000 FROM flow_sends"), want=1, deadline_s=180) == 1
    stack.supervisor.kill("stream")
    stack.start("stream")
    simulation.join()
    assert undelivered == [0]

    now = datetime.now(UTC).replace(tzinfo=None)
    expected = truth(sessions, timeout_s=settings.session_timeout_s, now_s=now.replace(tzinfo=UTC).timestamp(),
                     rate_card=card, opt_out_window_s=int(OPT_OUT_WINDOW.total_seconds()))
    window = flows.FlowFilter(start=now - timedelta(days=2), end=now + timedelta(hours=1), now=now,
                              timeout_s=stack.settings.session_timeout_s)
    expected_funnel = sorted(
        (flow_id, version, *(numbers["funnel"][k] for k in ("sent", "delivered", "read", "opened", "completed",
                                                             "abandoned", "failed")))
        for flow_id, flow in expected["flows"].items() for version, numbers in flow["versions"].items()
    )
    assert sum(row[2] for row in expected_funnel) >= SESSIONS

    def funnel_now() -> list[tuple[Any, ...]]:
        frame = flows.funnel(client, window)
        return sorted(frame[["flow_id", "flow_version", "sent", "delivered", "read", "opened", "completed",
                             "abandoned", "failed"]].itertuples(index=False, name=None))

    assert poll(funnel_now, want=expected_funnel, deadline_s=180) == expected_funnel
    assert flows.funnel(client, window)["ongoing"].sum() == 0

    by_campaign = flows.funnel(client, window, by=("flow_id", "flow_version", "campaign"))
    got_campaigns = {(r.flow_id, r.flow_version, r.campaign): (r.sent, r.completed, r.abandoned)
                     for r in by_campaign.itertuples()}
    want_campaigns = {(flow_id, version, campaign): (c["sent"], c["completed"], c["abandoned"])
                      for flow_id, flow in expected["flows"].items() for version, numbers in flow["versions"].items()
                      for campaign, c in numbers["by_campaign"].items() if c["sent"]}
    assert got_campaigns == want_campaigns
    # The funnel page asks once, by flow, version, campaign and hour of the send, and sums that into its groupings
    # and its series over time: the same figures as asking for each grouping, of every version and of one.
    for flow_id in expected["flows"]:
        one_flow = dataclasses.replace(window, flow_id=flow_id)
        finest = flows.funnel(client, one_flow, by=("flow_id", "flow_version", "campaign"), bucket_minutes=60)
        assert finest["bucket"].nunique() > 1
        for version in ("", *expected["flows"][flow_id]["versions"]):
            chosen = dataclasses.replace(one_flow, flow_version=version)
            for by in (("flow_id",), ("flow_id", "flow_version"), ("campaign",)):
                direct = flows.funnel(client, chosen, by=by).to_dict("records")
                assert flows.regroup(finest, by, flow_version=version).to_dict("records") == direct, (version, by)
            series = flows.over_time(finest, flow_version=version)
            totals = flows.funnel(client, chosen, by=("flow_id",)).iloc[0]
            assert series[list(flows.STAGES)].sum().tolist() == [totals[s] for s in flows.STAGES], version

    stats = flows.node_stats(client, window)
    got_nodes = {(r.flow_id, r.flow_version, r.screen): (r.reached, r.dropped, r.completed_after, r.visits,
                                                        r.median_ms, r.p90_ms)
                 for r in stats.itertuples()}
    want_nodes = {(flow_id, version, screen): (s["reached"], s["dropped"], s["completed_after"], s["visits"],
                                               s["median_ms"], s["p90_ms"])
                  for flow_id, flow in expected["flows"].items() for version, numbers in flow["versions"].items()
                  for screen, s in numbers["screens"].items() if s["reached"]}
    assert got_nodes == want_nodes

    got_paths = {(r.flow_id, r.flow_version, r.path): (r.completed, r.abandoned)
                 for r in flows.paths(client, window, limit=100_000).itertuples()}
    want_paths = {(flow_id, version, path): (p["completed"], p["abandoned"])
                  for flow_id, flow in expected["flows"].items() for version, numbers in flow["versions"].items()
                  for path, p in numbers["paths"].items()}
    assert got_paths == want_paths

    for flow_id, flow in expected["flows"].items():
        chosen = flows.selections(client, flow_id=flow_id)
        got = {(r.flow_version, r.screen, r.field, r.value): r.sessions for r in chosen.itertuples()}
        want = {(version, screen, field, value): n
                for version, numbers in flow["versions"].items()
                for screen, fields in numbers["selections"].items()
                for field, values in fields.items() for value, n in values.items()}
        assert got == want
    # Free-text answers never reach storage.
    assert client.command("SELECT count() FROM flow_node_events WHERE has(mapKeys(fields), 'email')") == 0

    # People, costs, opt-outs and times to complete. Persons are resolved by the rollup's passes over the links
    # the events made: poll until the last links are resolved.
    versions = {(flow_id, version): numbers for flow_id, flow in expected["flows"].items()
                for version, numbers in flow["versions"].items()}

    def people_now() -> dict[tuple[str, ...], tuple[int, int, int, Decimal]]:
        got = audience.audience(client, window, by=("flow_id", "flow_version"), window=OPT_OUT_WINDOW)
        return {key: (a.persons, a.opt_outs, a.spend.charged, a.spend.spend) for key, a in got.items()}

    want_people = {key: (v["persons"], v["opt_outs"], v["billable_messages"], Decimal(v["spend"]))
                   for key, v in versions.items()}
    assert poll(people_now, want=want_people, deadline_s=120) == want_people
    assert all(a.spend.unpriced == 0 for a in audience.audience(client, window, by=("flow_id",)).values())
    got_by_campaign = {key: (a.persons, a.opt_outs, a.spend.spend) for key, a in audience.audience(
        client, window, by=("flow_id", "flow_version", "campaign"), window=OPT_OUT_WINDOW).items()}
    want_by_campaign = {(flow_id, version, campaign): (c["persons"], c["opt_outs"], Decimal(c["spend"]))
                        for (flow_id, version), v in versions.items() for campaign, c in v["by_campaign"].items()
                        if c["sent"]}
    assert got_by_campaign == want_by_campaign
    # The funnel page's groupings asked at once (GROUPING SETS) equal each asked alone, whole Audience records.
    groupings = (("flow_id",), ("country",), ("flow_version", "campaign"), ("flow_id", "flow_version", "campaign"))
    at_once = audience.audience_sets(client, window, groupings, window=OPT_OUT_WINDOW)
    for by in groupings:
        alone = audience.audience(client, window, by=by, window=OPT_OUT_WINDOW)
        assert len(alone) > 1 and at_once[by] == alone, by
    everyone = queries.DeliveryFilter(start=window.start, end=window.end)
    assert audience.delivery_persons(client, everyone) == expected["persons"]
    spend_by_country = costs.spend(client, everyone, by=("country",), card=card)
    assert {r.country: r.spend for r in spend_by_country.itertuples() if r.spend} == {
        country: Decimal(spend) for country, spend in expected["spend_by_country"].items() if Decimal(spend)}
    assert queries.webhook_error_counts(client, everyone) == {
        int(code): n for code, n in expected["webhook_errors"].items()}

    times = audience.time_to_complete(client, window)
    got_times = {(r.flow_id, r.flow_version): (r.completions, r.p50_ms, r.p90_ms) for r in times.itertuples()}
    want_times = {key: (t["completions"], t["p50_ms"], t["p90_ms"])
                  for key, v in versions.items() if (t := v["time_to_complete"])["completions"]}
    assert got_times == want_times
    # The funnel page's one query for its times (every version, the flow overall, the spread) equals the three.
    for flow_id in expected["flows"]:
        for version in ("", *expected["flows"][flow_id]["versions"]):
            chosen = dataclasses.replace(window, flow_id=flow_id, flow_version=version)
            summary = audience.completion_summary(client, chosen)
            every = dataclasses.replace(chosen, flow_version="")
            assert summary.by_version.to_dict("records") == audience.time_to_complete(client, every).to_dict(
                "records")
            overall = audience.time_to_complete(client, chosen, by=("flow_id",))
            assert not overall.empty and summary.overall.to_dict("records") == overall.to_dict("records"), version
            spread = audience.completion_times(client, chosen)
            assert summary.spread.to_dict("records") == spread.to_dict("records"), version
