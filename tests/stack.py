"""The tests' pytest face of the pipeline harness (:mod:`flowtools.harness`): ``stack_factory`` and test defaults.

Conftests import :func:`stack_factory` from here; a test's stack is a :class:`flowtools.harness.Pipeline`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from config.settings import Settings
from flowtools.harness import Pipeline, isolated_settings, poll

Stack = Pipeline

__all__ = ["Stack", "poll", "stack_factory", "stack_settings"]


def stack_settings(data_dir: Path, **overrides: object) -> Settings:
    # Memory storage by default: fast. Tests of durability ask for broker_storage="durable". The rollup
    # refreshes its read-without-delivered set every 2 s, so that figures settle within the tests' deadlines.
    return isolated_settings(data_dir, **{"broker_storage": "memory", "log_level": "INFO",
                                          "rollup_interval_s": 1.0, "rollup_reads_interval_s": 2.0, **overrides})


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
        stack = Stack(stack_settings(tmp_path / f"stack{len(stacks)}", **overrides))
        stacks.append(stack)
        stack.start(*components)
        return stack

    yield make
    pids = []
    for stack in stacks:
        pids += stack.supervisor.pids()
        stack.close()
    assert [pid for pid in pids if _alive(pid)] == []
