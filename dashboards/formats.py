"""How the pages write amounts of money and durations."""

from __future__ import annotations

from decimal import Decimal


def money(amount: Decimal | None, currency: str, *, places: int = 2) -> str:
    """``USD 12.34``; ``–`` when there is nothing to divide by; no currency when no card is loaded."""
    if amount is None:
        return "–"
    text = f"{amount:,.{places}f}"
    return f"{currency} {text}" if currency else text


def duration(ms: float) -> str:
    """``45 s`` below two minutes, ``12.5 min`` below two hours, else ``3.2 h``."""
    seconds = ms / 1000
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
