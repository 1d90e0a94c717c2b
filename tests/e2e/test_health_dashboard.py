"""The Flow health page in a real browser (Debian's Chromium via Playwright) shows Meta's flows webhooks."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import expect, sync_playwright

from tests.e2e.browser import CHROMIUM, CHROMIUM_ARGS, log_in, screenshot
from tests.e2e.test_flow_dashboards import metric
from tests.integration.test_flow_health import (
    AVAILABILITY,
    BLOCKED,
    CLIENT_ERRORS,
    ERRORS_OFF,
    ERRORS_ON,
    LATENCY,
    STATUS_PUBLISHED,
    STATUS_THROTTLED,
    flows_webhook,
    post,
)
from tests.stack import Stack


def test_flow_health_page_shows_current_state(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory("broker", "warehouse", "receiver", "stream", "dashboards")
    for body in (flows_webhook(STATUS_THROTTLED, ERRORS_OFF), flows_webhook(STATUS_PUBLISHED, ERRORS_ON),
                 flows_webhook(BLOCKED, LATENCY, AVAILABILITY, CLIENT_ERRORS)):
        assert post(stack, body).status_code == 200
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            log_in(page, stack, "/health")
            expect(page.get_by_role("heading", name="Flow health")).to_be_visible(timeout=60_000)
            expect(metric(page, "Flows reported")).to_have_text("2", timeout=60_000)
            expect(metric(page, "Blocked")).to_have_text("1")
            expect(metric(page, "Throttled")).to_have_text("1")
            expect(metric(page, "With an active alert")).to_have_text("1")
            expect(page.get_by_text("Blocked (nothing can be sent or opened): B")).to_be_visible()
            expect(page.get_by_text("Throttled (at most 10 new messages per hour): A")).to_be_visible()
            expect(page.get_by_role("heading", name="History")).to_be_visible()
            expect(page.get_by_test_id("stDataFrame")).to_have_count(2)
            expect(page.get_by_test_id("stException")).to_have_count(0)
            screenshot(page, "flow-health")
        finally:
            browser.close()
