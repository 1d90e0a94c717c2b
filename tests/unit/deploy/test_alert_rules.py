"""The Prometheus alert rules: valid, unit-tested by promtool for every alert, and documented in the runbook."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "deploy" / "prometheus" / "rules" / "flowscope-alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "tests" / "flowscope-alerts.test.yml"
RUNBOOK = ROOT / "docs" / "alerts.md"
PROMTOOL_TIMEOUT_S = 300
SEVERITIES = {"critical", "warning", "info"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: `make test` installs it (Debian package `prometheus`)"
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=PROMTOOL_TIMEOUT_S, check=False)


def alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def github_anchor(heading: str) -> str:
    """GitHub's heading anchor: lowercase, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def runbook_anchors() -> set[str]:
    return {github_anchor(line.lstrip("#")) for line in RUNBOOK.read_text().splitlines() if re.match(r"#{1,6} ", line)}


def test_promtool_check_rules_passes() -> None:
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rules = sum(len(group["rules"]) for group in yaml.safe_load(RULES.read_text())["groups"])
    assert checked.stdout == f"Checking {RULES}\n  SUCCESS: {rules} rules found\n\n", checked.stdout


def test_promtool_unit_tests_pass() -> None:
    tested = promtool("test", "rules", str(RULE_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert tested.stdout == f"Unit Testing:  {RULE_TESTS}\n  SUCCESS\n\n", tested.stdout


def test_every_alert_has_a_firing_and_a_silent_unit_test() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert len(names) == len(alerts())  # no alert name defined twice
    assert names - firing == set(), "alerts without a unit test where they fire"
    assert names - silent == set(), "alerts without a unit test where they must not fire (exp_alerts: [])"
    assert (firing | silent) - names == set(), "unit tests of alerts that do not exist"


def test_every_alert_has_severity_summary_and_a_runbook_section() -> None:
    anchors = runbook_anchors()
    for rule in alerts():
        name = rule["alert"]
        assert rule.get("labels", {}).get("severity") in SEVERITIES, name
        annotations = rule.get("annotations", {})
        assert annotations.get("summary", "").strip(), name
        url = urlsplit(annotations.get("runbook_url", ""))
        assert url.path == "docs/alerts.md", (name, url)
        assert url.fragment == github_anchor(name), (name, url)
        assert url.fragment in anchors, (name, url)


def test_github_anchor() -> None:
    assert github_anchor(" FlowscopeTargetDown ") == "flowscopetargetdown"
    assert github_anchor("What to do: first checks (v2)") == "what-to-do-first-checks-v2"
