"""``flowscope bench``'s receiver and stream benchmarks at their quick size: they run, report every
figure with its target, lose nothing, and leave no process behind. Speed is never asserted."""

from __future__ import annotations

import socket
from pathlib import Path

from config.settings import Settings
from flowtools.bench import Result, receiver, stream
from flowtools.harness import isolated_settings


class _Factory:
    """``isolated_settings`` with the data under ``tmp_path`` (logs survive a failure); remembers what it made."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.made: list[Settings] = []

    def __call__(self, data_dir: Path, **overrides: object) -> Settings:
        settings = isolated_settings(self.root / data_dir.name, **overrides)
        self.made.append(settings)
        return settings


def _by_name(results: list[Result]) -> dict[str, Result]:
    return {result.name: result for result in results}


def _processes_of(data_dir: Path) -> list[int]:
    """Live processes started with this data directory in their environment."""
    marker = f"FLOWSCOPE_DATA_DIR={data_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if state != "Z" and marker in environ:
            found.append(int(entry.name))
    return found


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _assert_stopped(settings: Settings) -> None:
    assert _processes_of(settings.data_dir) == []
    assert [port for port in (settings.broker_port, settings.warehouse_port, settings.ingest_port)
            if _listening(port)] == []


def test_receiver_benchmark_quick(tmp_path: Path) -> None:
    factory = _Factory(tmp_path)
    said: list[str] = []

    results = receiver.run(factory, said.append, quick=True)

    assert [(r.benchmark, r.name) for r in results] == [
        ("receiver", "throughput ratio"), ("receiver", "p99 ms"),
        ("receiver", "non-2xx responses"), ("receiver", "events missing on broker"),
    ]
    by_name = _by_name(results)
    ratio, p99 = by_name["throughput ratio"], by_name["p99 ms"]
    assert (ratio.target, ratio.higher_is_better) == (0.5, True)
    assert (p99.target, p99.higher_is_better) == (25.0, False)
    assert ratio.value > 0 and p99.value > 0
    assert ratio.details["receiver_rps"] > 0 and ratio.details["noop_rps"] > 0
    assert ratio.details["broker_storage"] == "memory"
    assert ratio.details["receiver"]["non_2xx"] == 0 and ratio.details["noop"]["non_2xx"] == 0
    assert ratio.details["receiver"]["statuses"] == {"200": ratio.details["receiver"]["requests"]}

    non_2xx = by_name["non-2xx responses"]
    assert (non_2xx.value, non_2xx.met) == (0.0, True)
    assert non_2xx.details["warmup_non_2xx"] == 0

    missing = by_name["events missing on broker"]
    assert (missing.value, missing.met) == (0.0, True)
    broker = missing.details
    assert broker["all_events_reached_broker"] is True
    assert broker["events_on_topic"] == broker["events_counted_by_receiver"]
    assert broker["events_on_topic"] % receiver.STATUSES_PER_WEBHOOK == 0
    assert broker["events_on_topic"] >= broker["events_in_2xx_answers_seen_by_wrk"] > 0
    assert broker["events_counted_in_measured_run"] >= (
        receiver.STATUSES_PER_WEBHOOK * ratio.details["receiver"]["requests"]
    )

    assert said  # progress was shown
    assert len(factory.made) == 1
    _assert_stopped(factory.made[0])


def test_stream_benchmark_quick(tmp_path: Path) -> None:
    factory = _Factory(tmp_path)
    said: list[str] = []

    results = stream.run(factory, said.append, quick=True)

    assert [(r.benchmark, r.name) for r in results] == [
        ("stream", "events/s per worker"), ("stream", "ratio to bare consumer"),
        ("stream", "events missing from warehouse"),
    ]
    by_name = _by_name(results)
    worker, ratio, missing = (by_name[name] for name in
                              ("events/s per worker", "ratio to bare consumer", "events missing from warehouse"))
    assert (worker.target, worker.higher_is_better) == (50_000.0, True)
    assert worker.value > 0
    assert worker.details["events"] == stream.QUICK_EVENTS
    assert worker.details["worker"]["events"] == stream.QUICK_EVENTS
    assert worker.details["bare_consumer_events_per_s"] > 0
    assert worker.details["broker_storage"] == "memory"

    assert (ratio.target, ratio.met) == (0.0, True)  # informational
    assert ratio.value > 0
    assert ratio.details["bare_consumer"]["events"] == stream.QUICK_EVENTS

    assert (missing.value, missing.met) == (0.0, True)
    assert missing.details["stored"] == stream.QUICK_EVENTS
    assert missing.details["bare_consumer_read"] == stream.QUICK_EVENTS

    assert said
    assert len(factory.made) == 1
    _assert_stopped(factory.made[0])
