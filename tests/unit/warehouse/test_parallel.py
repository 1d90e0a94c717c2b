"""A page's queries side by side (warehouse.parallel.Fetch): leaving the block waits for every call, unless the
block raised (a page's run stopped by a click elsewhere): then the calls not started are cancelled and the running
ones are not waited for."""

from __future__ import annotations

import threading

import pytest

from warehouse.parallel import Fetch


def test_leaving_the_block_waits_for_every_call() -> None:
    release = threading.Event()
    with Fetch(workers=2) as fetch:
        slow = fetch(lambda: release.wait(timeout=30))
        fetch(release.set)
    assert slow.done() and slow.result() is True


def test_leaving_on_an_error_cancels_what_has_not_started_and_does_not_wait_for_what_runs() -> None:
    release, running = threading.Event(), threading.Event()

    def query() -> str:
        running.set()
        release.wait(timeout=30)
        return "answer"

    with pytest.raises(RuntimeError, match="stopped"), Fetch(workers=1) as fetch:
        slow = fetch(query)
        queued = fetch(lambda: "never")
        assert running.wait(timeout=30)
        raise RuntimeError("stopped")
    assert not slow.done() and queued.cancelled()
    release.set()
    assert slow.result(timeout=30) == "answer"


def test_first_returns_only_once_its_call_is_done() -> None:
    running, release, returned = threading.Event(), threading.Event(), threading.Event()
    seen: list[bool] = []

    def releaser() -> None:  # while the call runs: has first() returned yet?
        running.wait(timeout=30)
        seen.append(returned.is_set())
        release.set()

    def query() -> str:
        running.set()
        release.wait(timeout=30)
        return "first"

    threading.Thread(target=releaser).start()
    with Fetch(workers=2) as fetch:
        done = fetch.first(query)
        returned.set()
        assert done.done() and done.result() == "first"
    assert seen == [False]
