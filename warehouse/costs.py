"""What messages cost: the user's rate card in the warehouse, and spend priced from it.

Meta attaches per-message pricing to every status (``pricing.billable``, ``pricing_model``, ``type``,
``category``); the rate card (:mod:`config.ratecard`) says what a message of a market, category and type costs
from a date. ``outbound_messages`` holds one row per message, merged from all its statuses, so a message is
costed once whatever its duplicates and replays: it is *charged* when it was delivered (a delivered or read
status) and is not free (:func:`config.ratecard.is_free`), at the rate in force on the UTC day of its first status
(its send) for its recipient's country. Free messages are counted as free, never as missing; a charged message
the card has no rate for is counted as *unpriced*, so a gap in the card shows instead of lowering the spend.

The queries count messages per (group, country, category, type, billability, day) in SQL and price those counts
here with :class:`decimal.Decimal`, so sums are exact to the card's precision. Spend counts come from the
resolved messages and their hour sums (:mod:`warehouse.message_hours`): a 30-day range adds up hours.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pandas as pd
from clickhouse_connect.driver.client import Client

from config.ratecard import Rate, RateCard, is_free
from warehouse.message_hours import MESSAGE_COUNTS, whole_hours
from warehouse.queries import DeliveryFilter
from warehouse.tables import (
    RATE_CARD_COLUMNS,
    RATE_CARD_TABLE,
)

CENT_FRACTION = Decimal("0.000001")  # costs per message are rounded to the card's precision (6 places)

SPEND_GROUPS = ("day", "phone_number_id", "pricing_category", "pricing_type", "country", "campaign", "flow_id")


@dataclass(frozen=True)
class LoadedCard:
    """The rate card in force: the latest load."""

    card: RateCard
    source: str
    loaded_at: datetime


def store_rate_card(client: Client, card: RateCard, *, source: str) -> datetime:
    """Load ``card`` as the one in force (inserts, as the writer); returns its load time."""
    loaded_at = datetime.now(UTC).replace(tzinfo=None)
    rows = [(r.market, r.category, r.pricing_type, r.currency, r.price, r.effective_from, source, loaded_at)
            for r in card.rates]
    if rows:
        client.insert(RATE_CARD_TABLE, rows, column_names=list(RATE_CARD_COLUMNS))
    return loaded_at


def rate_card(client: Client) -> LoadedCard | None:
    """The latest loaded card, or None when none was ever loaded."""
    rows = client.query(f"""
        SELECT market, category, pricing_type, currency, price, effective_from, source, loaded_at
        FROM {RATE_CARD_TABLE} WHERE loaded_at = (SELECT max(loaded_at) FROM {RATE_CARD_TABLE})
    """).result_rows
    if not rows:
        return None
    rates = [Rate(m, c, t, cur, Decimal(price), day) for m, c, t, cur, price, day, _, _ in rows]
    return LoadedCard(RateCard(rates), rows[0][6], rows[0][7])


@dataclass
class Spend:
    """Priced counts of one group: messages, the charged ones, free ones, unpriced ones, and their cost."""

    messages: int = 0
    charged: int = 0
    free: int = 0
    unpriced: int = 0
    spend: Decimal = field(default_factory=Decimal)

    def add(self, card: RateCard | None, *, country: str, category: str, pricing_type: str, billable: int,
            day: date, delivered: int, messages: int) -> None:
        self.messages += messages
        if delivered == 0 or not pricing_type:
            return
        if is_free(pricing_type, billable):
            self.free += delivered
            return
        price = None if card is None else card.price(country=country, category=category, pricing_type=pricing_type,
                                                     billable=billable, day=day)
        if price is None:
            self.unpriced += delivered
        else:
            self.charged += delivered
            self.spend += price * delivered


def per(spend: Decimal, count: int) -> Decimal | None:
    """Cost per one of ``count`` (rounded to 6 places), None when there are none."""
    return (spend / count).quantize(CENT_FRACTION) if count else None


def priced(rows: Iterable[Sequence[Any]], card: RateCard | None, groups: int) -> dict[tuple[Any, ...], Spend]:
    """Sum rows of (*group, country, category, type, billable, day, delivered messages, messages) per group."""
    out: dict[tuple[Any, ...], Spend] = {}
    for row in rows:
        key = tuple(row[:groups])
        country, category, pricing_type, billable, day, delivered, messages = row[groups:]
        out.setdefault(key, Spend()).add(card, country=country, category=category, pricing_type=pricing_type,
                                         billable=int(billable), day=day, delivered=int(delivered),
                                         messages=int(messages))
    return out


def spend(client: Client, where: DeliveryFilter, *, by: tuple[str, ...] = ("day",),
          card: RateCard | None = None) -> pd.DataFrame:
    """Spend of the messages first seen in the range, per ``by`` (any of :data:`SPEND_GROUPS`): columns ``by``,
    messages, charged, free, unpriced, spend (Decimal), currency. ``card``: the card in force when not given."""
    unknown = [g for g in by if g not in SPEND_GROUPS]
    if unknown:
        raise ValueError(f"spend: unknown groups {unknown}; known: {SPEND_GROUPS}")
    if card is None:
        loaded = rate_card(client)
        card = loaded.card if loaded else None
    columns = {"day": "toDate(hour)", "phone_number_id": "phone_number_id", "pricing_category": "pricing_category",
               "pricing_type": "pricing_type", "country": "country", "campaign": "campaign", "flow_id": "flow_id"}
    select = ", ".join(f"{columns[g]} AS {g}" for g in by)
    sql = f"""
        WITH {MESSAGE_COUNTS}
        SELECT {select}{"," if by else ""} country, pricing_category, pricing_type, billable,
               toDate(hour) AS price_day, sum(delivered), sum(messages)
        FROM message_counts
        GROUP BY {", ".join([*by, "country", "pricing_category", "pricing_type", "billable", "price_day"])}
    """
    parameters = {**where.parameters, **whole_hours(where.start, where.end)}
    sums = priced(client.query(sql, parameters=parameters).result_rows, card, len(by))
    currency = card.currency if card else ""
    frame = pd.DataFrame(
        [(*key, s.messages, s.charged, s.free, s.unpriced, s.spend, currency) for key, s in sorted(sums.items())],
        columns=[*by, "messages", "charged", "free", "unpriced", "spend", "currency"],
    )
    return frame
