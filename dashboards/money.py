"""Money as the pages show it: an amount in the rate card's currency, or why there is none."""

from __future__ import annotations

from decimal import Decimal


def money(amount: Decimal | None, currency: str, *, places: int = 2) -> str:
    """``USD 12.34``; ``–`` when there is nothing to divide by; no currency when no card is loaded."""
    if amount is None:
        return "–"
    text = f"{amount:,.{places}f}"
    return f"{currency} {text}" if currency else text
