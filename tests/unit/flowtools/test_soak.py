"""The soak's arithmetic: steps from the command line, quarters, and when a step counts as sustained."""

from __future__ import annotations

from typing import Any

import pytest

from flowtools.bench import soak
from flowtools.simulator.runner import SimulationResult


def test_steps_parse_from_the_command_line() -> None:
    assert soak.parse_steps("750:10,1500:10,3000:30") == ((750, 10.0), (1500, 10.0), (3000, 30.0))
    assert soak.parse_steps("300:0.5") == ((300, 0.5),)


@pytest.mark.parametrize("text", ["3000", "3000:x", "x:3", "0:5", "3000:0", "-1:3"])
def test_bad_steps_are_refused_with_the_expected_shape(text: str) -> None:
    with pytest.raises(ValueError, match="EVENTS_PER_S:MINUTES|more than 0 minutes"):
        soak.parse_steps(text)


def _result(events: int, answers: dict[str, int] | None = None) -> SimulationResult:
    return SimulationResult(acked=100, retries=0, failures=0, abandoned=0, status_updates_acked=events,
                            latencies=[], elapsed_s=40.0, stopped=True, answers=answers or {}, truth=None)


def _record(*, lag: list[float], objects: list[float], rss: list[float], events: int = 40_000,
            answers: dict[str, int] | None = None) -> soak.StepRecord:
    """A 40 s step at 1,000 events/s with one sample per quarter (at 5, 15, 25, 35 s)."""
    record = soak.StepRecord(target=1000, minutes=40 / 60, posts_per_s=130.0, started=100.0, ended=140.0)
    for n in range(4):
        record.samples.append({"at": 105.0 + 10 * n, "lag": lag[n], "objects": objects[n], "bytes": 1e6, "disk": 50.0,
                               "rss": {"receiver": rss[n], soak.LOAD: 100.0 * (n + 1)}})
    record.result = _result(events, answers)
    return record


def _probes(per_quarter_ms: list[float]) -> list[tuple[float, float]]:
    return [(100.0 + 10 * q + k, ms) for q, ms in enumerate(per_quarter_ms) for k in range(10)]


EXACT: dict[str, Any] = {"exact": True, "lost": 0}


def test_a_flat_exact_step_is_sustained() -> None:
    step = soak.summarise(_record(lag=[10, 20, 20, 22], objects=[200, 300, 310, 320], rss=[50, 60, 60, 65]),
                          _probes([800, 900, 850, 950]), 0, EXACT)
    assert step["freshness_p95_ms_by_quarter"] == [800, 900, 850, 950]
    assert step["lag_max_by_quarter"] == [10, 20, 20, 22]
    assert step["rss_mb_by_quarter"]["receiver"] == [50, 60, 60, 65]
    assert step["accepted_events_per_s"] == 1000.0
    assert step["checks"] == {name: True for name in step["checks"]} and step["sustained"] is True


@pytest.mark.parametrize(("change", "failed"), [
    ({"probes": [800, 900, 1500, 2100]}, {"freshness_p95_every_quarter", "freshness_flat"}),
    ({"probes": [800, 900, 900, 1100]}, {"freshness_flat"}),
    ({"lag": [10, 200, 300, 400]}, {"lag_flat"}),
    ({"objects": [200, 2000, 3000, 4000]}, {"broker_objects_flat"}),
    ({"rss": [50, 60, 70, 80]}, {"rss_flat"}),
    ({"events": 30_000}, {"rate_kept"}),
    ({"answers": {"503": 1}}, {"no_non_2xx"}),
    ({"exact": {"exact": False, "lost": 3}}, {"exact"}),
])
def test_each_check_fails_on_its_own(change: dict[str, Any], failed: set[str]) -> None:
    kwargs: dict[str, Any] = {"lag": [10, 20, 20, 22], "objects": [200, 300, 310, 320], "rss": [50, 60, 60, 65]}
    kwargs.update({k: v for k, v in change.items() if k in ("lag", "objects", "rss", "events", "answers")})
    step = soak.summarise(_record(**kwargs), _probes(change.get("probes", [800, 900, 850, 950])), 0,
                          change.get("exact", EXACT))
    assert {name for name, ok in step["checks"].items() if not ok} == failed
    assert step["sustained"] is False


def test_the_load_generator_may_grow_it_holds_the_truth() -> None:
    step = soak.summarise(_record(lag=[1, 1, 1, 1], objects=[5, 5, 5, 5], rss=[50, 50, 50, 50]),
                          _probes([100, 100, 100, 100]), 0, EXACT)
    assert step["rss_mb_by_quarter"][soak.LOAD] == [100, 200, 300, 400] and step["checks"]["rss_flat"] is True


def test_max_sustained_is_the_highest_sustained_step() -> None:
    def step(target: int, ok: bool) -> dict[str, Any]:
        return {"target_events_per_s": target, "sustained": ok}

    assert soak.max_sustained([step(750, True), step(1500, True), step(3000, True), step(4500, False)]) == 3000
    assert soak.max_sustained([step(750, False), step(1500, True), step(3000, True)]) == 3000
    assert soak.max_sustained([step(750, True), step(1500, False)]) == 750
    assert soak.max_sustained([step(750, False)]) == 0
