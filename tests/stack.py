"""The embedded stack on free ports, started as separate processes by the same code as ``flowscope up``.

Conftests import :func:`stack_factory` from here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from config.settings import Settings
from embedded.specs import broker_specs, dashboards_spec, receiver_spec, stream_spec, warehouse_spec
from embedded.supervisor import Supervisor
from flowtools.harness import isolated_settings
from warehouse.migrate import migrate


@dataclass
class Stack:
    settings: Settings
    supervisor: Supervisor

    @property
    def webhook_url(self) -> str:
        return f"http://{self.settings.ingest_host}:{self.settings.ingest_port}/webhooks/whatsapp"

    def start(self, name: str) -> None:
        if name == "broker":  # with its storage (SeaweedFS) when durable
            for spec in broker_specs(self.settings):
                self.supervisor.start(spec)
            return
        specs = {
            "warehouse": warehouse_spec,
            "receiver": receiver_spec,
            "stream": stream_spec,
            "dashboards": dashboards_spec,
        }
        self.supervisor.start(specs[name](self.settings))
        if name == "warehouse":
            migrate(self.settings.warehouse_url)


def poll(check: Callable[[], Any], *, want: Any, deadline_s: float = 60, interval_s: float = 0.2) -> Any:
    """Call ``check`` until it returns ``want`` or the deadline passes; returns the last value."""
    deadline = time.monotonic() + deadline_s
    value = check()
    while value != want and time.monotonic() < deadline:
        time.sleep(interval_s)
        value = check()
    return value


def stack_settings(data_dir: Path, **overrides: object) -> Settings:
    # Memory storage by default: fast. Tests of durability ask for broker_storage="durable".
    return isolated_settings(data_dir, **{"broker_storage": "memory", "log_level": "INFO", **overrides})


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for every practical purpose once reaped.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def stack_factory(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """Builds stacks on free ports; after the test every process they started must be gone."""
    stacks: list[Stack] = []

    def make(*components: str, **overrides: object) -> Stack:
        settings = stack_settings(tmp_path / f"stack{len(stacks)}", **overrides)
        stack = Stack(settings, Supervisor(log_dir=settings.data_dir / "logs", base_env={**os.environ}))
        stacks.append(stack)
        for name in components:
            stack.start(name)
        return stack

    yield make
    pids = []
    for stack in stacks:
        pids += stack.supervisor.pids()
        stack.supervisor.stop_all()
    assert [pid for pid in pids if _alive(pid)] == []
