"""Prometheus and Alertmanager next to the embedded stack: configuration files and process specs.

The alert rules are the shipped ones (``deploy/prometheus/rules/``), the same files the compose file
mounts; only the scrape targets, intervals and the notification receiver differ between the embedded
stack, the tests and production. Configuration is written as JSON, which both programs read as YAML.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from config.settings import Settings
from embedded.supervisor import ProcessSpec, http_ready

DEPLOY_DIR = Path(__file__).resolve().parents[1] / "deploy"
RULES_DIR = DEPLOY_DIR / "prometheus" / "rules"
RECEIVER_JOB = "flowscope-receiver"
STREAM_JOB = "flowscope-stream"
ROLLUP_JOB = "flowscope-rollup"
INSTALL_HINT = "sudo apt-get install prometheus prometheus-alertmanager"


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


def alertmanager_binary() -> str | None:
    # Debian names it prometheus-alertmanager; upstream tarballs, alertmanager.
    return shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


def missing_binaries() -> list[str]:
    """The alerting programs not installed, by package name (empty when `flowscope up` can run both)."""
    missing = []
    if prometheus_binary() is None:
        missing.append("prometheus")
    if alertmanager_binary() is None:
        missing.append("prometheus-alertmanager")
    return missing


def alerting_note() -> str | None:
    """What `flowscope up` says when it cannot run Prometheus and Alertmanager, else None."""
    missing = missing_binaries()
    if not missing:
        return None
    return f"off: {' and '.join(missing)} not installed (sudo apt-get install {' '.join(missing)})"


def prometheus_config(*, receiver_targets: Sequence[str], stream_targets: Sequence[str], alertmanager: str,
                      interval_s: float, rules_dir: Path = RULES_DIR,
                      rollup_targets: Sequence[str] = ()) -> dict[str, object]:
    interval = f"{interval_s:g}s"
    rollup = [{"job_name": ROLLUP_JOB, "static_configs": [{"targets": list(rollup_targets)}]}] if rollup_targets else []
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": interval},
        "rule_files": [str(rules_dir / "*.yml")],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        "scrape_configs": [
            {"job_name": RECEIVER_JOB, "static_configs": [{"targets": list(receiver_targets)}]},
            {"job_name": STREAM_JOB, "static_configs": [{"targets": list(stream_targets)}]},
            *rollup,
        ],
    }


def alertmanager_config(*, webhook_url: str, group_wait_s: float, group_interval_s: float) -> dict[str, object]:
    receiver: dict[str, object] = {"name": "flowscope"}
    if webhook_url:
        receiver["webhook_configs"] = [{"url": webhook_url, "send_resolved": True}]
    return {
        "route": {
            "receiver": "flowscope",
            "group_by": ["alertname", "phone_number_id", "flow_id"],
            "group_wait": f"{group_wait_s:g}s",
            "group_interval": f"{group_interval_s:g}s",
            "repeat_interval": "4h",
        },
        "receivers": [receiver],
    }


def prometheus_spec(settings: Settings, *, stream_targets: Sequence[str] = (), interval_s: float = 5.0,
                    name: str = "prometheus") -> ProcessSpec:
    """Prometheus scraping the receiver, the stream workers and the rollup, evaluating the shipped rules."""
    binary = prometheus_binary()
    if binary is None:
        raise FileNotFoundError(f"prometheus is not installed ({INSTALL_HINT})")
    home = settings.data_dir.resolve() / name
    home.mkdir(parents=True, exist_ok=True)
    config = prometheus_config(
        receiver_targets=[f"{settings.ingest_host}:{settings.ingest_port}"],
        stream_targets=list(stream_targets) or [f"127.0.0.1:{settings.stream_metrics_port}"],
        rollup_targets=[f"127.0.0.1:{settings.rollup_metrics_port}"] if settings.rollup_metrics_port else [],
        alertmanager=f"127.0.0.1:{settings.alertmanager_port}",
        interval_s=interval_s,
    )
    config_path = home / "prometheus.yml"
    config_path.write_text(json.dumps(config, indent=2))
    address = f"127.0.0.1:{settings.prometheus_port}"
    return ProcessSpec(
        name=name,
        argv=[binary, f"--config.file={config_path}", f"--storage.tsdb.path={home / 'tsdb'}",
              f"--web.listen-address={address}", "--storage.tsdb.retention.time=7d", "--log.level=warn"],
        ready=http_ready(f"http://{address}/-/ready"),
        url=f"http://{address}  (alerts: http://{address}/alerts)",
    )


def alertmanager_spec(settings: Settings, *, webhook_url: str = "", group_wait_s: float = 10.0,
                      group_interval_s: float = 30.0, name: str = "alertmanager") -> ProcessSpec:
    """Alertmanager, posting to ``webhook_url`` when set (else alerts only show in its UI)."""
    binary = alertmanager_binary()
    if binary is None:
        raise FileNotFoundError(f"alertmanager is not installed ({INSTALL_HINT})")
    home = settings.data_dir.resolve() / name
    home.mkdir(parents=True, exist_ok=True)
    config_path = home / "alertmanager.yml"
    config_path.write_text(json.dumps(alertmanager_config(
        webhook_url=webhook_url, group_wait_s=group_wait_s, group_interval_s=group_interval_s), indent=2))
    address = f"127.0.0.1:{settings.alertmanager_port}"
    return ProcessSpec(
        name=name,
        argv=[binary, f"--config.file={config_path}", f"--storage.path={home / 'data'}",
              f"--web.listen-address={address}", "--cluster.listen-address=", "--log.level=warn"],
        ready=http_ready(f"http://{address}/-/ready"),
        url=f"http://{address}" + (f"  (notifies {webhook_url})" if webhook_url else ""),
    )
