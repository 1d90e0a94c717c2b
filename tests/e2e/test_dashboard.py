"""The delivery dashboard in a real browser (Debian's Chromium, driven by Playwright) shows the exact truth."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

from flowtools.simulator.config import SimulationConfig
from flowtools.simulator.runner import run
from tests.e2e.browser import CHROMIUM, CHROMIUM_ARGS, log_in, screenshot
from tests.stack import Stack


def test_delivery_page_shows_the_simulated_totals(stack_factory: Callable[..., Stack]) -> None:
    assert Path(CHROMIUM).exists(), "Chromium is missing: make test installs it (scripts/system-deps.sh)"
    stack = stack_factory("broker", "warehouse", "receiver", "stream", "dashboards")
    config = SimulationConfig(messages=600, rate=300, seed=5, live_clock=True)
    result = asyncio.run(run(stack.webhook_url, config=config, app_secret=stack.settings.app_secret, progress=False))
    assert result.truth is not None
    truth = result.truth.to_dict()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            log_in(page, stack, "/delivery")
            expect(page.get_by_role("heading", name="Delivery status")).to_be_visible(timeout=60_000)
            metrics = page.get_by_test_id("stMetric")
            expected = {
                "Sent": truth["statuses"]["sent"],
                "Delivered": truth["delivered_or_read"],
                "Read": truth["statuses"]["read"],
                "Failed": truth["statuses"]["failed"],
            }
            for label, value in expected.items():
                metric = metrics.filter(has_text=re.compile(f"^{label}"))
                # The page refreshes itself every few seconds until the stream has written everything.
                expect(metric.get_by_test_id("stMetricValue")).to_have_text(f"{value:,}", timeout=60_000)
            expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=30_000)
            table = page.get_by_test_id("stDataFrame").nth(1)
            expect(table).to_be_visible()
            screenshot(page, "delivery-simulated-totals")
        finally:
            browser.close()
