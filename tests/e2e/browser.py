"""What the dashboard browser tests share: Debian's Chromium for Playwright, and logging in to the dashboards."""

from __future__ import annotations

from playwright.sync_api import Locator, Page, expect

from tests.stack import Stack

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


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
