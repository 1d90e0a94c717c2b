"""Views analysts share and trust, in a real browser (Debian's Chromium via Playwright): filters kept in the URL
restore the same view on a fresh page and change the figures exactly, tables download as CSV, an unreachable
warehouse shows a message and a retry (never a traceback), and every page's render time is measured and reported.

Screenshots and the render-time report go to ``test-output/`` (not committed)."""

from __future__ import annotations

import csv
import io
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import orjson
from playwright.sync_api import Page, expect, sync_playwright

from tests.e2e.browser import CHROMIUM, CHROMIUM_ARGS, log_in
from tests.e2e.test_flow_dashboards import metric
from tests.integration.test_receiver import post
from tests.stack import Stack

OUTPUT = Path(__file__).resolve().parents[2] / "test-output"
NUMBER_A, NUMBER_B = "990000000000001", "990000000000002"
PAGES = {"/": "Overview", "/delivery": "Delivery status", "/funnel": "Engagement funnel",
         "/nodes": "Node performance", "/health": "Flow health", "/rejected": "Rejected events"}


def statuses_of(number: str, sent: int, failed: int, now: int) -> bytes:
    statuses: list[dict[str, Any]] = [
        {"id": f"wamid.{number}.{n}", "status": "sent", "timestamp": str(now), "recipient_id": "5511999990000"}
        for n in range(sent)]
    statuses += [{"id": f"wamid.{number}.{n}", "status": "failed", "timestamp": str(now + 1),
                  "recipient_id": "5511999990000", "errors": [{"code": 131049, "title": "Not delivered."}]}
                 for n in range(failed)]
    value = {"messaging_product": "whatsapp", "metadata": {"phone_number_id": number}, "statuses": statuses}
    return orjson.dumps({"object": "whatsapp_business_account",
                         "entry": [{"id": "880011223344556", "changes": [{"field": "messages", "value": value}]}]})


def sent_shown(page: Page, want: int) -> None:
    expect(metric(page, "Sent")).to_have_text(f"{want:,}", timeout=60_000)


def test_filters_travel_tables_download_and_an_unreachable_warehouse_is_explained(
    stack_factory: Callable[..., Stack],
) -> None:
    OUTPUT.mkdir(exist_ok=True)
    stack = stack_factory("broker", "warehouse", "receiver", "stream", "dashboards")
    now = int(time.time())
    assert post(stack, statuses_of(NUMBER_A, sent=4, failed=1, now=now)).status_code == 200
    assert post(stack, statuses_of(NUMBER_B, sent=2, failed=0, now=now)).status_code == 200
    timings: dict[str, list[float]] = {}

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100}, accept_downloads=True)
            # A link with filters opens the page with them: one business number, the last 24 hours.
            log_in(page, stack, f"/delivery?range=Last+24+hours&numbers={NUMBER_A}")
            expect(page.get_by_role("heading", name="Delivery status")).to_be_visible(timeout=60_000)
            sent_shown(page, 4)
            expect(metric(page, "Failed")).to_have_text("1")
            shared = parse_qs(urlparse(page.url).query)
            assert shared["range"] == ["Last 24 hours"] and shared["numbers"] == [NUMBER_A], page.url
            page.screenshot(path=str(OUTPUT / "delivery-one-number.png"), full_page=True)

            # The copied URL restores the same view on a fresh page (a new browser session).
            copied = page.url
            fresh = browser.new_page(viewport={"width": 1400, "height": 1100})
            log_in(fresh, stack, urlparse(copied).path + "?" + urlparse(copied).query)
            sent_shown(fresh, 4)
            fresh.close()

            # Changing a filter changes the figures exactly: the other number, then every number.
            log_in(page, stack, f"/delivery?range=Last+24+hours&numbers={NUMBER_B}")
            sent_shown(page, 2)
            expect(metric(page, "Failed")).to_have_text("0")
            log_in(page, stack, "/delivery?range=Last+24+hours")
            sent_shown(page, 6)
            # The time range is shared with the other pages of the session.
            page.get_by_test_id("stSidebarNav").get_by_text("Overview").click()
            expect(page.get_by_role("heading", name="Overview")).to_be_visible(timeout=60_000)
            expect(metric(page, "Messages sent")).to_have_text("6", timeout=60_000)
            assert parse_qs(urlparse(page.url).query).get("range") == ["Last 24 hours"], page.url

            # Every table downloads as CSV: the failures by error code, exactly.
            log_in(page, stack, "/delivery?range=Last+24+hours")
            sent_shown(page, 6)
            with page.expect_download(timeout=30_000) as download_info:
                page.locator(".st-key-download_failures_by_error_code").get_by_role("button").click()
            download = download_info.value
            assert download.suggested_filename == "failures_by_error_code.csv"
            rows = list(csv.DictReader(io.StringIO(Path(download.path()).read_text())))
            assert [(r["error_code"], r["messages"]) for r in rows] == [("131049", "1")]

            # Each page's render time: from a click in the menu to its heading and first figure, table, note or caption
            # (this stack has no Flow session: the flow pages say so),
            # a few times each, in one logged-in session.
            for path, heading in [*PAGES.items()] * 3:
                started = time.perf_counter()
                page.get_by_test_id("stSidebarNav").get_by_text(heading, exact=True).click()
                expect(page.get_by_role("heading", name=heading)).to_be_visible(timeout=60_000)
                page.locator("[data-testid='stMetric'], [data-testid='stDataFrame'], [data-testid='stAlert'], "
                             "[data-testid='stCaptionContainer']").first.wait_for(timeout=60_000)
                timings.setdefault(path, []).append(time.perf_counter() - started)
                expect(page.get_by_test_id("stException")).to_have_count(0)
                name = "overview" if path == "/" else path.strip("/")
                page.screenshot(path=str(OUTPUT / f"page-{name}.png"), full_page=True)

            # The warehouse goes away: a clear message and a retry, never a traceback.
            stack.supervisor.kill("warehouse")
            log_in(page, stack, "/delivery")
            expect(page.get_by_text(re.compile("The warehouse is unreachable"))).to_be_visible(timeout=60_000)
            expect(page.get_by_role("button", name="Retry")).to_be_visible()
            expect(page.get_by_test_id("stException")).to_have_count(0)
            page.screenshot(path=str(OUTPUT / "warehouse-unreachable.png"), full_page=True)
        finally:
            browser.close()
    report = {path: {"loads": len(runs), "p95_s": round(sorted(runs)[-1], 3), "median_s": round(
        sorted(runs)[len(runs) // 2], 3)} for path, runs in timings.items()}
    (OUTPUT / "page-render.json").write_text(json.dumps(report, indent=2))
    print("page render times (s):", json.dumps(report))  # noqa: T201 - reported, never asserted
