"""The supervisor's fault-injection signals, on a real child process."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from embedded.supervisor import ProcessSpec, Supervisor


def _state(pid: int) -> str:
    # /proc/<pid>/stat: "pid (comm) S ...": the state letter follows the closing parenthesis.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _wait_for_state(pid: int, wanted: set[str], deadline_s: float = 10.0) -> str:
    deadline = time.monotonic() + deadline_s
    state = _state(pid)
    while state not in wanted and time.monotonic() < deadline:
        time.sleep(0.02)
        state = _state(pid)
    return state


def test_pause_stops_the_child_and_resume_lets_it_run(tmp_path: Path) -> None:
    spec = ProcessSpec("sleeper", [sys.executable, "-c", "import time\nwhile True: time.sleep(0.01)"],
                       ready=lambda: True)
    with Supervisor(log_dir=tmp_path) as supervisor:
        pid = supervisor.start(spec).process.pid
        assert _wait_for_state(pid, {"S", "R"}) in {"S", "R"}
        supervisor.pause("sleeper")
        assert _wait_for_state(pid, {"T"}) == "T"
        supervisor.resume("sleeper")
        assert _wait_for_state(pid, {"S", "R"}) in {"S", "R"}
        supervisor.pause("sleeper")
        assert _wait_for_state(pid, {"T"}) == "T"
    # A paused child still stops with the supervisor.
    assert supervisor.children["sleeper"].process.poll() is not None
