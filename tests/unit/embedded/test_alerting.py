"""Prometheus / Alertmanager configuration for the embedded stack, and what `up` says without them."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from embedded.alerting import RULES_DIR, alerting_note, alertmanager_config, prometheus_config


def test_without_the_binaries_up_says_how_to_install_them(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert alerting_note() == (
        "off: prometheus and prometheus-alertmanager not installed "
        "(sudo apt-get install prometheus prometheus-alertmanager)"
    )


def test_with_the_binaries_there_is_nothing_to_say() -> None:
    assert alerting_note() is None  # make test installs both Debian packages


def test_generated_configurations_pass_promtool_and_amtool(tmp_path: Path) -> None:
    prometheus = tmp_path / "prometheus.yml"
    prometheus.write_text(json.dumps(prometheus_config(
        receiver_targets=["127.0.0.1:8000"], stream_targets=["127.0.0.1:9102", "127.0.0.1:9103"],
        rollup_targets=["127.0.0.1:9104"], alertmanager="127.0.0.1:9093", interval_s=1)))
    alertmanager = tmp_path / "alertmanager.yml"
    alertmanager.write_text(json.dumps(alertmanager_config(webhook_url="http://127.0.0.1:5001/hook",
                                                           group_wait_s=1, group_interval_s=1)))
    promtool, amtool = shutil.which("promtool"), shutil.which("amtool")
    assert promtool and amtool, "make test installs Debian's prometheus and prometheus-alertmanager"
    # promtool also loads the rule files the configuration names: the shipped rules.
    checked = subprocess.run([promtool, "check", "config", str(prometheus)], capture_output=True, text=True,
                             timeout=60, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 1 rule files found" in checked.stdout
    assert f"Checking {RULES_DIR / 'flowscope-alerts.yml'}\n  SUCCESS:" in checked.stdout
    checked = subprocess.run([amtool, "check-config", str(alertmanager)], capture_output=True, text=True,
                             timeout=60, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert sorted(p.name for p in RULES_DIR.glob("*.yml")) == ["flowscope-alerts.yml"]
