"""Views analysts share and trust, in a real browser (Debian's Chromium via Playwright), on one pipeline fed with
delivery statuses and simulated Flow sessions of known truth: filters kept in the URL restore the same view on a
fresh page; changing each filter (business number, flow, version, campaign, time zone, a custom range of days,
recipient country)
changes the figures exactly as the truth says; versions are compared with the rates, intervals and verdicts of
``warehouse/versions.py``; tables download as CSV; an unreachable warehouse shows a message and a retry (never a
traceback); every page's render time is measured and reported.

Screenshots and the render-time report go to ``test-output/`` (not committed)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse
from zoneinfo import ZoneInfo

import orjson
from playwright.sync_api import Page, expect, sync_playwright

from flowtools.registration import register_flow_json
from flowtools.simulator.flows import FLOWS, flow_json
from flowtools.simulator.sessions import Session, generate_sessions, requests, send, truth
from ingest.identity import phone_country
from tests.e2e.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    FIRST_ELEMENT,
    OUTPUT,
    add_choice,
    choose,
    log_in,
    metric,
    pick_days,
    points,
    render_time,
    run_finished,
    screenshot,
    tables,
    traces,
)
from tests.integration.test_receiver import post
from tests.samples import FLOW_JSON
from tests.stack import Stack, poll
from warehouse import flow_names, versions
from warehouse.client import connect

NUMBER_A, NUMBER_B = "990000000000001", "990000000000002"
PAGES = {"/": "Overview", "/delivery": "Delivery status", "/funnel": "Engagement funnel",
         "/nodes": "Node performance", "/health": "Flow health", "/rejected": "Rejected events"}
NAMES = {flow.flow_id: flow.name for flow in FLOWS}
BOOKING, LEAD_FORM = "1100000000000003", "1100000000000001"  # booking is the first flow by name: the default
KOLKATA = "Asia/Kolkata"  # UTC+05:30 all year: buckets of whole hours start at half past
# A flow tried in three versions: version → (sessions sent, completed, still in progress). Against v1 (the most
# sent, the default baseline) v2 completes significantly more, v3 not significantly; v3's sessions in progress
# are not decided yet.
AB_FLOW, AB_NAME = "2200000000000001", "survey_ab"
AB_VERSIONS = {"1": (130, 65, 0), "2": (120, 90, 0), "3": (40, 19, 6)}
COMPARED = ["version", "decided sessions", "completion rate (of decided)", "95% CI", "vs baseline", "p-value",
            "significant", "sessions still needed"]


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


@dataclass(frozen=True)
class FlowTraffic:
    """The simulated Flow sessions sent, as the simulator made them (its truth is computed from them)."""

    recent: list[Session]  # sent 3 to 1.5 hours ago (decided), and 12 minutes ago (some still in progress)
    older: list[Session]  # sent from 09:00 UTC on ``day``, three days ago: only a custom range of days sees them
    day: date


def ab_posts(now_s: float) -> list[tuple[str, bytes]]:
    """The AB flow's sends (2.5 hours ago, or 10 minutes ago when still in progress) and completions."""
    sends: list[dict[str, Any]] = []
    replies: list[dict[str, Any]] = []
    for version, (sent, completed, ongoing) in AB_VERSIONS.items():
        for n in range(sent):
            token = f"ab{version}_{n}"
            at = now_s - 600 if n >= sent - ongoing else now_s - 9000 + n
            sends.append({"type": "flow_sent", "wamid": f"wamid.{token}", "flow_token": token, "flow_id": AB_FLOW,
                          "flow_version": version, "campaign": "ab_test", "timestamp": at})
            if n < completed:
                replies.append({
                    "context": {"id": f"wamid.{token}"}, "from": "5511999990000", "id": f"wamid.reply.{token}",
                    "timestamp": str(int(at + 60)), "type": "interactive", "interactive": {
                        "type": "nfm_reply", "nfm_reply": {"name": "flow", "response_json": orjson.dumps(
                            {"flow_token": token}).decode()}}})
    value = {"messaging_product": "whatsapp", "metadata": {"phone_number_id": "990000000000008"},
             "messages": replies}
    webhook = {"object": "whatsapp_business_account",
               "entry": [{"id": "880011223344556", "changes": [{"field": "messages", "value": value}]}]}
    return [("events", orjson.dumps(sends)), ("webhook", orjson.dumps(webhook))]


def send_flow_traffic(stack: Stack) -> FlowTraffic:
    """Registers the simulated flows and the AB flow by name, then sends their sessions through the receiver."""
    settings = stack.settings
    for flow in FLOWS:
        for version in flow.versions:
            register_flow_json(settings, flow_id=flow.flow_id, version=version, name=flow.name,
                               flow_json=orjson.dumps(flow_json(flow, version)))
    register_flow_json(settings, flow_id=AB_FLOW, version="1", name=AB_NAME, flow_json=orjson.dumps(FLOW_JSON))
    now_s = time.time()
    now_ms = int(now_s * 1000)
    # Every session's last activity is at most ~8 minutes after its send: with the abandonment timeout of 30 minutes
    # the sessions sent 3 to 1.5 hours ago are decided, those sent 12 minutes ago stay in progress 18 minutes more.
    assert settings.session_timeout_s == 1800
    decided = generate_sessions(360, seed=15, start_ms=now_ms - 3 * 3_600_000, spacing_ms=15_000, prefix="recent",
                                now_ms=now_ms)
    ongoing = generate_sessions(48, seed=16, start_ms=now_ms - 720_000, spacing_ms=3_000, prefix="live",
                                now_ms=now_ms)
    day = datetime.fromtimestamp(now_s, UTC).date() - timedelta(days=3)
    nine = datetime(day.year, day.month, day.day, 9, tzinfo=UTC)
    older = generate_sessions(240, seed=17, start_ms=int(nine.timestamp() * 1000), spacing_ms=15_000, prefix="older",
                              now_ms=now_ms)
    posts = requests(decided + ongoing + older, seed=15) + ab_posts(now_s)
    assert asyncio.run(send(posts, webhook_url=stack.webhook_url, events_url=stack.events_url,
                            app_secret=settings.app_secret, events_token=settings.events_token)) == 0
    return FlowTraffic(recent=decided + ongoing, older=older, day=day)


def chosen(sessions: list[Session], *, flow_id: str, version: str = "", campaign: str = "") -> list[Session]:
    return [s for s in sessions if s.flow.flow_id == flow_id and version in ("", s.version)
            and campaign in ("", s.campaign)]


def sessions_now(sessions: list[Session], *, timeout_s: int) -> dict[str, str]:
    """What the funnel page's "Sessions now" shows for these sessions (of one flow), by the simulator's truth."""
    funnel: Counter[str] = Counter()
    for flow in truth(sessions, timeout_s=timeout_s, now_s=time.time())["flows"].values():
        for numbers in flow["versions"].values():
            funnel.update(numbers["funnel"])

    def rate(part: str, whole: str) -> str:
        return f"{funnel[part] / funnel[whole]:.1%}" if funnel[whole] else "–"

    return {"Completed": f"{funnel['completed']:,}", "Abandoned": f"{funnel['abandoned']:,}",
            "In progress": f"{funnel['ongoing']:,}", "Failed to deliver": f"{funnel['failed']:,}",
            "Completion rate (of sent)": rate("completed", "sent"),
            "Completion rate (of opened)": rate("completed", "opened")}


def sends_per_hour(sessions: list[Session], tz: str) -> list[tuple[datetime, int]]:
    """Sessions sent per hour (UTC hours), each hour shown in ``tz``: the over-time chart's points other than 0."""
    hours = Counter(datetime.fromtimestamp(s.sent_ms // 3_600_000 * 3600, UTC) for s in sessions)
    return sorted((hour.astimezone(ZoneInfo(tz)).replace(tzinfo=None), n) for hour, n in hours.items())


def shows(page: Page, figures: dict[str, str]) -> None:
    for label, value in figures.items():
        # The page refreshes itself every few seconds until the stream has written every session.
        expect(metric(page, label)).to_have_text(value, timeout=60_000)


def check_flow_filters(page: Page, stack: Stack, traffic: FlowTraffic) -> None:
    """Each flow filter, changed in the sidebar as a user does, changes the funnel's figures to the truth's."""
    timeout_s = stack.settings.session_timeout_s
    log_in(page, stack, "/funnel")
    expect(page.get_by_role("heading", name="Engagement funnel")).to_be_visible(timeout=60_000)
    # The first flow by name, every version and campaign, sent in the last 24 hours.
    picked: dict[str, str] = {"flow_id": BOOKING}
    before = sessions_now(chosen(traffic.recent, **picked), timeout_s=timeout_s)
    shows(page, before)
    for label, option, key, value in (("Flow", f"lead_form ({LEAD_FORM})", "flow_id", LEAD_FORM),
                                      ("Version", "2", "version", "2"),
                                      ("Campaign", "reactivation", "campaign", "reactivation")):
        picked[key] = value
        want = sessions_now(chosen(traffic.recent, **picked), timeout_s=timeout_s)
        assert want != before, f"choosing {label} {option} changes no figure: the check could not fail"
        choose(page, label, option)
        shows(page, want)
        before = want
    shared = parse_qs(urlparse(page.url).query)
    assert (shared["flow"], shared["version"], shared["campaign"]) == ([LEAD_FORM], ["2"], ["reactivation"]), page.url

    # A time zone moves the over-time chart's buckets (whole UTC hours start at half past in Kolkata), and only them.
    sessions = chosen(traffic.recent, **picked)
    in_utc, in_kolkata = sends_per_hour(sessions, "UTC"), sends_per_hour(sessions, KOLKATA)
    assert poll(lambda: points(page, "sent"), want=[in_utc]) == [in_utc]
    choose(page, "Time zone", KOLKATA)
    assert poll(lambda: points(page, "sent"), want=[in_kolkata]) == [in_kolkata]
    shows(page, before)
    assert parse_qs(urlparse(page.url).query)["tz"] == [KOLKATA], page.url
    screenshot(page, "filters-funnel-time-zone")

    # A custom range of days: the older day alone.
    choose(page, "Sent in", "Custom range")
    pick_days(page, "From – to (UTC days)", traffic.day, traffic.day)
    older = chosen(traffic.older, **picked)
    want = sessions_now(older, timeout_s=timeout_s)
    assert want != before
    shows(page, want)
    assert poll(lambda: points(page, "sent"), want=[sends_per_hour(older, KOLKATA)]) == [
        sends_per_hour(older, KOLKATA)]
    shared = parse_qs(urlparse(page.url).query)
    assert (shared["range"], shared["from"], shared["to"]) == (
        ["Custom range"], [traffic.day.isoformat()], [traffic.day.isoformat()]), page.url
    screenshot(page, "filters-funnel-custom-range")


def compared_row(row: versions.VersionComparison) -> list[str]:
    """A row of the page's version comparison as it writes it."""
    def share(value: float | None) -> str:
        return "–" if value is None else f"{value:.1%}"

    return [row.version, str(row.decided), share(row.rate),
            f"{share(row.low)}–{share(row.high)}" if row.low is not None else "–",
            f"{row.difference * 100:+.1f} pts" if row.difference is not None else "–",
            f"{row.p_value:.3g}" if row.p_value is not None else "–",
            "–" if row.p_value is None else "yes" if row.significant else "no",
            "–" if row.significant or row.p_value is None else
            "cannot be estimated" if row.more_sessions is None else f"{row.more_sessions:,}"]


def check_versions_compared(page: Page, stack: Stack) -> None:
    """The AB flow's versions: rates, 95% intervals, differences, p-values and verdicts as ``warehouse/versions.py``
    computes them from the sessions sent, first against the default baseline, then against the one chosen."""
    counts = [versions.VersionCounts(version=v, sent=sent, completed=completed, ongoing=ongoing)
              for v, (sent, completed, ongoing) in AB_VERSIONS.items()]
    assert versions.default_baseline(counts) == "1"
    log_in(page, stack, f"/funnel?flow={AB_FLOW}")
    expect(page.get_by_role("heading", name="Version against version")).to_be_visible(timeout=60_000)
    for baseline in ("1", "2"):
        if baseline != "1":
            choose(page, "Baseline version", baseline)
        rows = versions.compare(counts, baseline=baseline)
        if baseline == "1":  # the data shows both verdicts, and v3's sessions in progress are not decided
            assert [(r.decided, r.significant) for r in rows] == [(130, False), (120, True), (34, False)]
        want = [compared_row(r) for r in rows]
        assert poll(lambda: tables(page, COMPARED), want=[want]) == [want]
        bars = {"type": "bar", "name": None, "x": [r.version for r in rows],
                "y": [r.rate * 100 for r in rows if r.rate is not None],
                "error_plus": [(r.high - r.rate) * 100 for r in rows if r.high is not None and r.rate is not None],
                "error_minus": [(r.rate - r.low) * 100 for r in rows if r.low is not None and r.rate is not None]}
        assert poll(lambda: [t for t in traces(page) if t["error_plus"]], want=[bars]) == [bars]
        verdicts = [r.verdict for r in rows if r.version != baseline]
        items = page.get_by_test_id("stMain").get_by_role("listitem")
        assert poll(items.all_inner_texts, want=verdicts) == verdicts
        assert parse_qs(urlparse(page.url).query).get("baseline") == (None if baseline == "1" else [baseline])
        expect(page.get_by_text(f"Baseline: version {baseline}")).to_be_visible()
        screenshot(page, f"versions-compared-baseline-v{baseline}")


def check_country_filter(page: Page, stack: Stack, traffic: FlowTraffic) -> None:
    """Choosing a recipient country in the sidebar changes the funnel's figures to the truth's for the sessions of
    that country (the simulator's user's), keeps it in the URL, and carries it to the Delivery page, whose messages
    sent are those of that country (the recent sessions' Flow messages, and the numbers' own when Brazilian), and to
    the Overview."""
    timeout_s = stack.settings.session_timeout_s
    log_in(page, stack, f"/funnel?flow={LEAD_FORM}&range=Last+24+hours")
    expect(page.get_by_role("heading", name="Engagement funnel")).to_be_visible(timeout=60_000)
    sessions = chosen(traffic.recent, flow_id=LEAD_FORM)
    country = sorted(Counter(s.user.country for s in sessions).items(), key=lambda c: (-c[1], c[0]))[1][0]
    mine = [s for s in sessions if s.user.country == country]
    want, everyone = sessions_now(mine, timeout_s=timeout_s), sessions_now(sessions, timeout_s=timeout_s)
    assert want != everyone, f"choosing {country} changes no figure: the check could not fail"
    shows(page, everyone)
    add_choice(page, "Recipient country", country)
    shows(page, want)
    assert parse_qs(urlparse(page.url).query)["country"] == [country], page.url
    screenshot(page, "filters-funnel-country")

    page.get_by_test_id("stSidebarNav").get_by_text("Delivery status").click()
    expect(page.get_by_role("heading", name="Delivery status")).to_be_visible(timeout=60_000)
    numbers = 6 if phone_country("5511999990000") == country else 0  # statuses_of's recipient
    theirs = [s for s in traffic.recent if s.user.country == country]
    sent_shown(page, len(theirs) + numbers)
    assert parse_qs(urlparse(page.url).query)["country"] == [country], page.url
    screenshot(page, "filters-delivery-country")

    # And to the Overview: that country's messages and Flow sessions (the AB flow's messages have no status: no
    # country), and its sessions' completion rate.
    page.get_by_test_id("stSidebarNav").get_by_text("Overview").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible(timeout=60_000)
    expect(metric(page, "Messages sent")).to_have_text(f"{len(theirs) + numbers:,}", timeout=60_000)
    expect(metric(page, "Flow sessions")).to_have_text(f"{len(theirs):,}", timeout=60_000)
    completed = sum(s.completed_s is not None for s in theirs)
    expect(metric(page, "Flow completion rate")).to_have_text(f"{completed / len(theirs):.1%}")
    assert parse_qs(urlparse(page.url).query)["country"] == [country], page.url


def sent_shown(page: Page, want: int) -> None:
    expect(metric(page, "Sent")).to_have_text(f"{want:,}", timeout=60_000)


def test_filters_travel_tables_download_and_an_unreachable_warehouse_is_explained(
    stack_factory: Callable[..., Stack],
) -> None:
    stack = stack_factory("broker", "warehouse", "receiver", "stream", "dashboards")
    now = int(time.time())
    assert post(stack, statuses_of(NUMBER_A, sent=4, failed=1, now=now)).status_code == 200
    assert post(stack, statuses_of(NUMBER_B, sent=2, failed=0, now=now)).status_code == 200
    traffic = send_flow_traffic(stack)
    # Every simulated session's message has a sent status in the last 24 hours; some failed, with no error code.
    sent_today = 6 + len(traffic.recent)
    failed_today = {"131049": 1, "0": sum("failed" in s.statuses for s in traffic.recent)}
    flow_sessions = len(traffic.recent) + sum(sent for sent, _, _ in AB_VERSIONS.values())
    flow_completed = sum(s.completed_s is not None for s in traffic.recent) + sum(
        completed for _, completed, _ in AB_VERSIONS.values())
    analyst = connect(stack.settings.warehouse_url_for("analyst"))
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
            screenshot(page, "delivery-one-number")

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
            sent_shown(page, sent_today)
            # The time range is shared with the other pages of the session.
            page.get_by_test_id("stSidebarNav").get_by_text("Overview").click()
            expect(page.get_by_role("heading", name="Overview")).to_be_visible(timeout=60_000)
            expect(metric(page, "Messages sent")).to_have_text(f"{sent_today:,}", timeout=60_000)
            expect(metric(page, "Flow sessions")).to_have_text(f"{flow_sessions:,}", timeout=60_000)
            expect(metric(page, "Flow completion rate")).to_have_text(f"{flow_completed / flow_sessions:.1%}")
            assert parse_qs(urlparse(page.url).query).get("range") == ["Last 24 hours"], page.url

            # Each flow filter changes the figures as the truth says; versions are compared honestly.
            names = {**NAMES, AB_FLOW: AB_NAME}
            assert poll(lambda: flow_names.flow_names(analyst), want=names) == names
            check_flow_filters(page, stack, traffic)
            check_versions_compared(page, stack)
            check_country_filter(page, stack, traffic)

            # Every table downloads as CSV: the failures by error code, exactly.
            log_in(page, stack, "/delivery?range=Last+24+hours")
            sent_shown(page, sent_today)
            with page.expect_download(timeout=30_000) as download_info:
                page.locator(".st-key-download_failures_by_error_code").get_by_role("button").click()
            download = download_info.value
            assert download.suggested_filename == "failures_by_error_code.csv"
            rows = list(csv.DictReader(io.StringIO(Path(download.path()).read_text())))
            want_rows = sorted(((code, str(n)) for code, n in failed_today.items()), key=lambda r: (-int(r[1]), r[0]))
            assert [(r["error_code"], r["messages"]) for r in rows] == want_rows

            # Each page's render time: from a click in the menu to the first frame showing its heading and first
            # figure, table, note or caption (measured in the page: render_time), a few times each, in one logged-in
            # session. Each page finishes its run and the browser is idle before the next click: a page left mid-run
            # leaves its queries running on the warehouse's two cores and its elements to draw, and the next page's
            # time would be the two pages' work.
            run_finished(page)
            for path, heading in [*PAGES.items()] * 3:
                menu = page.get_by_test_id("stSidebarNav").get_by_text(heading, exact=True)
                timings.setdefault(path, []).append(render_time(page, heading, menu))
                expect(page.get_by_role("heading", name=heading)).to_be_visible(timeout=60_000)
                page.locator(FIRST_ELEMENT).first.wait_for(timeout=60_000)
                run_finished(page)
                expect(page.get_by_test_id("stException")).to_have_count(0)
                screenshot(page, "page-" + ("overview" if path == "/" else path.strip("/")))

            # The warehouse goes away: a clear message and a retry, never a traceback.
            stack.supervisor.kill("warehouse")
            log_in(page, stack, "/delivery")
            expect(page.get_by_text(re.compile("The warehouse is unreachable"))).to_be_visible(timeout=60_000)
            expect(page.get_by_role("button", name="Retry")).to_be_visible()
            expect(page.get_by_test_id("stException")).to_have_count(0)
            screenshot(page, "warehouse-unreachable")
        finally:
            browser.close()
    report = {path: {"loads": len(runs), "p95_s": round(sorted(runs)[-1], 3), "median_s": round(
        sorted(runs)[len(runs) // 2], 3)} for path, runs in timings.items()}
    (OUTPUT / "page-render.json").write_text(json.dumps(report, indent=2))
    print("page render times (s):", json.dumps(report))  # noqa: T201 - reported, never asserted
