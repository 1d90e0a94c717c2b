"""The funnel and node pages in a real browser (Debian's Chromium via Playwright) show exact figures."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
from playwright.sync_api import Page, expect, sync_playwright

from ingest.signatures import sign
from tests.e2e.browser import CHROMIUM, CHROMIUM_ARGS, log_in, screenshot
from tests.samples import FLOW_JSON
from tests.stack import Stack

SESSIONS = 40


def completion(stack: Stack, n: int, at: float) -> bytes:
    body = orjson.dumps({"object": "whatsapp_business_account", "entry": [{"id": "waba", "changes": [
        {"field": "messages", "value": {"metadata": {"phone_number_id": "99"}, "messages": [{
            "context": {"id": f"wamid.{n}"}, "from": "5511999990000", "id": f"wamid.reply{n}",
            "timestamp": str(int(at)), "type": "interactive",
            "interactive": {"type": "nfm_reply", "nfm_reply": {
                "name": "flow", "response_json": orjson.dumps({"flow_token": f"tok{n}"}).decode()}}}]}}]}]})
    return body


def traffic(stack: Stack) -> None:
    """40 sessions two hours ago: a quarter stop on A, a quarter on B, half complete."""
    start = time.time() - 7200
    events: list[dict[str, Any]] = []
    for n in range(SESSIONS):
        common = {"flow_token": f"tok{n}", "flow_id": "F1", "flow_version": "1"}
        t = start + n
        events.append({"type": "flow_sent", "wamid": f"wamid.{n}", "campaign": "spring", "timestamp": t, **common})
        screens = ["A"] if n % 4 == 0 else ["A", "B"] if n % 4 == 1 else ["A", "B", "C"]
        for k, screen in enumerate(screens):
            events.append({"type": "node", "screen": screen, "action": "view", "timestamp": t + 10 * k + 1, **common})
            events.append({"type": "node", "screen": screen, "action": "submit", "timestamp": t + 10 * k + 6,
                           **common})
        if len(screens) == 3:
            body = completion(stack, n, t + 40)
            headers = {"X-Hub-Signature-256": sign(body, stack.settings.app_secret), "Content-Type": "application/json"}
            assert httpx.post(stack.webhook_url, content=body, headers=headers).status_code == 200
    auth = {"Authorization": f"Bearer {stack.settings.events_token}"}
    base = f"http://127.0.0.1:{stack.settings.ingest_port}"
    assert httpx.put(f"{base}/flows/F1/versions/1", content=orjson.dumps(FLOW_JSON), headers=auth).status_code == 200
    assert httpx.post(f"{base}/events", content=orjson.dumps(events), headers=auth).status_code == 200


def metric(page: Page, label: str) -> Any:
    return page.get_by_test_id("stMetric").filter(has_text=re.compile(f"^{label}")).get_by_test_id("stMetricValue")


def test_funnel_and_node_pages(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory("broker", "warehouse", "receiver", "stream", "dashboards")
    traffic(stack)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            log_in(page, stack, "/funnel")
            expect(page.get_by_role("heading", name="Engagement funnel")).to_be_visible(timeout=60_000)
            expect(metric(page, "Completed")).to_have_text("20", timeout=60_000)
            expect(metric(page, "Abandoned")).to_have_text("20", timeout=30_000)
            expect(metric(page, "In progress")).to_have_text("0")
            expect(page.locator(".js-plotly-plot").first).to_be_visible()
            screenshot(page, "funnel-completed-and-abandoned")

            log_in(page, stack, "/nodes")  # a new page load is a new session
            expect(page.get_by_role("heading", name="Node performance")).to_be_visible(timeout=60_000)
            worst = page.get_by_text(re.compile("^Worst screen:"))
            expect(worst).to_have_text(
                "Worst screen: Plan (B) loses 33.3% of the sessions that reach it (10 of 30).", timeout=60_000
            )
            expect(page.locator(".js-plotly-plot").first).to_be_visible()
            screenshot(page, "nodes-worst-screen")
        finally:
            browser.close()
