"""Funnels and node drop-off, exact, end to end on the real broker and warehouse.

The simulator's flows (one with conditional branches) are registered, at least 20,000 sessions are
simulated across them (duplicates and reordering included), the stream worker is killed and restarted
in the middle, and every funnel stage and per-screen figure the dashboard queries return must equal
the simulator's truth exactly.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from flowtools.simulator.flows import ALLOWLIST, write_flow_jsons
from flowtools.simulator.sessions import generate_sessions, requests, send, truth
from tests.stack import Stack, poll
from warehouse import flows
from warehouse.client import connect

SESSIONS = 20_000



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
    assert poll(lambda: len(flows.load_catalog(client)), want=len(registered), deadline_s=30) == len(registered)

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
    expected = truth(sessions, timeout_s=settings.session_timeout_s, now_s=now.replace(tzinfo=UTC).timestamp())
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
