"""Who Flow campaigns reached, what they cost, who said stop, and how long people took: per flow, version, campaign.

Figures over the sessions of a :class:`~warehouse.flows.FlowFilter` (sent in its range), one row per session
(``flows.EVERY_SESSION``), each joined by its Flow message's wamid to ``outbound_messages``:

- persons: distinct people the Flow messages went to. A message's person is any person key its statuses named,
  resolved through ``person_map`` (:func:`warehouse.identity.resolved_person`), so a user seen with a phone
  number on one message and only with a BSUID on another is one person; a message with no individual status
  names no one.
- spend: the Flow messages' cost (:mod:`warehouse.costs`: charged when delivered and not free, at the card's
  rate for the recipient's country, category and type on the day of the send); cost per delivered, read,
  opened and completed session divides it by those sessions.
- opt-outs: distinct persons who stopped marketing messages (``user_preferences``, ``marketing_messages`` /
  ``stop``) at a time t with send ≤ t < send + window, for a Flow message of the group they were sent (the
  send being the message's first status). The opt-out rate is opt-outs / persons.
- time to complete: completion time − send time (the first-party ``flow_sent``) of completed sessions, p50 and
  p90 as ClickHouse's ``quantileExact``; stage times: the median between the send, the first delivered (or read,
  when Meta skipped delivered: read implies delivered), the first read, the first screen event and the
  completion, over the sessions that reached both stages in that order.

For the Delivery page, by message rather than session (messages whose first status is in the range): messages,
delivered, read and failed per recipient country, and distinct persons.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pandas as pd
from clickhouse_connect.driver.client import Client

from config.ratecard import RateCard
from warehouse.costs import Spend, per, priced, rate_card
from warehouse.flows import EVERY_SESSION, FlowFilter
from warehouse.identity import resolved_person
from warehouse.message_hours import (
    DELIVERED_OR_READ,
    MESSAGE_COUNTS,
    message_persons,
    stale_person_hours,
    whole_hours,
)
from warehouse.person_sets import level_of
from warehouse.queries import COUNTRY_FILTER, DeliveryFilter
from warehouse.tables import (
    FLOW_SESSION_OPENS_TABLE,
    MESSAGE_STATE_TABLE,
    NEVER_DATETIME,
    OUTBOUND_MESSAGES_TABLE,
    USER_PREFERENCES_TABLE,
)

GROUPS = ("flow_id", "flow_version", "campaign", "country")  # country: the Flow message recipient's
DEFAULT_OPT_OUT_WINDOW = timedelta(hours=48)
OPT_OUT_CATEGORY = "marketing_messages"
COMPLETION_BUCKETS_S = (30, 60, 120, 300, 600, 1800, 3600, 6 * 3600, 24 * 3600)  # upper bounds of the spread's
STAGE_GAPS = (("sent", "delivered"), ("delivered", "read"), ("read", "opened"), ("opened", "completed"))

_NEVER_DT = f"toDateTime('{NEVER_DATETIME}', 'UTC')"
_PERSON_JOIN, _PERSON = resolved_person("m.person_hash", alias="pm", among="SELECT person_hash FROM messages")
_STOPPER_JOIN, _STOPPER = resolved_person("p.person_hash", alias="sm", among=(
    f"SELECT person_hash FROM {USER_PREFERENCES_TABLE} WHERE category = '{OPT_OUT_CATEGORY}' AND value = 'stop'"))

# Each session in the filter with its Flow message's merged facts.
_SESSION_MESSAGES = f"""
{EVERY_SESSION},
messages AS MATERIALIZED (
    SELECT wamid, min(first_at) AS first_at, groupBitOr(reached) AS reached, max(person_hash) AS person_hash,
           max(country) AS country, max(pricing_category) AS pricing_category, max(pricing_type) AS pricing_type,
           max(billable) AS billable
    FROM {OUTBOUND_MESSAGES_TABLE}
    WHERE wamid IN (SELECT wamid FROM every_session)
    GROUP BY wamid
),
session_messages AS (
    SELECT s.*, m.wamid != '' AS has_message, m.first_at AS first_at, m.reached AS reached,
           m.country AS country, m.pricing_category AS pricing_category, m.pricing_type AS pricing_type,
           m.billable AS billable, if(m.person_hash = '', '', {_PERSON}) AS person
    FROM every_session AS s
    LEFT JOIN messages AS m ON m.wamid = s.wamid
    {_PERSON_JOIN}
)
"""


@dataclass(frozen=True)
class Audience:
    """The figures of one group (see the module docstring)."""

    sessions: int
    delivered: int
    read: int
    opened: int
    completed: int
    persons: int
    opt_outs: int
    spend: Spend

    @property
    def opt_out_rate(self) -> float:
        return self.opt_outs / self.persons if self.persons else 0.0

    def cost_per(self, stage: str) -> Decimal | None:
        return per(self.spend.spend, int(getattr(self, stage)))


_KEY_SEPARATOR = "\x1f"  # joins a spend key's fields (ISO codes, Meta's names, digits: never this character)
_SEPARATOR = "'\\x1F'"  # the same, as an SQL literal


def _spend_key(key: str) -> tuple[str, str, str, int, date]:
    """(country, category, pricing type, billable, day) of a spend key."""
    country, category, pricing_type, billable, day = key.split(_KEY_SEPARATOR)
    return country, category, pricing_type, int(billable), date.fromisoformat(day)


def _group(by: tuple[str, ...]) -> str:
    unknown = [g for g in by if g not in GROUPS]
    if unknown or not by:
        raise ValueError(f"group by one or more of {GROUPS}, got {by}")
    return ", ".join(by)


def audience(client: Client, where: FlowFilter, *, by: tuple[str, ...] = ("flow_id", "flow_version"),
             window: timedelta = DEFAULT_OPT_OUT_WINDOW,
             card: RateCard | None = None) -> dict[tuple[str, ...], Audience]:
    """Per group of ``by``: sessions, stages, persons, opt-outs within ``window`` of a send, and spend."""
    return audience_sets(client, where, (by,), window=window, card=card)[by]


def audience_sets(client: Client, where: FlowFilter, sets: tuple[tuple[str, ...], ...], *,
                  window: timedelta = DEFAULT_OPT_OUT_WINDOW,
                  card: RateCard | None = None) -> dict[tuple[str, ...], dict[tuple[str, ...], Audience]]:
    """:func:`audience` for each grouping of ``sets`` at once (GROUPING SETS): the sessions are merged and joined
    once for all of them. Keyed by grouping, then by group."""
    for by in sets:
        _group(by)
    columns = list(dict.fromkeys(column for by in sets for column in by))
    if card is None:
        loaded = rate_card(client)
        card = loaded.card if loaded else None
    parameters = {**where.parameters, "window_s": int(window.total_seconds())}
    # One pass over the sessions: the counts, the persons who stopped within the window of their message's send
    # (each person's stop times, joined once), and the spend's counts per (country, category, type, billable,
    # day) as a sum map keyed by those fields joined with _KEY_SEPARATOR. grouping() tells a row's grouping:
    # a bit per column, 1 where the row is not grouped by it.
    sql = f"""
        WITH {_SESSION_MESSAGES},
        stops AS (
            SELECT person, groupArray(at) AS stop_times FROM (
                SELECT {_STOPPER} AS person, p.occurred_at AS at
                FROM (SELECT person_hash, occurred_at FROM {USER_PREFERENCES_TABLE} FINAL
                      WHERE category = '{OPT_OUT_CATEGORY}' AND value = 'stop') AS p
                {_STOPPER_JOIN})
            WHERE person != ''
            GROUP BY person
        )
        SELECT {", ".join(f"s.{c}" for c in columns)}, grouping({", ".join(f"s.{c}" for c in columns)}),
               count(), countIf(s.delivered = 1), countIf(s.read = 1),
               countIf(s.opened), countIf(s.completed), uniqExactIf(s.person, s.person != ''),
               uniqExactIf(s.person, s.person != '' AND arrayExists(
                   at -> at >= s.first_at AND at < s.first_at + toIntervalSecond({{window_s:UInt32}}), t.stop_times)),
               sumMapIf([concat(s.country, {_SEPARATOR}, s.pricing_category, {_SEPARATOR}, s.pricing_type,
                                {_SEPARATOR}, toString(s.billable), {_SEPARATOR}, toString(toDate(s.first_at)))],
                        [toUInt64(bitAnd(s.reached, {DELIVERED_OR_READ}) != 0)], [toUInt64(1)], s.has_message)
        FROM session_messages AS s
        LEFT JOIN stops AS t ON t.person = s.person
        GROUP BY GROUPING SETS ({", ".join("(" + ", ".join(f"s.{c}" for c in by) + ")" for by in sets)})
    """
    masks = {sum(1 << (len(columns) - 1 - i) for i, c in enumerate(columns) if c not in by): by for by in sets}
    out: dict[tuple[str, ...], dict[tuple[str, ...], Audience]] = {by: {} for by in sets}
    for row in client.query(sql, parameters=parameters).result_rows:
        values = dict(zip(columns, row, strict=False))
        by = masks[int(row[len(columns)])]
        key = tuple(values[c] for c in by)
        sessions, delivered, read, opened, completed, persons, opt_outs = (int(v) for v in row[len(columns) + 1:-1])
        keys, delivered_messages, messages = row[-1]
        spent = priced(([*_spend_key(k), d, n] for k, d, n in zip(keys, delivered_messages, messages, strict=True)),
                       card, 0)
        out[by][key] = Audience(sessions, delivered, read, opened, completed, persons, opt_outs,
                                spent.get((), Spend()))
    return out


def audience_frame(figures: dict[tuple[str, ...], Audience], by: tuple[str, ...], currency: str) -> pd.DataFrame:
    """The figures as a table (costs as Decimal, rates as fractions)."""
    rows: list[dict[str, Any]] = []
    for key, a in sorted(figures.items()):
        rows.append({**dict(zip(by, key, strict=True)), "sessions": a.sessions, "persons": a.persons,
                     "sessions_per_person": round(a.sessions / a.persons, 2) if a.persons else None,
                     "delivered": a.delivered, "read": a.read, "opened": a.opened, "completed": a.completed,
                     "opt_outs": a.opt_outs, "opt_out_rate": a.opt_out_rate, "charged": a.spend.charged,
                     "free": a.spend.free, "unpriced": a.spend.unpriced, "spend": a.spend.spend,
                     "cost_per_delivered": a.cost_per("delivered"), "cost_per_read": a.cost_per("read"),
                     "cost_per_opened": a.cost_per("opened"), "cost_per_completed": a.cost_per("completed"),
                     "currency": currency})
    columns = [*by, "sessions", "persons", "sessions_per_person", "delivered", "read", "opened", "completed",
               "opt_outs", "opt_out_rate",
               "charged", "free", "unpriced", "spend", "cost_per_delivered", "cost_per_read", "cost_per_opened",
               "cost_per_completed", "currency"]
    return pd.DataFrame(rows, columns=columns)


def time_to_complete(client: Client, where: FlowFilter, *,
                     by: tuple[str, ...] = ("flow_id", "flow_version")) -> pd.DataFrame:
    """Per group: completions, p50_ms and p90_ms of completion − send of the completed sessions."""
    group = _group(by)
    sql = f"""
        WITH {EVERY_SESSION}
        SELECT {group}, count() AS completions,
               toInt64(quantileExact(0.5)(ms)) AS p50_ms, toInt64(quantileExact(0.9)(ms)) AS p90_ms
        FROM (SELECT {group}, toUnixTimestamp64Milli(completed_at) - toUnixTimestamp64Milli(sent_at) AS ms
              FROM every_session WHERE completed)
        GROUP BY {group}
        ORDER BY {group}
    """
    rows = client.query(sql, parameters=where.parameters).result_rows
    return pd.DataFrame(rows, columns=[*by, "completions", "p50_ms", "p90_ms"])


def completion_times(client: Client, where: FlowFilter, *,
                     buckets_s: tuple[int, ...] = COMPLETION_BUCKETS_S) -> pd.DataFrame:
    """The distribution of times to complete: completed sessions per bucket (upper bound in seconds; the last
    bucket, ``None``, is everything longer), per flow and version."""
    sql = f"""
        WITH {EVERY_SESSION}
        SELECT flow_id, flow_version, arrayFirstIndex(b -> ms <= b * 1000, {{buckets:Array(UInt32)}}) AS bucket,
               count() AS sessions
        FROM (SELECT flow_id, flow_version,
                     toUnixTimestamp64Milli(completed_at) - toUnixTimestamp64Milli(sent_at) AS ms
              FROM every_session WHERE completed)
        GROUP BY flow_id, flow_version, bucket
        ORDER BY flow_id, flow_version, bucket
    """
    rows = client.query(sql, parameters={**where.parameters, "buckets": list(buckets_s)}).result_rows
    return pd.DataFrame(
        [(f, v, buckets_s[b - 1] if b else None, int(n)) for f, v, b, n in rows],
        columns=["flow_id", "flow_version", "up_to_s", "sessions"],
    )


@dataclass(frozen=True)
class CompletionTimes:
    """What :func:`completion_summary` returns: the frames of :func:`time_to_complete` per version and per flow,
    and of :func:`completion_times`."""

    by_version: pd.DataFrame
    overall: pd.DataFrame
    spread: pd.DataFrame


def completion_summary(client: Client, where: FlowFilter, *, buckets_s: tuple[int, ...] = COMPLETION_BUCKETS_S
                       ) -> CompletionTimes:
    """In one query (GROUPING SETS): :func:`time_to_complete` by flow and version of *every* version of
    ``where``'s flow, and by flow, and :func:`completion_times`, both of ``where``'s version (when it names one)."""
    every_version = dataclasses.replace(where, flow_version="")
    sql = f"""
        WITH {EVERY_SESSION}
        SELECT flow_id, flow_version, bucket, grouping(flow_id, flow_version, bucket), count(),
               toInt64(quantileExact(0.5)(ms)), toInt64(quantileExact(0.9)(ms))
        FROM (SELECT flow_id, flow_version,
                     toUnixTimestamp64Milli(completed_at) - toUnixTimestamp64Milli(sent_at) AS ms,
                     arrayFirstIndex(b -> ms <= b * 1000, {{buckets:Array(UInt32)}}) AS bucket
              FROM every_session WHERE completed)
        GROUP BY GROUPING SETS ((flow_id, flow_version), (flow_id), (flow_id, flow_version, bucket))
        ORDER BY flow_id, flow_version, bucket
    """
    rows = client.query(sql, parameters={**every_version.parameters, "buckets": list(buckets_s)}).result_rows
    chosen = where.flow_version
    versions = [(f, v, int(n), p50, p90) for f, v, _, g, n, p50, p90 in rows if g == 0b001]
    per_flow = [(f, int(n), p50, p90) for f, _, _, g, n, p50, p90 in rows if g == 0b011]
    if chosen:
        per_flow = [(f, n, p50, p90) for f, v, n, p50, p90 in versions if v == chosen]
    spread = [(f, v, buckets_s[b - 1] if b else None, int(n)) for f, v, b, g, n, _, _ in rows
              if g == 0 and (not chosen or v == chosen)]
    return CompletionTimes(
        pd.DataFrame(versions, columns=["flow_id", "flow_version", "completions", "p50_ms", "p90_ms"]),
        pd.DataFrame(per_flow, columns=["flow_id", "completions", "p50_ms", "p90_ms"]),
        pd.DataFrame(spread, columns=["flow_id", "flow_version", "up_to_s", "sessions"]))


def stage_times(client: Client, where: FlowFilter, *,
                by: tuple[str, ...] = ("flow_id", "flow_version")) -> pd.DataFrame:
    """Per group and gap between consecutive stages (sent→delivered, delivered→read, read→opened,
    opened→completed): sessions that reached both, and the median and p90 milliseconds between them."""
    group = _group(by)
    sql = f"""
        WITH {EVERY_SESSION},
        first_statuses AS (
            SELECT wamid, min(delivered_at) AS delivered_at, min(read_at) AS read_at
            FROM {MESSAGE_STATE_TABLE} WHERE wamid IN (SELECT wamid FROM every_session) GROUP BY wamid
        ),
        opens AS (
            SELECT flow_token, min(opened_at) AS opened_at FROM {FLOW_SESSION_OPENS_TABLE}
            WHERE flow_token IN (SELECT flow_token FROM every_session) GROUP BY flow_token
        ),
        stamps AS (
            SELECT {", ".join(f"s.{g} AS {g}" for g in by)},
                   toUnixTimestamp64Milli(s.sent_at) AS sent,
                   if(st.wamid != '' AND least(st.delivered_at, st.read_at) < {_NEVER_DT},
                      toInt64(toUnixTimestamp(least(st.delivered_at, st.read_at))) * 1000, -1) AS delivered,
                   if(st.wamid != '' AND st.read_at < {_NEVER_DT}, toInt64(toUnixTimestamp(st.read_at)) * 1000, -1)
                       AS read,
                   if(o.flow_token != '', toUnixTimestamp64Milli(o.opened_at),
                      if(s.completed, toUnixTimestamp64Milli(s.completed_at), -1)) AS opened,
                   if(s.completed, toUnixTimestamp64Milli(s.completed_at), -1) AS completed
            FROM every_session AS s
            LEFT JOIN first_statuses AS st ON st.wamid = s.wamid
            LEFT JOIN opens AS o ON o.flow_token = s.flow_token
        )
        SELECT {group}, gap_ms.1 AS gap, count() AS sessions, toInt64(quantileExact(0.5)(gap_ms.2)) AS median_ms,
               toInt64(quantileExact(0.9)(gap_ms.2)) AS p90_ms
        FROM stamps
        ARRAY JOIN arrayFilter(g -> g.2 >= 0, [{", ".join(
            f"('{a}→{b}', if({a} >= 0 AND {b} >= {a}, {b} - {a}, -1))" for a, b in STAGE_GAPS)}]) AS gap_ms
        GROUP BY {group}, gap
        ORDER BY {group}, gap
    """
    rows = client.query(sql, parameters=where.parameters).result_rows
    return pd.DataFrame(rows, columns=[*by, "gap", "sessions", "median_ms", "p90_ms"])


# --- the Delivery page: by message, first status in the range -------------------------------------------------------


def _person_parameters(client: Client, where: DeliveryFilter, *, by_country: bool) -> dict[str, Any]:
    parameters = {**where.parameters, **whole_hours(where.start, where.end),
                  "person_level": level_of(countries=by_country or bool(where.countries),
                                           phone_numbers=bool(where.phone_number_ids))}
    return {**parameters, "person_stale_hours": stale_person_hours(client, parameters)}


def delivery_by_country(client: Client, where: DeliveryFilter) -> pd.DataFrame:
    """Messages first sent in the range per recipient country (``""``: unknown): messages, delivered (or read),
    read, failed, and distinct persons (hour sums and sets of people, :mod:`warehouse.message_hours`)."""
    sql = f"""
        WITH {MESSAGE_COUNTS}, {message_persons(by_country=True)}
        SELECT c.country AS country, c.messages AS messages, c.delivered AS delivered, c.read AS read,
               c.failed AS failed, p.persons AS persons
        FROM (SELECT country, sum(messages) AS messages, sum(delivered) AS delivered, sum(read) AS read,
                     sum(failed) AS failed
              FROM message_counts GROUP BY country) AS c
        LEFT JOIN message_persons AS p ON p.country = c.country
        ORDER BY messages DESC, country
    """
    rows = client.query(sql, parameters=_person_parameters(client, where, by_country=True)).result_rows
    return pd.DataFrame(rows, columns=["country", "messages", "delivered", "read", "failed", "persons"])


def delivery_persons(client: Client, where: DeliveryFilter) -> int:
    """Distinct persons the messages first sent in the range went to (groups left out)."""
    sql = f"WITH {MESSAGE_COUNTS}, {message_persons(by_country=False)} SELECT persons FROM message_persons"
    return int(client.query(sql, parameters=_person_parameters(client, where, by_country=False)).result_rows[0][0])


def stopped_people(client: Client, where: DeliveryFilter) -> int:
    """Distinct people who stopped marketing messages in the range (by the business numbers of the filter, and the
    country their preference carried)."""
    sql = f"""
        SELECT uniqExact({_STOPPER})
        FROM (SELECT person_hash FROM {USER_PREFERENCES_TABLE} FINAL
              WHERE category = '{OPT_OUT_CATEGORY}' AND value = 'stop'
                AND occurred_at >= {{start:DateTime('UTC')}} AND occurred_at <= {{end:DateTime('UTC')}}
                AND (empty({{phone_number_ids:Array(String)}})
                     OR has({{phone_number_ids:Array(String)}}, phone_number_id)) AND {COUNTRY_FILTER}) AS p
        {_STOPPER_JOIN}
    """
    return int(client.query(sql, parameters=where.parameters).result_rows[0][0])
