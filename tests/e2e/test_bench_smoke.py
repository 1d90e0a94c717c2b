"""``flowscope bench`` end to end at quick sizes (freshness and dashboard): the command runs, prints its
table, writes a report with every figure and its target, and the dashboard warehouse held what was
loaded. Speed is never asserted here: ``make bench`` measures it."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from flowtools.bench import dashboard
from flowtools.bench.run import main


def test_bench_quick_writes_a_report_of_every_figure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "bench-report.json"
    code = main(["--only", "freshness", "--only", "dashboard", "--quick", "--events", "120000",
                 "--report", str(report), "--data-dir", str(tmp_path / "data")])
    rows = orjson.loads(report.read_bytes())
    assert code == (0 if all(row["met"] for row in rows) else 1)
    assert [(row["benchmark"], row["name"]) for row in rows] == [
        ("freshness", "webhook to dashboard p95 ms (durable)"),
        ("dashboard", "query p95 ms"),
        ("dashboard", "worst query p95 ms"),
    ]
    assert all(row["value"] > 0 and row["met"] == (row["value"] <= row["target"]) for row in rows)
    freshness, overall, _ = rows
    assert freshness["details"]["probes"] == 20 and freshness["details"]["broker_mode"] == "durable"
    assert freshness["details"]["p50_ms"] <= freshness["value"] <= freshness["details"]["max_ms"]
    # every query of every page ran, on a warehouse holding what the loader wrote
    assert overall["details"]["queries"] == len(dashboard.queries(dashboard.datetime(2026, 1, 1)))
    assert set(overall["details"]["p95_ms_by_query"]) == {label for label, _ in dashboard.queries(
        dashboard.datetime(2026, 1, 1))}
    listed = overall["details"]["by_query"]
    assert [row["query"] for row in listed] == list(overall["details"]["p95_ms_by_query"])
    assert all(0 < row["p50_ms"] <= row["p95_ms"] == overall["details"]["p95_ms_by_query"][row["query"]]
               for row in listed)
    assert {row["range"] for row in listed} == {"1h", "24h", "7d", "30d", "all"}
    messages = round(120_000 / dashboard.EVENTS_PER_MESSAGE)
    assert overall["details"]["messages"] == messages
    assert overall["details"]["sent_statuses"] == messages  # each message exactly one "sent"
    assert overall["details"]["flow_sends"] == (messages + 1) // 2  # every second message is a Flow
    out = capsys.readouterr().out
    assert "webhook to dashboard p95 ms (durable)" in out and f"report written to {report}" in out
    assert list((tmp_path / "data").iterdir()) == []  # the temporary pipelines are gone
