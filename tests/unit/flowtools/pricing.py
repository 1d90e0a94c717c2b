"""The sample rate card read by hand (plain csv, not config.ratecard), so the simulators' spend is checked against an
independent reading of the same file."""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal
from functools import cache

from config.ratecard import SAMPLE_PATH


@cache
def _rows() -> tuple[dict[str, str], ...]:
    text = "\n".join(line for line in SAMPLE_PATH.read_text().splitlines() if not line.startswith("#"))
    return tuple(csv.DictReader(io.StringIO(text)))


def sample_rate(country: str, category: str, kind: str, day: date) -> Decimal:
    """A delivered message's price on the sample card: free unless ``regular``; the market's own rate, else ``*``;
    the exact pricing type, else ``*``; the latest effective on or before ``day``."""
    if kind != "regular":
        return Decimal(0)
    for market in (country, "*"):
        for pricing_type in (kind, "*"):
            found = [r for r in _rows() if (r["market"], r["category"], r["pricing_type"]) == (
                market, category, pricing_type) and date.fromisoformat(r["effective_from"]) <= day]
            if found:
                return Decimal(max(found, key=lambda r: r["effective_from"])["price"])
    raise AssertionError(f"no rate for {country}/{category}/{kind}")
