"""The rate card: what one message costs, by market, pricing category and type, from an effective date.

Meta charges per delivered message (per-message pricing since 2025-07-01) at a rate that depends on the
recipient's market and the message's pricing category, and publishes its rates as a rate card that changes
over time ("Pricing on the WhatsApp Business Platform", developers.facebook.com/docs/whatsapp/pricing, with a
downloadable rate card per currency). flowscope does not know a business's rates: the user supplies them as a
CSV file, one rate per line::

    market,category,pricing_type,currency,price,effective_from
    BR,marketing,regular,USD,0.0625,2026-01-01
    *,utility,*,USD,0.0200,2026-01-01

- ``market``: the recipient's ISO 3166 alpha-2 country (``BR``), or ``*`` for every country without its own line.
  Meta's rate card groups some countries into regions ("Rest of Latin America"): write one line per country of
  the region, or use ``*``.
- ``category``: Meta's ``pricing.category`` (``marketing``, ``utility``, ``authentication``,
  ``authentication_international``, ``service``, ...).
- ``pricing_type``: Meta's ``pricing.type`` the rate applies to (``regular``), or ``*`` for any.
- ``currency``: ISO 4217 code; ``price``: per message, a decimal number, never negative.
- ``effective_from``: ISO date (UTC) from which the rate applies, until a later line for the same market,
  category and type takes over.

Lines starting with ``#`` and blank lines are ignored. A message is charged when Meta marked it billable and it
was delivered (or read): free types (``free_customer_service``, ``free_entry_point``) and non-billable messages
cost 0, whatever the card says. The most specific line wins: the market over ``*``, then the pricing type over
``*``; among those, the latest effective date on or before the day the message was sent.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path

from config.exceptions import RateCardError

COLUMNS = ("market", "category", "pricing_type", "currency", "price", "effective_from")
ANY = "*"
FREE_PRICING_TYPES: tuple[str, ...] = ("free_customer_service", "free_entry_point")
SAMPLE_PATH = Path(__file__).with_name("rate_card.sample.csv")

_MARKET = re.compile(r"^(?:[A-Z]{2}|\*)$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_NAME = re.compile(r"^(?:[a-z0-9_]+|\*)$")


@dataclass(frozen=True, slots=True)
class Rate:
    market: str
    category: str
    pricing_type: str
    currency: str
    price: Decimal
    effective_from: date


def is_free(pricing_type: str, billable: int) -> bool:
    """Whether a message costs nothing whatever the card says: a free type, or Meta marked it not billable
    (``billable``: 1 true, 0 false, -1 unknown — unknown is charged when the type is not free)."""
    return pricing_type in FREE_PRICING_TYPES or billable == 0


class RateCard:
    """Rates in force by date; :meth:`price` finds a message's rate."""

    def __init__(self, rates: list[Rate]) -> None:
        self.rates = sorted(rates, key=lambda r: (r.market, r.category, r.pricing_type, r.effective_from))
        currencies = {r.currency for r in rates}
        if len(currencies) > 1:
            raise RateCardError(f"rate card: one currency per card, found {', '.join(sorted(currencies))}")
        self.currency = next(iter(currencies), "")
        self._by_key: dict[tuple[str, str, str], list[Rate]] = {}
        for rate in self.rates:
            self._by_key.setdefault((rate.market, rate.category, rate.pricing_type), []).append(rate)

    @classmethod
    def from_csv(cls, text: str, *, source: str = "rate card") -> RateCard:
        lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1)
                 if line.strip() and not line.lstrip().startswith("#")]
        if not lines:
            raise RateCardError(f"{source}: no header line ({','.join(COLUMNS)})")
        reader = csv.reader(io.StringIO("\n".join(line for _, line in lines)))
        header = [name.strip() for name in next(reader)]
        if tuple(header) != COLUMNS:
            raise RateCardError(
                f"{source} line {lines[0][0]}: header must be {','.join(COLUMNS)}, got {','.join(header)}")
        rates: list[Rate] = []
        seen: set[tuple[str, str, str, date]] = set()
        for (number, _), row in zip(lines[1:], reader, strict=True):
            rate = _rate(row, where=f"{source} line {number}")
            key = (rate.market, rate.category, rate.pricing_type, rate.effective_from)
            if key in seen:
                raise RateCardError(f"{source} line {number}: a second rate for {'/'.join(map(str, key))}")
            seen.add(key)
            rates.append(rate)
        return cls(rates)

    @classmethod
    def from_file(cls, path: Path) -> RateCard:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise RateCardError(f"rate card {path}: {exc.strerror or exc}") from exc
        return cls.from_csv(text, source=str(path))

    def price(self, *, country: str, category: str, pricing_type: str, billable: int, day: date) -> Decimal | None:
        """What one delivered message costs; 0 when free; None when the card has no rate for it."""
        if is_free(pricing_type, billable):
            return Decimal(0)
        for market in (country, ANY):
            for kind in (pricing_type, ANY):
                found = None
                for rate in self._by_key.get((market, category, kind), ()):
                    if rate.effective_from <= day:
                        found = rate
                if found is not None:
                    return found.price
        return None


def _rate(row: list[str], *, where: str) -> Rate:
    if len(row) != len(COLUMNS):
        raise RateCardError(f"{where}: {len(COLUMNS)} fields expected, got {len(row)}")
    market, category, pricing_type, currency, price_text, day_text = (field.strip() for field in row)
    if not _MARKET.match(market):
        raise RateCardError(f"{where}: market must be an ISO 3166 alpha-2 code (BR) or *, got {market!r}")
    if not _NAME.match(category) or category == ANY:
        raise RateCardError(f"{where}: category must be Meta's pricing category (marketing), got {category!r}")
    if not _NAME.match(pricing_type):
        raise RateCardError(f"{where}: pricing_type must be Meta's pricing type (regular) or *, got {pricing_type!r}")
    if not _CURRENCY.match(currency):
        raise RateCardError(f"{where}: currency must be an ISO 4217 code (USD), got {currency!r}")
    try:
        price = Decimal(price_text)
    except InvalidOperation:
        raise RateCardError(f"{where}: price must be a decimal number, got {price_text!r}") from None
    if not price.is_finite() or price < 0:
        raise RateCardError(f"{where}: price must be a number >= 0, got {price_text!r}")
    try:
        effective_from = date.fromisoformat(day_text)
    except ValueError:
        raise RateCardError(f"{where}: effective_from must be a date (2026-01-01), got {day_text!r}") from None
    return Rate(market, category, pricing_type, currency, price, effective_from)
