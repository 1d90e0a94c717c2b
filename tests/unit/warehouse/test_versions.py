"""Versions compared: Wilson intervals, the pooled two-proportion z-test and the sample size, against hand
computations; rates over decided sessions only; the verdicts the Engagement funnel page shows."""

from __future__ import annotations

import math
from statistics import NormalDist

import pandas as pd
import pytest

from warehouse.versions import (
    VersionComparison,
    VersionCounts,
    compare,
    default_baseline,
    from_funnel,
    sessions_per_version,
    two_proportion_p_value,
    wilson_interval,
)

Z = NormalDist().inv_cdf(0.975)  # 1.959963984540054
Z_BETA = NormalDist().inv_cdf(0.8)  # 0.8416212335729143


def version(name: str, *, sent: int, completed: int, ongoing: int = 0) -> VersionCounts:
    return VersionCounts(version=name, sent=sent, completed=completed, ongoing=ongoing)


def rounded(interval: tuple[float, float] | None) -> tuple[float, float] | None:
    return None if interval is None else (round(interval[0], 4), round(interval[1], 4))


def test_wilson_interval_of_half_is_the_textbook_one() -> None:
    assert rounded(wilson_interval(50, 100)) == (0.4038, 0.5962)
    # By hand: centre 0.5, half-width z / (1 + z²/100) · √(0.25/100 + z²/40000).
    half = Z / (1 + Z * Z / 100) * math.sqrt(0.0025 + Z * Z / 40_000)
    assert wilson_interval(50, 100) == pytest.approx((0.5 - half, 0.5 + half), abs=1e-15)


def test_wilson_interval_at_the_edges_stays_within_zero_and_one() -> None:
    # p = 1: low = n / (n + z²), high = 1; p = 0: low = 0, high = z² / (n + z²).
    assert wilson_interval(20, 20) == (pytest.approx(20 / (20 + Z * Z), abs=1e-15), 1.0)
    assert rounded(wilson_interval(20, 20)) == (0.8389, 1.0)
    assert wilson_interval(0, 20) == (0.0, pytest.approx(Z * Z / (20 + Z * Z), abs=1e-15))
    assert wilson_interval(0, 0) is None


def test_pooled_z_test_of_sixty_against_forty_in_a_hundred() -> None:
    # Pooled p̄ = 0.5, se = √(0.25 · 0.02) = √0.005, z = 0.2 / √0.005 = 2√2, p = erfc(2√2 / √2) = erfc(2).
    assert two_proportion_p_value(40, 100, 60, 100) == pytest.approx(math.erfc(2), rel=1e-12)
    assert round(two_proportion_p_value(60, 100, 40, 100), 4) == 0.0047
    assert two_proportion_p_value(30, 100, 60, 200) == 1.0  # equal rates: z = 0
    assert two_proportion_p_value(20, 20, 30, 30) == 1.0  # both 100%: se = 0
    assert two_proportion_p_value(0, 20, 0, 30) == 1.0  # both 0%: se = 0
    with pytest.raises(ValueError, match="both groups need trials"):
        two_proportion_p_value(0, 0, 5, 10)


def test_sample_size_for_half_against_six_tenths() -> None:
    # n = ⌈(z_{α/2} √(2 p̄ q̄) + z_β √(p1 q1 + p2 q2))² / (p1 − p2)²⌉ with p̄ = 0.55:
    # (1.959964 · √0.495 + 0.841621 · √0.49)² / 0.01 = (1.378961 + 0.589135)² / 0.01 = 387.34 → 388.
    by_hand = (Z * math.sqrt(2 * 0.55 * 0.45) + Z_BETA * math.sqrt(0.25 + 0.24)) ** 2 / 0.1**2
    assert by_hand == pytest.approx(387.34, abs=0.01)
    assert sessions_per_version(0.5, 0.6) == sessions_per_version(0.6, 0.5) == 388
    # The unpooled variant (z_{α/2} + z_β)² (p1 q1 + p2 q2) / d² gives the often quoted 385.
    assert math.ceil((Z + Z_BETA) ** 2 * 0.49 / 0.1**2) == 385
    assert sessions_per_version(0.3, 0.3) is None  # no difference: cannot be estimated


def test_ongoing_sessions_are_left_out_never_counted_as_dropped() -> None:
    # v1: 120 sent, 20 still going, 50 completed → 50 / 100, not 50 / 120.
    # v2: 100 sent, all decided, 60 completed. Pooled p̄ = 110 / 200 = 0.55, se = √(0.2475 · 0.02),
    # z = 0.1 / se = 1.4213, p = erfc(z / √2) = 0.155: not significant; 388 per version needed, 100 each so far.
    rows = compare([version("1", sent=120, completed=50, ongoing=20), version("2", sent=100, completed=60)])
    p_value = math.erfc(0.1 / math.sqrt(0.55 * 0.45 * 0.02) / math.sqrt(2))
    assert round(p_value, 3) == 0.155
    low, high = wilson_interval(50, 100) or (0, 0)
    low2, high2 = wilson_interval(60, 100) or (0, 0)
    assert rows == [
        VersionComparison(version="1", baseline="1", decided=100, completed=50, rate=0.5, low=low, high=high,
                          verdict="v1 is the baseline"),
        VersionComparison(version="2", baseline="1", decided=100, completed=60, rate=0.6, low=low2, high=high2,
                          difference=pytest.approx(0.1, abs=1e-15), p_value=pytest.approx(p_value, rel=1e-12),
                          significant=False, sessions_per_version=388, more_sessions=288,
                          verdict="v2 against v1: no significant difference yet (p = 0.16): about 290 more "
                                  "sessions per version to tell a 10.0-point difference"),
    ]


def test_a_significant_difference_either_way() -> None:
    counts = [version("1", sent=100, completed=40), version("2", sent=100, completed=60)]
    assert default_baseline(counts) == "1"  # a tie on sent: the first
    better = compare(counts)[1]
    assert (better.significant, better.sessions_per_version, better.more_sessions) == (True, None, None)
    assert better.p_value == pytest.approx(math.erfc(2), rel=1e-12)
    assert better.verdict == "v2 completes 20.0 points more than v1 (p = 0.005): significant"
    worse = compare(counts, baseline="2")[0]
    assert worse.difference == pytest.approx(-0.2, abs=1e-15)
    assert worse.verdict == "v1 completes 20.0 points less than v2 (p = 0.005): significant"
    tiny = compare([version("a", sent=10_000, completed=3_000), version("b", sent=10_000, completed=4_000)])[1]
    assert tiny.verdict == "b completes 10.0 points more than a (p < 0.001): significant"


def test_the_baseline_is_the_version_sent_most_unless_chosen() -> None:
    counts = [version("1", sent=50, completed=10), version("2", sent=80, completed=20),
              version("3", sent=80, completed=30)]
    assert default_baseline(counts) == "2"
    assert [r.baseline for r in compare(counts)] == ["2", "2", "2"]
    assert [r.baseline for r in compare(counts, baseline="3")] == ["3", "3", "3"]
    with pytest.raises(ValueError, match="baseline '4' is none of the versions"):
        compare(counts, baseline="4")


def test_equal_rates_cannot_tell_how_many_sessions_it_would_take() -> None:
    row = compare([version("1", sent=200, completed=60), version("2", sent=100, completed=30)])[1]
    assert (row.difference, row.p_value, row.significant) == (0.0, 1.0, False)
    assert (row.sessions_per_version, row.more_sessions) == (None, None)
    assert row.verdict == ("v2 against v1: no significant difference yet (p = 1.00): equal rates, so the sessions "
                           "needed to tell a difference cannot be estimated")
    full = compare([version("1", sent=30, completed=30), version("2", sent=20, completed=20)])[1]
    assert (full.rate, full.high, full.p_value, full.more_sessions) == (1.0, 1.0, 1.0, None)


def test_versions_without_decided_sessions_have_no_rate_and_no_comparison() -> None:
    rows = compare([version("1", sent=10, completed=4), version("2", sent=0, completed=0),
                    version("3", sent=5, completed=0, ongoing=5)])
    assert [(r.decided, r.rate, r.low, r.high, r.p_value) for r in rows[1:]] == [(0, None, None, None, None)] * 2
    assert [r.verdict for r in rows[1:]] == ["v2 against v1: no decided sessions yet to compare",
                                             "v3 against v1: no decided sessions yet to compare"]
    only_going = compare([version("1", sent=5, completed=0, ongoing=5), version("2", sent=3, completed=1)])
    assert [r.verdict for r in only_going] == ["v1 is the baseline: no decided sessions yet",
                                               "v2 against v1: no decided sessions yet to compare"]


def test_a_single_version_and_none() -> None:
    low, high = wilson_interval(5, 8) or (0, 0)
    assert compare([version("7", sent=10, completed=5, ongoing=2)]) == [
        VersionComparison(version="7", baseline="7", decided=8, completed=5, rate=5 / 8, low=low, high=high,
                          verdict="v7 is the baseline")]
    assert compare([]) == [] and default_baseline([]) is None


def test_counts_are_read_from_a_funnel_frame_and_checked() -> None:
    frame = pd.DataFrame({"flow_version": ["1", "2"], "sent": pd.array([10, 8], dtype="uint64"),
                          "completed": pd.array([4, 2], dtype="uint64"), "ongoing": pd.array([1, 0], dtype="uint64"),
                          "abandoned": [5, 6]})
    assert from_funnel(frame) == [version("1", sent=10, completed=4, ongoing=1), version("2", sent=8, completed=2)]
    with pytest.raises(ValueError, match="completed \\+ ongoing exceed sent"):
        version("1", sent=5, completed=4, ongoing=2)
    with pytest.raises(ValueError, match="negative session counts"):
        version("1", sent=5, completed=-1)
