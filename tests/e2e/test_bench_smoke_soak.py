"""``flowscope bench --only soak`` at its quick size: the report has every field of every step, and the
warehouse holds exactly what the simulator had acknowledged. Speed is never asserted here (make bench)."""

from __future__ import annotations

from pathlib import Path

from flowtools.bench import soak


def test_soak_quick_reports_every_step_and_is_exact(tmp_path: Path) -> None:
    results = soak.run(lambda message: None, quick=True, data_dir=tmp_path)
    assert [(r.benchmark, r.name) for r in results] == [
        ("soak", "max sustained status events/s"),
        ("soak", "freshness p95 ms, worst quarter at 600/s"),
        ("soak", "freshness p95 last/first quarter at 600/s"),
        ("soak", "consumer lag max, last quarter at 600/s"),
        ("soak", "RSS last/second quarter, worst process at 600/s"),
        ("soak", "non-2xx answers"),
        ("soak", "events lost, doubled or mis-aggregated"),
    ]
    entry = results[0].details
    steps = entry["steps"]
    assert [(s["target_events_per_s"], s["minutes"]) for s in steps] == list(soak.QUICK_STEPS)
    assert entry["max_sustained_events_per_s"] == soak.max_sustained(steps)
    processes = {"seaweedfs", "broker", "broker-retention", "warehouse", "receiver", "stream", soak.LOAD}
    for step in steps:
        assert len(step["freshness_p95_ms_by_quarter"]) == 4
        assert all(p95 is not None and p95 > 0 for p95 in step["freshness_p95_ms_by_quarter"])
        assert len(step["lag_max_by_quarter"]) == 4 and len(step["broker_objects_by_quarter"]) == 4
        assert all(n is not None and n >= 1 for n in step["broker_objects_by_quarter"])
        assert set(step["rss_mb_by_quarter"]) == processes
        assert all(len(q) == 4 for q in step["rss_mb_by_quarter"].values())
        assert set(step["cpu_percent_of_one_core"]) == processes
        assert step["freshness_probes"] >= 20
        assert step["accepted_events_per_s"] > 0
        # Exact: every acknowledged status stored once, every dashboard aggregate equal to the truth.
        exactness = step["exactness"]
        assert (step["exact"], exactness["lost"], exactness["double_counted_rows"], exactness["aggregates_off"]) == (
            True, 0, 0, {})
        assert exactness["aggregates_checked"] > 10 and exactness["acknowledged_statuses"] > 1000
        assert step["non_2xx"] == 0
        assert step["sustained"] == all(step["checks"].values())
    assert (results[-2].value, results[-1].value) == (0.0, 0.0)
    assert list(tmp_path.iterdir()) == []  # the temporary pipeline is gone
