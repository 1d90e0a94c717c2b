"""Flow versions compared honestly: completion rates with their uncertainty, and whether a difference is real.

Pure arithmetic on the counts of :func:`warehouse.flows.funnel` grouped by version (no SQL). Per version:

- decided sessions n = sent − ongoing. A session still in progress (not completed, not failed, active within the
  abandonment timeout) is not decided yet: it is left out of the rates, never counted as dropped. Failed and
  abandoned sessions are decided and not completed. The completed sessions x are all decided.
- completion rate p = x / n (none when n = 0).
- its 95% Wilson score interval, with z = Φ⁻¹(0.975) ≈ 1.959964::

      centre = (p + z² / 2n) / (1 + z² / n)
      half   = z / (1 + z² / n) · √(p(1 − p) / n + z² / 4n²)
      [centre − half, centre + half]   (clamped to [0, 1] against rounding)

Against a baseline version b (by default the version with the most sessions sent, the first in the given order
on a tie), each other version v with decided sessions (n_b, n_v > 0):

- difference d = p_v − p_b (a fraction; the page shows points, 100·d).
- two-sided two-proportion z-test with the pooled standard error::

      p̄ = (x_b + x_v) / (n_b + n_v)
      se = √(p̄(1 − p̄)(1 / n_b + 1 / n_v))
      z  = d / se,   p-value = 2(1 − Φ(|z|)) = erfc(|z| / √2)

  When se = 0 (both versions at 0% or both at 100%) d = 0 and the p-value is 1.
- significant at 95% when the p-value < α = 0.05.
- when not significant, the sessions per version that would detect the observed difference with power 1 − β = 0.8
  at α = 0.05 (two-sided), by the formula that matches the pooled test (Fleiss, without continuity correction)::

      p̄ = (p_b + p_v) / 2
      n = ⌈(z_{α/2} √(2 p̄(1 − p̄)) + z_β √(p_b(1 − p_b) + p_v(1 − p_v)))² / d²⌉

  with z_{α/2} = Φ⁻¹(0.975), z_β = Φ⁻¹(0.8) ≈ 0.841621. (The unpooled variant (z_{α/2} + z_β)²(p_b q_b + p_v q_v)
  / d² is slightly smaller: 385 instead of 388 for 0.5 against 0.6.) The formula assumes equal groups, so the
  smaller of the two is the bottleneck: the sessions still needed per version are n − min(n_b, n_v), never
  negative. When d = 0 no sample size can tell the difference: it cannot be estimated (none).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from statistics import NormalDist

import pandas as pd

ALPHA = 0.05
POWER = 0.8
_Z_ALPHA = NormalDist().inv_cdf(1 - ALPHA / 2)  # 1.959963984540054
_Z_BETA = NormalDist().inv_cdf(POWER)  # 0.8416212335729143


@dataclass(frozen=True, kw_only=True)
class VersionCounts:
    """A version's sessions: sent, completed and still ongoing (of the sent)."""

    version: str
    sent: int
    completed: int
    ongoing: int

    def __post_init__(self) -> None:
        if min(self.sent, self.completed, self.ongoing) < 0:
            raise ValueError(f"negative session counts for version {self.version!r}: {self}")
        if self.completed + self.ongoing > self.sent:
            raise ValueError(f"version {self.version!r}: completed + ongoing exceed sent: {self}")

    @property
    def decided(self) -> int:
        """Sessions whose outcome is known: completed, abandoned or failed."""
        return self.sent - self.ongoing


@dataclass(frozen=True, kw_only=True)
class VersionComparison:
    """One version's completion rate, and how it compares with the baseline's (none for the baseline itself or
    when either version has no decided session)."""

    version: str
    baseline: str
    decided: int
    completed: int
    rate: float | None
    low: float | None
    high: float | None
    difference: float | None = None
    p_value: float | None = None
    significant: bool = False
    sessions_per_version: int | None = None
    more_sessions: int | None = None
    verdict: str = ""


def wilson_interval(successes: int, trials: int, *, z: float = _Z_ALPHA) -> tuple[float, float] | None:
    """The Wilson score interval of successes / trials (95% by default); none without trials."""
    if trials <= 0:
        return None
    p = successes / trials
    shrink = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / shrink
    half = z / shrink * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    return max(0.0, centre - half), min(1.0, centre + half)


def two_proportion_p_value(x1: int, n1: int, x2: int, n2: int) -> float:
    """Two-sided p-value of the pooled two-proportion z-test of x1/n1 against x2/n2."""
    if n1 <= 0 or n2 <= 0:
        raise ValueError(f"both groups need trials, got n1={n1}, n2={n2}")
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0
    z = (x2 / n2 - x1 / n1) / se
    return math.erfc(abs(z) / math.sqrt(2))


def sessions_per_version(p1: float, p2: float) -> int | None:
    """Sessions per version to detect p1 against p2 with power POWER at ALPHA (two-sided); none when p1 = p2."""
    if p1 == p2:
        return None
    mean = (p1 + p2) / 2
    root = _Z_ALPHA * math.sqrt(2 * mean * (1 - mean)) + _Z_BETA * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    return math.ceil(root * root / ((p1 - p2) ** 2))


def from_funnel(funnel: pd.DataFrame) -> list[VersionCounts]:
    """The counts of a ``flows.funnel`` frame grouped by flow_version, in its order."""
    return [VersionCounts(version=str(v), sent=int(s), completed=int(c), ongoing=int(g))
            for v, s, c, g in zip(funnel["flow_version"], funnel["sent"], funnel["completed"], funnel["ongoing"],
                                  strict=True)]


def default_baseline(counts: Sequence[VersionCounts]) -> str | None:
    """The version with the most sessions sent (the first of them on a tie); none without versions."""
    if not counts:
        return None
    return max(counts, key=lambda c: c.sent).version  # max keeps the first of equals


def compare(counts: Sequence[VersionCounts], *, baseline: str | None = None) -> list[VersionComparison]:
    """Every version (in the given order) against ``baseline`` (default: :func:`default_baseline`)."""
    chosen = baseline if baseline is not None else default_baseline(counts)
    base = next((c for c in counts if c.version == chosen), None)
    if counts and base is None:
        raise ValueError(f"baseline {baseline!r} is none of the versions {[c.version for c in counts]}")
    return [_against(c, base) for c in counts] if base else []


def _against(counts: VersionCounts, base: VersionCounts) -> VersionComparison:
    n, x = counts.decided, counts.completed
    interval = wilson_interval(x, n)
    rate = x / n if n else None
    row = VersionComparison(version=counts.version, baseline=base.version, decided=n, completed=x, rate=rate,
                            low=interval[0] if interval else None, high=interval[1] if interval else None)
    name, base_name = _name(counts.version), _name(base.version)
    if counts.version == base.version:
        return replace(row, verdict=f"{name} is the baseline" + ("" if n else ": no decided sessions yet"))
    if n == 0 or base.decided == 0:
        return replace(row, verdict=f"{name} against {base_name}: no decided sessions yet to compare")
    base_rate = base.completed / base.decided
    difference = x / n - base_rate
    p_value = two_proportion_p_value(base.completed, base.decided, x, n)
    points = abs(difference) * 100
    if p_value < ALPHA:
        more_or_less = "more" if difference > 0 else "less"
        verdict = f"{name} completes {points:.1f} points {more_or_less} than {base_name} ({_p(p_value)}): significant"
        return replace(row, difference=difference, p_value=p_value, significant=True, verdict=verdict)
    needed = sessions_per_version(base_rate, x / n)
    more = None if needed is None else max(0, needed - min(n, base.decided))
    verdict = f"{name} against {base_name}: no significant difference yet ({_p(p_value)}): "
    if more is None:
        verdict += "equal rates, so the sessions needed to tell a difference cannot be estimated"
    else:  # more > 0: with min(n_b, n_v) ≥ n the observed z would exceed z_{α/2} + z_β·(…) > z_{α/2}
        verdict += f"about {_about(more):,} more sessions per version to tell a {points:.1f}-point difference"
    return replace(row, difference=difference, p_value=p_value, sessions_per_version=needed, more_sessions=more,
                    verdict=verdict)


def _name(version: str) -> str:
    return f"v{version}" if version.isdigit() else version


def _p(p_value: float) -> str:
    if p_value < 0.001:
        return "p < 0.001"
    return f"p = {p_value:.3f}" if p_value < 0.01 else f"p = {p_value:.2f}"


def _about(n: int) -> int:
    """n to two significant figures: 1,873 → 1,900; 45 → 45."""
    digits = len(str(n)) - 2
    return n if digits <= 0 else round(n, -digits)
