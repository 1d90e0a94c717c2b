"""The dashboards in a real browser (Debian's Chromium via Playwright) show nothing before the login, data after."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from playwright.sync_api import Page, expect, sync_playwright

from config.settings import DEV_DASHBOARD_PASSWORD
from dashboards.login import REFUSED
from tests.e2e.browser import CHROMIUM, CHROMIUM_ARGS, dashboard_url, password_field, screenshot, submit_password
from tests.e2e.test_flow_dashboards import metric
from tests.integration.test_receiver import post, webhook
from tests.stack import Stack


def expect_nothing_but_the_login(page: Page) -> None:
    expect(password_field(page)).to_be_visible(timeout=60_000)
    expect(page.get_by_role("heading", name="flowscope dashboards")).to_be_visible()
    for name in ("Overview", "Delivery status", "Engagement funnel", "Node performance", "Flow health",
                 "Rejected events"):
        expect(page.get_by_role("heading", name=name)).to_have_count(0)
        expect(page.get_by_text(name)).to_have_count(0)  # not even as a menu entry
    expect(page.get_by_test_id("stSidebarNav")).to_have_count(0)
    expect(page.get_by_test_id("stMetric")).to_have_count(0)
    expect(page.get_by_test_id("stDataFrame")).to_have_count(0)
    expect(page.locator(".js-plotly-plot")).to_have_count(0)
    expect(page.get_by_test_id("stException")).to_have_count(0)


def test_dashboards_ask_for_the_password_then_show_data(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory("broker", "warehouse", "receiver", "stream", "dashboards")
    now = str(int(time.time()))
    statuses: list[dict[str, Any]] = [
        *({"id": f"wamid.LOGIN{i}", "status": "sent", "timestamp": now, "recipient_id": "5511999990000"}
          for i in range(3)),
        {"id": "wamid.LOGIN0", "status": "delivered", "timestamp": now, "recipient_id": "5511999990000"},
        {"id": "wamid.LOGIN1", "status": "failed", "timestamp": now, "recipient_id": "5511999990000",
         "errors": [{"code": 131049, "title": "Not delivered to keep engagement healthy."}]},
    ]
    answer = post(stack, webhook(*statuses))
    assert (answer.status_code, answer.json()) == (200, {"accepted": 5, "rejected": 0, "ignored": 0})

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            # A deep link shows the login too, not the page.
            page.goto(dashboard_url(stack, "/rejected"))
            expect_nothing_but_the_login(page)

            page.goto(dashboard_url(stack))
            expect_nothing_but_the_login(page)
            screenshot(page, "login")

            # The stack's password is its own (from the environment); a near miss and the development default fail.
            assert stack.settings.dashboard_password != DEV_DASHBOARD_PASSWORD
            for wrong in (stack.settings.dashboard_password + "x", DEV_DASHBOARD_PASSWORD):
                page.goto(dashboard_url(stack))  # a new session: the message below can only come from this attempt
                expect_nothing_but_the_login(page)
                expect(page.get_by_text(REFUSED, exact=True)).to_have_count(0)
                submit_password(page, wrong)
                expect(page.get_by_text(REFUSED, exact=True)).to_be_visible(timeout=30_000)
                expect_nothing_but_the_login(page)
            screenshot(page, "wrong-password")

            submit_password(page, stack.settings.dashboard_password)
            # The landing page is the Overview: the period's figures against the period before (nothing then).
            expect(page.get_by_role("heading", name="Overview")).to_be_visible(timeout=60_000)
            expect(password_field(page)).to_have_count(0)
            expect(page.get_by_text(REFUSED, exact=True)).to_have_count(0)
            expect(metric(page, "Messages sent")).to_have_text("3", timeout=60_000)
            expect(metric(page, "Delivery rate")).to_have_text("33.3%", timeout=30_000)
            expect(metric(page, "Failure rate")).to_have_text("33.3%", timeout=30_000)
            expect(metric(page, "Read rate")).to_have_text("0.0%")
            expect(page.get_by_text(re.compile(r"^131049 — "))).to_be_visible(timeout=30_000)
            expect(page.get_by_test_id("stException")).to_have_count(0)
            screenshot(page, "overview-after-login")

            page.get_by_test_id("stSidebarNav").get_by_text("Delivery status").click()
            expect(page.get_by_role("heading", name="Delivery status")).to_be_visible(timeout=60_000)
            # The page refreshes itself every few seconds until the stream has written every status.
            expect(metric(page, "Sent")).to_have_text("3", timeout=60_000)
            expect(metric(page, "Delivered")).to_have_text("1", timeout=30_000)
            expect(metric(page, "Failed")).to_have_text("1", timeout=30_000)
            expect(metric(page, "Read")).to_have_text("0")
            expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=30_000)
            expect(page.get_by_text("No failed messages in this range.")).to_have_count(0, timeout=30_000)
            screenshot(page, "delivery-after-login")

            # The menu moves between pages within the same browser session: no second login.
            page.get_by_test_id("stSidebarNav").get_by_text("Rejected events").click()
            expect(page.get_by_role("heading", name="Rejected events")).to_be_visible(timeout=60_000)
            expect(password_field(page)).to_have_count(0)
            expect(page.get_by_test_id("stException")).to_have_count(0)

            # Another browser (a new session) is asked again.
            other = browser.new_page()
            other.goto(dashboard_url(stack))
            expect_nothing_but_the_login(other)
        finally:
            browser.close()
