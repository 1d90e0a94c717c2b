"""The Rejected events page in a real browser (Debian's Chromium via Playwright) counts what the receiver refused."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import orjson
from playwright.sync_api import expect, sync_playwright

from tests.e2e.browser import CHROMIUM, CHROMIUM_ARGS, log_in, screenshot
from tests.e2e.test_flow_dashboards import metric
from tests.integration.test_receiver import post, webhook
from tests.stack import Stack


def test_rejected_events_page_counts_by_source_and_reason(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory("broker", "warehouse", "receiver", "stream", "dashboards")
    now = str(int(time.time()))
    statuses = [
        *({"id": f"wamid.OPENED{i}", "status": "opened", "timestamp": now, "recipient_id": "5511999990000"}
          for i in range(3)),
        *({"status": "sent", "timestamp": now, "recipient_id": f"551199999000{i}"} for i in range(2)),
        {"id": "wamid.OK", "status": "sent", "timestamp": now},
    ]
    answer = post(stack, webhook(*statuses))
    assert (answer.status_code, answer.json()) == (200, {"accepted": 1, "rejected": 5, "ignored": 0})
    first_party = httpx.post(f"http://127.0.0.1:{stack.settings.ingest_port}/events",
                             content=orjson.dumps([{"type": "click", "flow_token": "ft_1"}]),
                             headers={"Authorization": f"Bearer {stack.settings.events_token}"}, timeout=10)
    reason = "type must be one of flow_sent, node, endpoint; got 'click'"
    assert (first_party.status_code, first_party.json()) == (
        400, {"accepted": 0, "rejected": [{"index": 0, "reason": reason}], "ignored": 0})

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            log_in(page, stack, "/rejected")
            expect(page.get_by_role("heading", name="Rejected events")).to_be_visible(timeout=60_000)
            expect(metric(page, "Rejected")).to_have_text("6", timeout=60_000)
            expect(metric(page, "From WhatsApp webhooks")).to_have_text("5")
            expect(metric(page, "From first-party events")).to_have_text("1")
            expect(metric(page, "Distinct reasons")).to_have_text("3")
            expect(page.get_by_role("heading", name="By source and reason")).to_be_visible()
            expect(page.get_by_role("heading", name="Latest rejected events")).to_be_visible()
            expect(page.get_by_test_id("stDataFrame")).to_have_count(2)
            expect(page.get_by_text("The 6 newest", exact=False)).to_be_visible()
            expect(page.get_by_test_id("stException")).to_have_count(0)
            screenshot(page, "rejected-events")
        finally:
            browser.close()
