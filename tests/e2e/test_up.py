"""``flowscope up``: the whole embedded pipeline with simulated traffic, stopped by Ctrl-C with no orphans."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from config.settings import SECRETS, Settings
from embedded.specs import PROCESS_SECRETS, SEAWEEDFS_PORTS
from tests.stack import poll, stack_settings


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _component(cmdline: str) -> str:
    """Which part of the stack a process is, from its command line."""
    for needle, component in (("warehouse serve", "warehouse"), ("warehouse rollup", "rollup"),
                              ("cli ingest", "receiver"), ("cli stream", "stream"),
                              ("streamlit", "dashboards"), ("simulate-flows", "flow-sessions"),
                              ("cli simulate", "simulator"), ("weed", "seaweedfs"), ("alertmanager", "alertmanager"),
                              ("prometheus", "prometheus"), ("broker retention", "broker-retention")):
        if needle in cmdline:
            return component
    return "broker" if "tansu" in cmdline or "calfkit" in cmdline else cmdline


def _secrets_by_process(pids: set[int], settings: Settings) -> dict[str, set[str]]:
    """component → the secret settings whose values appear anywhere in its processes' environments."""
    seen: dict[str, set[str]] = {}
    for pid in pids:
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # gone meanwhile (a short-lived helper process)
        names = seen.setdefault(_component(cmdline), set())
        names.update(name for name in SECRETS if getattr(settings, name).encode() in environ)
    return seen


def test_up_shows_live_numbers_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    # up's default broker; a day of simulated history instead of the default 14 (the history is the same per day).
    settings = stack_settings(tmp_path / "up", simulate_rate=50.0, broker_storage="durable", simulate_history_days=1)
    env = {**os.environ, **settings.as_env()}
    process = subprocess.Popen(
        [sys.executable, "-m", "flowscope.cli", "up"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    output: list[str] = []
    started = time.monotonic()
    try:
        assert process.stdout is not None
        deadline = started + 120
        # The status line says how far behind the warehouse is, the worker's lag and the broker's objects; the
        # first line with statuses may come before the worker's first scrape shows its freshness (a line later).
        full = re.compile(r"stored: [\d,]+( · \+[\d,]+/s)? · behind \d+\.\d s( FALLING BEHIND)? · lag [\d,]+ records"
                          r" · broker [\d,]+ objects$")
        first_data: float | None = None
        live = None
        for line in process.stdout:
            output.append(line)
            if first_data is None and re.search(r"message statuses stored: ([1-9][\d,]*)", line):
                first_data = time.monotonic() - started
            live = full.search(line.rstrip("\n")) if first_data is not None else None
            if live or time.monotonic() > deadline:
                break
        assert any(line.startswith("first statuses in the warehouse") for line in output), "".join(output)
        # The history went through the pipeline first, with progress, every POST landing.
        assert any(re.match(r"history: [\d,]+ / [\d,]+ POSTs of 1 days sent \(100%\)$", line) for line in output)
        assert any(re.match(r"history sent in \d+\.\d s; the pages fill", line) for line in output)
        assert live is not None, "".join(output)
        assert first_data is not None and first_data < 60, f"first data after {first_data} s"
        text = "".join(output)
        for url in (f"http://{settings.ingest_host}:{settings.ingest_port}/webhooks/whatsapp",
                    f"http://localhost:{settings.dashboard_port}", f"127.0.0.1:{settings.warehouse_port}",
                    f"http://127.0.0.1:{settings.stream_metrics_port}/metrics"):
            assert url in text
        assert f"kafka://127.0.0.1:{settings.broker_port} (tansu, durable: S3 on SeaweedFS)" in text
        health = httpx.get(f"http://127.0.0.1:{settings.dashboard_port}/_stcore/health", timeout=5)
        assert (health.status_code, health.text) == (200, "ok")
        # Prometheus runs (make test installs it), with the shipped rules, scraping both processes.
        prometheus = f"http://127.0.0.1:{settings.prometheus_port}"
        assert f"{prometheus}  (alerts: {prometheus}/alerts)" in text
        assert f"http://127.0.0.1:{settings.alertmanager_port}" in text
        rules = httpx.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
        alerts = {rule["name"] for group in rules for rule in group["rules"] if rule["type"] == "alerting"}
        assert "FlowscopeDeliveryFailureRatioHigh" in alerts

        def targets() -> dict[str, str]:
            active = httpx.get(f"{prometheus}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
            return {target["labels"]["job"]: target["health"] for target in active}

        every_up = {"flowscope-receiver": "up", "flowscope-stream": "up", "flowscope-rollup": "up"}
        assert poll(targets, want=every_up, deadline_s=30) == every_up
        ours = _descendants(process.pid)
        assert len(ours) >= 8  # broker, warehouse, receiver, stream, dashboards, 2 simulators, prometheus, ...
        seen = _secrets_by_process(ours, settings)
        assert {component: names for component, names in seen.items() if component in PROCESS_SECRETS} == {
            component: set(names) for component, names in PROCESS_SECRETS.items()}
        assert {component: names for component, names in seen.items() if component not in PROCESS_SECRETS} == {
            component: set() for component in seen if component not in PROCESS_SECRETS}
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
        output.append(rest)
    assert process.returncode == 0, "".join(output)
    assert "stopped; no flowscope process is left running" in "".join(output)
    assert [pid for pid in ours if _alive(pid)] == []
    ports = (settings.broker_port, settings.broker_metrics_port, settings.warehouse_port, settings.ingest_port,
             settings.stream_metrics_port, settings.rollup_metrics_port,
             settings.dashboard_port, settings.prometheus_port, settings.alertmanager_port,
             *range(settings.seaweedfs_base_port, settings.seaweedfs_base_port + len(SEAWEEDFS_PORTS)))
    assert [port for port in ports if _listening(port)] == []
