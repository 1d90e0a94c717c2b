"""``flowscope bench`` (``make bench``): the speed targets, each measured against a ceiling in the same run.

Every figure is a ratio to something measured on the same machine in the same run (a no-op endpoint,
a bare consumer loop), or an absolute latency with its target next to it, so a slow machine does not
fail the run and a fast one does not hide a regression.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

Say = Callable[[str], None]


@dataclass(frozen=True)
class Result:
    """One measured figure: ``value`` against ``target`` (``higher_is_better`` says which way)."""

    benchmark: str  # receiver / stream / freshness / dashboard
    name: str  # e.g. "throughput ratio", "p99 ms"
    value: float
    target: float
    higher_is_better: bool
    unit: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def met(self) -> bool:
        return self.value >= self.target if self.higher_is_better else self.value <= self.target

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "met": self.met}


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100), at least 1
    return ordered[int(rank) - 1]
