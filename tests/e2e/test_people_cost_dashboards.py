"""People, cost, opt-outs and times to complete in a real browser (Debian's Chromium, driven by Playwright): the
Engagement funnel and Delivery pages show the simulator's exact truth for Meta's 2026 identity mix (a third of the
users known only by BSUID, number changes, parent BSUIDs), every pricing type and opt-outs."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect, sync_playwright

from config.ratecard import SAMPLE_PATH, RateCard
from dashboards.formats import duration, money
from flowtools.simulator.sessions import generate_sessions, requests, send, truth
from tests.e2e.browser import CHROMIUM, CHROMIUM_ARGS, log_in, screenshot
from tests.stack import Stack
from warehouse import costs
from warehouse.client import connect

SESSIONS = 1_200


def metric(page: Page, label: str) -> Any:
    return page.get_by_test_id("stMetric").filter(has_text=re.compile(f"^{label}")).get_by_test_id("stMetricValue")



def test_people_cost_and_opt_outs_show_the_truth(stack_factory: Callable[..., Stack]) -> None:
    assert Path(CHROMIUM).exists(), "Chromium is missing: make test installs it (scripts/system-deps.sh)"
    stack = stack_factory("broker", "warehouse", "receiver", "stream", "dashboards")
    card = RateCard.from_file(SAMPLE_PATH)
    costs.store_rate_card(connect(stack.settings.warehouse_url_for("writer")), card, source=SAMPLE_PATH.name)
    now_ms = int(time.time() * 1000)
    # Sessions over the last 40 minutes (inside the Delivery page's default hour), of one flow version only, so
    # that the funnel page's per-flow figures are that version's truth.
    generated = generate_sessions(SESSIONS, seed=14, start_ms=now_ms - 40 * 60_000, spacing_ms=1_500,
                                  now_ms=now_ms - 5_000)
    first = sorted({s.flow.flow_id for s in generated})[0]
    version = sorted({s.version for s in generated if s.flow.flow_id == first})[0]
    sessions = [s for s in generated if s.flow.flow_id == first and s.version == version]
    settings = stack.settings
    undelivered = asyncio.run(send(
        requests(sessions, seed=14), webhook_url=stack.webhook_url,
        events_url=f"http://127.0.0.1:{settings.ingest_port}/events", app_secret=settings.app_secret,
        events_token=settings.events_token))
    assert undelivered == 0
    expected = truth(sessions, timeout_s=settings.session_timeout_s, now_s=time.time(), rate_card=card,
                     opt_out_window_s=settings.opt_out_window_h * 3600)
    figures = expected["flows"][first]["versions"][version]
    spend = Decimal(figures["spend"])
    assert expected["persons"] == figures["persons"] < len(sessions)  # people came back: fewer people than sessions
    assert figures["opt_outs"] > 0 and spend > 0 and figures["time_to_complete"]["completions"] > 0

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            log_in(page, stack, "/funnel")
            expect(page.get_by_role("heading", name="Engagement funnel")).to_be_visible(timeout=60_000)
            want = {
                "People reached": f"{figures['persons']:,}",
                "Spend": money(spend, card.currency),
                "Cost per completed": money(
                    (spend / figures["funnel"]["completed"]).quantize(costs.CENT_FRACTION), card.currency, places=4),
                "Opt-out rate": f"{figures['opt_outs'] / figures['persons']:.1%}",
                "Median time to complete": duration(figures["time_to_complete"]["p50_ms"]),
                "p90 time to complete": duration(figures["time_to_complete"]["p90_ms"]),
                "Completions timed": f"{figures['time_to_complete']['completions']:,}",
            }
            for label, value in want.items():
                # The page refreshes itself while the stream writes and the rollup resolves people.
                expect(metric(page, label)).to_have_text(value, timeout=90_000)
            screenshot(page, "funnel-people-cost")

            log_in(page, stack, "/delivery")
            expect(page.get_by_role("heading", name="Delivery status")).to_be_visible(timeout=60_000)
            expect(metric(page, "People messaged")).to_have_text(f"{expected['persons']:,}", timeout=60_000)
            expect(metric(page, "Spend")).to_have_text(money(spend, card.currency), timeout=30_000)
            errors = sum(expected["webhook_errors"].values())
            expect(page.get_by_role("heading", name=f"Account and number errors ({errors:,})")).to_be_visible(
                timeout=30_000)
            screenshot(page, "delivery-people-cost")
        finally:
            browser.close()
