"""Walking skeleton, end to end on real parts: signed webhooks → receiver → tansu → stream → warehouse.

Broker, warehouse server, receiver and stream worker run as separate processes; the simulator posts
realistic traffic (duplicates and reordering included); the warehouse, read through clickhouse-connect
over HTTP exactly as the dashboards read it, must then hold exactly the simulator's truth: statuses, completions,
and (Meta's 2026 identity mix, every pricing type, value-level errors) distinct persons, countries and cost.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from config.ratecard import SAMPLE_PATH, RateCard
from flowtools.simulator.config import SimulationConfig
from flowtools.simulator.runner import run
from tests.stack import Stack, poll
from warehouse import audience, costs, queries
from warehouse.client import connect
from warehouse.rollup import DELIVERY_SEALED

ALL_TIME = queries.DeliveryFilter(start=datetime(2014, 1, 1), end=datetime.now() + timedelta(days=1))


# Sealed at once, every minute before the current one is counted as soon as it ends and statuses still arriving
# for it (delayed, reordered, duplicated) reseal it: the figures must not move from the truth either way.
@pytest.mark.parametrize("seal_after_s", [120, 0], ids=["live-minutes", "sealed-minutes"])
def test_simulated_traffic_lands_exactly_once(stack_factory: Callable[..., Stack], seal_after_s: int) -> None:
    stack = stack_factory("broker", "warehouse", "receiver", "stream", rollup_seal_after_s=seal_after_s)
    config = SimulationConfig(messages=3000, rate=400, seed=11, concurrency=16, deadline_s=120)
    result = asyncio.run(run(stack.webhook_url, config=config, app_secret=stack.settings.app_secret, progress=False))
    assert result.truth is not None
    truth = result.truth.to_dict()
    assert truth["posts"]["undelivered"] == 0
    assert truth["generated"]["duplicated_posts"] > 0
    assert truth["generated"]["reordered_messages"] > 0

    client = connect(stack.settings.warehouse_url_for("analyst"))
    expected_totals = {**truth["statuses"], "delivered_or_read": truth["delivered_or_read"]}
    totals = poll(lambda: {**queries.delivery_totals(client, ALL_TIME)}, want=expected_totals, deadline_s=60)
    assert totals == expected_totals
    if seal_after_s == 0:  # once every minute is sealed, the figures are sums of sealed counts alone
        newest = client.command("SELECT toStartOfMinute(max(occurred_at)) + 60 FROM message_statuses")
        sealed = poll(lambda: client.command(
            f"SELECT max(until) >= '{newest}' FROM rollup_progress FINAL WHERE task = '{DELIVERY_SEALED}'"),
            want=1, deadline_s=90)
        assert sealed == 1
        assert queries.delivery_totals(client, ALL_TIME) == expected_totals

    by_number = queries.delivery_by_phone_number(client, ALL_TIME)
    assert {pnid: {s: c for s, c in counts.items() if c} for pnid, counts in by_number.items()} == {
        pnid: {s: c for s, c in counts.items() if c} for pnid, counts in truth["by_phone_number_id"].items()
    }
    failures = queries.failures_by_error_code(client, ALL_TIME)
    assert {str(code): int(n) for code, n in zip(failures["error_code"], failures["messages"], strict=True)} == {
        code: n for code, n in truth["failed_by_error_code"].items() if n
    }

    # People (resolved across phone numbers and BSUIDs by the rollup), countries, cost and value-level errors.
    card = RateCard.from_file(SAMPLE_PATH)
    priced = result.truth.evaluated(rate_card=card).to_dict()
    persons = poll(lambda: audience.delivery_persons(client, ALL_TIME), want=truth["persons"], deadline_s=60)
    assert persons == truth["persons"]
    for pnid, n in truth["persons_by_phone_number_id"].items():
        assert audience.delivery_persons(client, replace(ALL_TIME, phone_number_ids=(pnid,))) == n
    by_country = audience.delivery_by_country(client, ALL_TIME)
    assert {r.country: r.messages for r in by_country.itertuples()} == {
        country: n for country, n in truth["messages_by_country"].items() if n}
    spend = costs.spend(client, ALL_TIME, by=("country",), card=card)
    assert {r.country: r.spend for r in spend.itertuples() if r.spend} == {
        country: Decimal(v) for country, v in priced["spend_by_country"].items() if Decimal(v)}
    total = costs.spend(client, ALL_TIME, by=(), card=card).iloc[0]
    assert (total.charged, total.free, total.unpriced, total.spend) == (
        truth["billable_messages"], truth["free_messages"], 0, Decimal(priced["spend"]))
    assert queries.webhook_error_counts(client, ALL_TIME) == {
        int(code): n for code, n in truth["webhook_errors"].items()}

    # Raw tables: every status exactly once, nothing physically duplicated, nothing rejected.
    distinct_statuses = sum(truth["statuses"].values())
    raw = client.query(
        "SELECT count(), uniqExact(wamid, status), uniqExact(wamid) FROM message_statuses"
    ).result_rows[0]
    assert raw == (distinct_statuses, distinct_statuses, truth["messages"])
    completions = client.query("SELECT count(), uniqExact(wamid) FROM flow_completions").result_rows[0]
    assert completions == (truth["completions"], truth["completions"])
    assert client.command("SELECT count() FROM rejected_events") == 0

    # The receiver's own metrics agree on what it accepted.
    metrics = httpx.get(f"http://127.0.0.1:{stack.settings.ingest_port}/metrics").text
    accepted = float(truth["posts"]["sent_including_duplicates"])
    assert f'flowscope_ingest_webhooks_total{{field="messages",outcome="accepted"}} {accepted}' in metrics


def test_broker_down_means_503_never_200(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory("broker", "receiver", producer_timeout_s=2.0)
    stack.supervisor.kill("broker")
    from ingest.signatures import sign

    body = (
        b'{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":'
        b'{"metadata":{"phone_number_id":"9"},"statuses":[{"id":"wamid.Z","status":"sent",'
        b'"timestamp":"' + str(int(time.time())).encode() + b'"}]}}]}]}'
    )
    headers = {"X-Hub-Signature-256": sign(body, stack.settings.app_secret), "Content-Type": "application/json"}
    response = httpx.post(stack.webhook_url, content=body, headers=headers, timeout=30)
    assert response.status_code == 503
    assert response.json() == {"error": "event store unavailable, retry later"}
