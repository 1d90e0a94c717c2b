"""Fixtures shared by every test directory. Each section is self-contained."""

from __future__ import annotations

# --- embedded warehouse server (`flowscope warehouse serve`) as a separate process ---------------------
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import clickhouse_connect
import httpx
import pytest
from clickhouse_connect.driver.client import Client

from embedded.supervisor import free_port

WAREHOUSE_READY_TIMEOUT_S = 60.0
WAREHOUSE_STOP_TIMEOUT_S = 30.0

# The one command that serves the embedded warehouse; where it listens and what it serves come from settings.
WAREHOUSE_SERVE = [sys.executable, "-m", "flowscope.cli", "warehouse", "serve"]
WAREHOUSE_DIR_NAME = "warehouse"  # `flowscope warehouse serve` serves <FLOWSCOPE_DATA_DIR>/warehouse
# The users every test warehouse server has, per role: (user, password).
WAREHOUSE_USERS = {
    "admin": ("test_admin", "test-admin-password"),
    "writer": ("test_writer", "test-writer-password"),
    "analyst": ("test_analyst", "test-analyst-password"),
}


def _free_port() -> int:
    return free_port()


def warehouse_serve_env(
    data_dir: Path, *, port: int, host: str = "127.0.0.1", log_level: str = "INFO"
) -> dict[str, str]:
    """The environment in which ``WAREHOUSE_SERVE`` serves ``data_dir`` on host:port (inherited settings dropped)."""
    if data_dir.name != WAREHOUSE_DIR_NAME:
        raise ValueError(f"the warehouse serves <data dir>/{WAREHOUSE_DIR_NAME}, not {data_dir}")
    inherited = {key: value for key, value in os.environ.items() if not key.startswith("FLOWSCOPE_")}
    users = {}
    for role, (user, password) in WAREHOUSE_USERS.items():
        users[f"FLOWSCOPE_WAREHOUSE_{role.upper()}_USER"] = user
        users[f"FLOWSCOPE_WAREHOUSE_{role.upper()}_PASSWORD"] = password
    return {
        **inherited,
        **users,
        "PYTHONUNBUFFERED": "1",
        "FLOWSCOPE_WAREHOUSE_URL": f"http://{host}:{port}/flowscope",
        "FLOWSCOPE_DATA_DIR": str(data_dir.parent),
        "FLOWSCOPE_LOG_LEVEL": log_level,
    }


@dataclass
class WarehouseServer:
    """A ``flowscope warehouse serve`` process on a free port."""

    process: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def client(self, role: str = "admin", **options: Any) -> Client:
        """A clickhouse-connect client of a role's user (admin by default), exactly as for a ClickHouse server."""
        user, password = WAREHOUSE_USERS[role]
        return clickhouse_connect.get_client(host="127.0.0.1", port=self.port, username=user, password=password,
                                             **options)

    def auth(self, role: str = "admin") -> tuple[str, str]:
        """(user, password) of a role, e.g. for ``httpx``'s basic ``auth=``."""
        return WAREHOUSE_USERS[role]

    def url_for(self, role: str = "admin", database: str = "default") -> str:
        """The server's URL with a role's credentials and a database, as the settings' ``warehouse_url_for``."""
        user, password = WAREHOUSE_USERS[role]
        return f"http://{user}:{password}@127.0.0.1:{self.port}/{database}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout_s: float = WAREHOUSE_READY_TIMEOUT_S) -> None:
        """Poll /ping until it answers ``Ok.``; fail at once if the process exits."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"warehouse server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "ping", timeout=1.0).text == "Ok.\n":
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"warehouse server not ready after {timeout_s:.0f} s:\n{self.log()}")

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout_s: float = WAREHOUSE_STOP_TIMEOUT_S) -> int:
        """Signal the server and wait for it to exit; returns its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout_s)


@pytest.fixture
def warehouse_server_factory(tmp_path: Path) -> Iterator[Callable[..., WarehouseServer]]:
    """Starts warehouse servers (``data_dir`` defaults to a fresh one); after the test none may be left running."""
    servers: list[WarehouseServer] = []

    def start(data_dir: Path | None = None, *, wait: bool = True) -> WarehouseServer:
        directory = data_dir if data_dir is not None else tmp_path / f"warehouse{len(servers)}" / WAREHOUSE_DIR_NAME
        port = _free_port()
        log_path = tmp_path / f"warehouse{len(servers)}-{port}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                WAREHOUSE_SERVE,
                stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parent.parent,
                env=warehouse_serve_env(directory, port=port),
            )
        server = WarehouseServer(process, port, directory, log_path)
        servers.append(server)
        if wait:
            server.wait_ready()
        return server

    yield start
    for server in servers:
        if server.process.poll() is None:
            server.process.terminate()
            try:
                server.process.wait(timeout=WAREHOUSE_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait(timeout=WAREHOUSE_STOP_TIMEOUT_S)
    assert [s.process.pid for s in servers if s.process.poll() is None] == []
