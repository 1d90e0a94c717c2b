"""Every metric the receiver and the stream worker expose passes `promtool check metrics`."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable

import httpx

from tests.integration.test_flow_health import BLOCKED, ERRORS_ON, flows_webhook, post
from tests.stack import Stack, poll

USER_DATA = ("wamid", "flow_token", "recipient", "user_hash", "wa_id")


def lint(url: str) -> tuple[int, str]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make test` installs Debian's prometheus package"
    exposition = httpx.get(url, timeout=5).content
    checked = subprocess.run([promtool, "check", "metrics"], input=exposition, capture_output=True, timeout=30,
                             check=False)
    return checked.returncode, (checked.stdout + checked.stderr).decode()


def test_receiver_stream_and_rollup_metrics_pass_promtool(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory("broker", "warehouse", "receiver", "stream", gauge_refresh_s=0.5)
    assert post(stack, flows_webhook(BLOCKED, ERRORS_ON)).status_code == 200
    stream = f"http://127.0.0.1:{stack.settings.stream_metrics_port}/metrics"
    # Every kind of series present: the flow gauges are refreshed from the warehouse.
    assert poll(lambda: "flowscope_stream_flow_alert_active{" in httpx.get(stream).text, want=True,
                deadline_s=60)
    receiver = f"http://127.0.0.1:{stack.settings.ingest_port}/metrics"
    rollup = f"http://127.0.0.1:{stack.settings.rollup_metrics_port}/metrics"
    assert poll(lambda: "flowscope_rollup_pass_duration_seconds_count 0.0" not in httpx.get(rollup).text,
                want=True, deadline_s=60)  # a pass ran
    for url in (receiver, stream, rollup):
        assert lint(url) == (0, ""), url
        names = [line for line in httpx.get(url).text.splitlines() if line.startswith("flowscope_")]
        assert names and not [line for line in names if any(word in line for word in USER_DATA)]


def test_promtool_finds_a_badly_named_metric() -> None:
    """The lint above can fail: promtool rejects a counter without the _total suffix."""
    promtool = shutil.which("promtool")
    assert promtool
    bad = b"# HELP flowscope_bad_requests Requests.\n# TYPE flowscope_bad_requests counter\nflowscope_bad_requests 1\n"
    checked = subprocess.run([promtool, "check", "metrics"], input=bad, capture_output=True, timeout=30, check=False)
    assert checked.returncode == 3  # promtool: lint problems found
    assert checked.stderr == b"flowscope_bad_requests counter metrics should have \"_total\" suffix\n"
