"""What the dashboard browser tests share: Debian's Chromium for Playwright, logging in to the dashboards, reading
and setting what a page shows, and saving screenshots under ``test-output/`` (gitignored) for a reviewer."""

from __future__ import annotations

import time
from datetime import date, datetime
from pathlib import Path
from typing import Any

from playwright.sync_api import Locator, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.stack import Stack

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
OUTPUT = Path(__file__).resolve().parents[2] / "test-output"  # screenshots and reports, never committed


# What a page shows first: a figure, a table, a note or a caption.
FIRST_ELEMENT = ("[data-testid='stMetric'], [data-testid='stDataFrame'], [data-testid='stAlert'], "
                 "[data-testid='stCaptionContainer']")
# Measured in the page, not by polling from the test: Playwright re-checks a locator with growing pauses (up to
# 500 ms), so a page drawn at 0.5 s could be seen at 1.0 s. From the next click (its event's time) to the first
# animation frame, the one before a paint, in which the page's heading and a first element below it have a box.
_WATCH_RENDER = """([heading, first]) => {
  window.__flowscopeRendered = new Promise(resolve => {
    let clicked = null;
    document.addEventListener("click", () => { clicked = performance.now(); }, {capture: true, once: true});
    const shown = e => { const box = e.getBoundingClientRect(); return box.width > 0 && box.height > 0; };
    const frame = () => {
      const title = clicked === null ? undefined
        : [...document.querySelectorAll("h1")].find(e => e.textContent.trim() === heading && shown(e));
      const below = title && [...document.querySelectorAll(first)].find(
        e => shown(e) && (title.compareDocumentPosition(e) & Node.DOCUMENT_POSITION_FOLLOWING));
      if (below) { resolve(performance.now() - clicked); } else { requestAnimationFrame(frame); }
    };
    requestAnimationFrame(frame);
  });
}"""


def render_time(page: Page, heading: str, click: Locator) -> float:
    """Seconds from clicking ``click`` to the first frame showing the page ``heading`` with its first element."""
    page.evaluate(_WATCH_RENDER, [heading, FIRST_ELEMENT])
    click.click()
    return float(page.evaluate("window.__flowscopeRendered")) / 1000


def run_finished(page: Page) -> None:
    """Wait until the page's script run is over (every query in, everything sent) and the browser is idle."""
    page.locator("[data-testid='stApp'][data-test-script-state='notRunning']").wait_for(timeout=60_000)
    page.evaluate("() => new Promise(done => requestIdleCallback(() => done(), {timeout: 10000}))")


def dashboard_url(stack: Stack, path: str = "/") -> str:
    return f"http://127.0.0.1:{stack.settings.dashboard_port}{path}"


def password_field(page: Page) -> Locator:
    return page.get_by_label("Password", exact=True)


def submit_password(page: Page, password: str) -> None:
    """Types a password into the dashboards' login form (once it has appeared) and submits it."""
    field = password_field(page)
    expect(field).to_be_visible(timeout=60_000)
    field.fill(password)
    page.get_by_role("button", name="Log in").click()


def log_in(page: Page, stack: Stack, path: str = "/") -> None:
    """Opens a dashboards page, logs in with the stack's password, and returns once the login form is gone."""
    page.goto(dashboard_url(stack, path))
    submit_password(page, stack.settings.dashboard_password)
    expect(password_field(page)).to_have_count(0, timeout=30_000)


def screenshot(page: Page, name: str) -> Path:
    """Saves the whole page as ``test-output/<name>.png`` and returns its path.

    Streamlit scrolls its main section inside a viewport-high box, so a "full page" screenshot shows only the
    viewport: the viewport is made as tall as that section for the screenshot, then set back."""
    OUTPUT.mkdir(exist_ok=True)
    path = OUTPUT / f"{name}.png"
    viewport = page.viewport_size
    height = page.evaluate("() => document.querySelector('[data-testid=stMain]')?.scrollHeight ?? 0")
    if viewport is not None and height > viewport["height"]:
        page.set_viewport_size({"width": viewport["width"], "height": height})
        page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")
    try:
        page.screenshot(path=str(path), full_page=True)
    finally:
        if viewport is not None and height > viewport["height"]:
            page.set_viewport_size(viewport)
    return path


def metric(page: Page, label: str) -> Locator:
    """The value of the metric labelled ``label``: the whole label, never a label it only begins."""
    named = page.get_by_test_id("stMetricLabel").get_by_text(label, exact=True)
    return page.get_by_test_id("stMetric").filter(has=named).get_by_test_id("stMetricValue")


def choose(page: Page, label: str, option: str, *, deadline_s: float = 60) -> None:
    """Picks ``option`` in the select box labelled ``label``, as a user does: open it, click the option.

    A page that refreshes itself may draw the box again while it is open, closing it: then it is opened again."""
    box = _pick(page, label, option, deadline_s=deadline_s)
    expect(box).to_have_value(option, timeout=30_000)


def add_choice(page: Page, label: str, option: str, *, deadline_s: float = 60) -> None:
    """Adds ``option`` in the multiselect labelled ``label``, as a user does (open it, click the option), then
    closes it."""
    _pick(page, label, option, deadline_s=deadline_s)
    page.keyboard.press("Escape")


def _pick(page: Page, label: str, option: str, *, deadline_s: float) -> Locator:
    """Opens the box labelled ``label`` and clicks ``option``; opens it again if a refresh closed it meanwhile."""
    box = page.get_by_role("combobox", name=label, exact=True)
    deadline = time.monotonic() + deadline_s
    while True:
        box.click()
        try:
            page.get_by_role("option", name=option, exact=True).click(timeout=5_000)
            return box
        except PlaywrightTimeoutError:
            if time.monotonic() > deadline:
                raise


def pick_days(page: Page, label: str, first: date, last: date) -> None:
    """Types a range of days into the date range input labelled ``label``, then leaves it (which applies it)."""
    for end, day in (("start", first), ("end", last)):
        page.get_by_role("spinbutton", name=f"year, {label} {end} date", exact=True).click()
        page.keyboard.type(day.strftime("%Y%m%d"))  # the input shows YYYY/MM/DD and moves on by itself
    page.get_by_role("heading", level=1).first.click()


def tables(page: Page, columns: list[str]) -> list[list[list[str]]]:
    """The cells, row by row, of every table on the page with these column headers, as the page shows them.

    Streamlit draws a table on a canvas; its grid keeps an accessible copy of the visible cells in the page."""
    found: list[list[list[str]]] = page.evaluate("""columns => Array.from(
        document.querySelectorAll('[data-testid=stDataFrame] table')).map(table => [
            Array.from(table.querySelectorAll('thead th')).map(th => th.innerText.trim()),
            Array.from(table.querySelectorAll('tbody tr')).map(
                row => Array.from(row.querySelectorAll('td')).map(td => td.innerText.trim()))])
        .filter(([head]) => JSON.stringify(head) === JSON.stringify(columns)).map(([, rows]) => rows)""", columns)
    return found


def traces(page: Page) -> list[dict[str, Any]]:
    """Every trace of every chart on the page as the browser draws it: type, name, x, y and the error bars
    (``error_plus``, ``error_minus``), numbers as plain lists."""
    found: list[dict[str, Any]] = page.evaluate("""() => {
        const plain = values => values == null ? null : Array.from(values._inputArray ?? values);
        return Array.from(document.querySelectorAll('.js-plotly-plot')).flatMap(chart => (chart.data ?? []).map(
            t => ({type: t.type, name: t.name ?? null, x: plain(t.x), y: plain(t.y),
                   error_plus: plain(t.error_y?.array), error_minus: plain(t.error_y?.arrayminus)})));
    }""")
    return found


def points(page: Page, trace: str) -> list[list[tuple[datetime, int]]]:
    """For every line chart with a trace named ``trace``: its (time, value) points with a value other than 0."""
    return [[(datetime.fromisoformat(x), int(y)) for x, y in zip(t["x"], t["y"], strict=True) if y]
            for t in traces(page) if t["type"] == "scatter" and t["name"] == trace]
