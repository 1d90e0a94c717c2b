"""The Overview: the figures a manager asks first, for a period and the period of the same length before it.

Built on the pages' own typed queries, so every figure equals what the page it comes from shows:

- messages sent, delivered (or read: read implies delivered), read and failed: distinct messages per status in
  the period (:func:`warehouse.queries.delivery_totals`); the rates divide by the messages sent;
- Flow completion rate: completed / sent Flow sessions sent in the period (:func:`warehouse.flows.funnel`; on the
  page, the sums of the trend's buckets, :func:`warehouse.flows.funnel_over_time`: the same sessions);
- spend: messages first sent in the period, priced by the rate card (:func:`warehouse.costs.spend`);
- opt-outs: distinct people who stopped marketing messages in the period (:func:`warehouse.audience.stopped_people`);
- the worst Flow screen (the highest share of the sessions reaching it that were abandoned there, among screens
  reached by at least ``min_reached`` sessions) and the top failure code.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import pandas as pd
from clickhouse_connect.driver.client import Client

from config.ratecard import RateCard
from warehouse import audience, costs, flows, queries
from warehouse.error_codes import meaning
from warehouse.parallel import Fetch

MIN_REACHED = 20  # a screen reached by fewer sessions is not called the worst (too few to tell)


@dataclass(frozen=True)
class Deliveries:
    """One period's message figures: distinct messages per status (rates are properties, None when nothing was
    sent)."""

    sent: int
    delivered: int
    read: int
    failed: int

    @staticmethod
    def _rate(part: int, whole: int) -> float | None:
        return part / whole if whole else None

    @property
    def delivery_rate(self) -> float | None:
        return self._rate(self.delivered, self.sent)

    @property
    def read_rate(self) -> float | None:
        return self._rate(self.read, self.sent)

    @property
    def failure_rate(self) -> float | None:
        return self._rate(self.failed, self.sent)


@dataclass(frozen=True)
class Figures(Deliveries):
    """One period's headline figures: its :class:`Deliveries`, Flow sessions, spend and opt-outs."""

    flow_sessions: int
    flow_completed: int
    spend: Decimal
    opt_outs: int

    @property
    def completion_rate(self) -> float | None:
        return self._rate(self.flow_completed, self.flow_sessions)


@dataclass(frozen=True)
class WorstScreen:
    flow_id: str
    flow_version: str
    screen: str
    reached: int
    dropped: int

    @property
    def drop_rate(self) -> float:
        return self.dropped / self.reached


@dataclass(frozen=True)
class Page:
    """Everything the Overview shows for a period: its figures, the previous period's, trends, callouts."""

    figures: Figures
    before: Figures
    trends: pd.DataFrame
    worst_screen: WorstScreen | None
    top_failure: tuple[int, str, int] | None


def figures(client: Client, start: datetime, end: datetime, *, timeout_s: int, card: RateCard | None,
            now: datetime | None = None, countries: tuple[str, ...] = ()) -> Figures:
    """The headline figures of [start, end] (UTC); ``countries``: of those recipient countries (empty: all)."""
    with Fetch() as fetch:
        return _figures(client, start, end, timeout_s=timeout_s, card=card, now=now, fetch=fetch,
                        countries=countries).figures()


@dataclass(frozen=True)
class _PendingFigures:
    """A period's figures with their queries started: ``deliveries`` waits for the message counts alone,
    ``figures`` for every query."""

    totals: Future[dict[str, int]]
    sessions: Callable[[], tuple[int, int]]
    spend: Future[pd.DataFrame]
    opt_outs: Future[int]

    def deliveries(self) -> Deliveries:
        counts = self.totals.result()
        return Deliveries(sent=counts["sent"], delivered=counts["delivered_or_read"], read=counts["read"],
                          failed=counts["failed"])

    def figures(self) -> Figures:
        messages, priced = self.deliveries(), self.spend.result()
        flow_sessions, flow_completed = self.sessions()
        return Figures(
            sent=messages.sent, delivered=messages.delivered, read=messages.read, failed=messages.failed,
            flow_sessions=flow_sessions, flow_completed=flow_completed,
            spend=priced["spend"].iloc[0] if not priced.empty else Decimal(0),
            opt_outs=self.opt_outs.result(),
        )


def _figures(client: Client, start: datetime, end: datetime, *, timeout_s: int, card: RateCard | None,
             now: datetime | None, fetch: Fetch, countries: tuple[str, ...] = (),
             sessions: Callable[[], tuple[int, int]] | None = None, below: Client | None = None) -> _PendingFigures:
    """Starts the figures' queries on ``fetch``. ``sessions``: (Flow sessions sent, completed) of the period when
    a query already started counts them (the trend's buckets, on the page), else a funnel query counts them.
    ``below``: the client of every query but the message counts' (default ``client``)."""
    below = below or client
    where = queries.DeliveryFilter(start=start, end=end, countries=countries)
    totals = fetch(queries.delivery_totals, client, where)
    if sessions is None:
        funnel = fetch(flows.funnel, below, flows.FlowFilter(start=start, end=end, timeout_s=timeout_s, now=now,
                                                             countries=countries), by=("flow_id",))
        sessions = lambda: _sent_and_completed(funnel.result())  # noqa: E731 - read when built
    return _PendingFigures(totals, sessions, fetch(costs.spend, below, where, by=(), card=card),
                           fetch(audience.stopped_people, below, where))


def _sent_and_completed(sessions: pd.DataFrame) -> tuple[int, int]:
    """Sessions sent and completed, summed over the rows of a funnel (or of its buckets over time)."""
    return int(sessions["sent"].sum()), int(sessions["completed"].sum())


@dataclass(frozen=True)
class Started:
    """The Overview with every headline query started; each part waits only for the queries it shows, so a page
    draws the message figures (cheap: sealed counts) while the Flow, spend and opt-out queries still run."""

    this: _PendingFigures
    before_period: _PendingFigures
    trend: _Trends
    top: Future[tuple[int, str, int] | None]
    worst: Callable[[], Future[WorstScreen | None]]

    def deliveries(self) -> tuple[Deliveries, Deliveries, pd.DataFrame]:
        """The period's and the previous period's message figures, and the trend of the messages."""
        return self.this.deliveries(), self.before_period.deliveries(), self.trend.frame(sessions=False)

    def figures(self) -> tuple[Figures, Figures, pd.DataFrame]:
        """The period's and the previous period's figures, and every trend."""
        return self.this.figures(), self.before_period.figures(), self.trend.frame()

    def worst_screen(self) -> WorstScreen | None:
        return self.worst().result()

    def top_failure(self) -> tuple[int, str, int] | None:
        return self.top.result()


def start_page(client: Client, start: datetime, end: datetime, *, timeout_s: int, card: RateCard | None,
               fetch: Fetch, now: datetime | None = None, countries: tuple[str, ...] = (),
               below: Client | None = None) -> Started:
    """Starts the headline's queries side by side on ``fetch`` (:mod:`warehouse.parallel`). The worst screen
    (which reads every session's screens) starts when first asked for, after the headline: on two cores it would
    share the CPU with the headline's queries and hold the figures at the top back. ``below``: the client of every
    query but the message figures' (the top row), one whose queries yield the CPU to them (default ``client``)."""
    below = below or client
    before_start, before_end = previous(start, end)
    trend = _trends(client, start, end, timeout_s=timeout_s, now=now, countries=countries, fetch=fetch, below=below)
    top = fetch(top_failure, below, start, end, countries=countries)
    # This period's Flow sessions are the sums of its trend buckets: the same sessions, one query fewer.
    this = _figures(client, start, end, timeout_s=timeout_s, card=card, now=now, fetch=fetch, countries=countries,
                    sessions=lambda: _sent_and_completed(trend.sessions.result()), below=below)
    before = _figures(client, before_start, before_end, timeout_s=timeout_s, card=card, now=now, fetch=fetch,
                      countries=countries, below=below)
    worst: list[Future[WorstScreen | None]] = []

    def started_worst() -> Future[WorstScreen | None]:
        if not worst:
            worst.append(fetch(worst_screen, below, start, end, timeout_s=timeout_s, now=now, countries=countries))
        return worst[0]
    return Started(this, before, trend, top, started_worst)


def page(client: Client, start: datetime, end: datetime, *, timeout_s: int, card: RateCard | None,
         now: datetime | None = None, countries: tuple[str, ...] = ()) -> Page:
    """The whole Overview of [start, end] (:func:`start_page`, every part of it)."""
    with Fetch() as fetch:
        started = start_page(client, start, end, timeout_s=timeout_s, card=card, fetch=fetch, now=now,
                             countries=countries)
        figures, before, trends_frame = started.figures()
        return Page(figures, before, trends_frame, started.worst_screen(), started.top_failure())


def previous(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The period of the same length that ends just before [start, end] begins: before the minute of ``start``
    (figures count whole minutes, so the two periods never share one)."""
    until = start.replace(second=0, microsecond=0) - timedelta(seconds=1)
    return until - (end - start) + timedelta(seconds=1), until


def trend_bucket_minutes(span: timedelta) -> int:
    """Buckets of the trend lines: about a dozen or more points, whole hours from a day up (they sum sealed hours)."""
    if span <= timedelta(hours=1):
        return 5
    if span <= timedelta(hours=6):
        return 30
    if span <= timedelta(days=1):
        return 60
    if span <= timedelta(days=7):
        return 360
    return 1440


def trends(client: Client, start: datetime, end: datetime, *, timeout_s: int,
           now: datetime | None = None, countries: tuple[str, ...] = ()) -> pd.DataFrame:
    """Per bucket of the period: sent, delivered, read, failed (by status time) and Flow sessions sent and
    completed (by send time), every bucket of the range present (0 when empty)."""
    with Fetch() as fetch:
        return _trends(client, start, end, timeout_s=timeout_s, now=now, countries=countries, fetch=fetch).frame()


@dataclass(frozen=True)
class _Trends:
    """The trend's two queries, started side by side; ``frame`` waits for both and lays them out by bucket."""

    start: datetime
    end: datetime
    bucket: int
    series: Future[pd.DataFrame]
    sessions: Future[pd.DataFrame]

    def frame(self, *, sessions: bool = True) -> pd.DataFrame:
        """The trend by bucket; without the Flow sessions' columns (nor waiting for them) unless ``sessions``."""
        series = self.series.result()
        wide = series.pivot_table(index="bucket", columns="status", values="messages", aggfunc="sum", fill_value=0) \
            if not series.empty else pd.DataFrame()
        step = pd.Timedelta(minutes=self.bucket)
        first = pd.Timestamp(self.start).floor(step) if self.bucket < 1440 else pd.Timestamp(self.start).normalize()
        index = pd.date_range(first, pd.Timestamp(self.end), freq=step)
        out = pd.DataFrame(index=index)
        for status in ("sent", "delivered", "read", "failed"):
            column = wide[status] if status in wide else pd.Series(dtype="int64")
            out[status] = _aligned(column, index)
        if sessions:
            counted = self.sessions.result()
            for name, column in (("flow_sessions", "sent"), ("flow_completed", "completed")):
                values = counted.set_index("bucket")[column] if not counted.empty else pd.Series(dtype="int64")
                out[name] = _aligned(values, index)
        return out.rename_axis("bucket").reset_index()


def _trends(client: Client, start: datetime, end: datetime, *, timeout_s: int, now: datetime | None,
            countries: tuple[str, ...], fetch: Fetch, below: Client | None = None) -> _Trends:
    bucket = trend_bucket_minutes(end - start)
    where = queries.DeliveryFilter(start=start, end=end, countries=countries)
    return _Trends(
        start, end, bucket,
        series=fetch(queries.delivery_timeseries, client, where, bucket_minutes=bucket),
        sessions=fetch(flows.funnel_over_time, below or client,
                       flows.FlowFilter(start=start, end=end, timeout_s=timeout_s, now=now, countries=countries),
                       bucket_minutes=bucket),
    )


def _aligned(values: pd.Series, index: pd.DatetimeIndex) -> list[int]:
    if values.empty:
        return [0] * len(index)
    naive = pd.Series(values.to_numpy(), index=pd.to_datetime(values.index, utc=True).tz_localize(None))
    return [int(v) for v in naive.reindex(index, fill_value=0)]


def worst_screen(client: Client, start: datetime, end: datetime, *, timeout_s: int, now: datetime | None = None,
                 min_reached: int = MIN_REACHED, countries: tuple[str, ...] = ()) -> WorstScreen | None:
    """The screen that loses the largest share of the sessions reaching it (ties: the most dropped), or None."""
    stats = flows.node_stats(client, flows.FlowFilter(start=start, end=end, timeout_s=timeout_s, now=now,
                                                      countries=countries))
    stats = stats[(stats["reached"] >= min_reached) & (stats["dropped"] > 0)]
    if stats.empty:
        return None
    stats = stats.assign(rate=stats["dropped"] / stats["reached"]).sort_values(
        ["rate", "dropped", "flow_id", "flow_version", "screen"], ascending=[False, False, True, True, True])
    row = stats.iloc[0]
    return WorstScreen(row["flow_id"], row["flow_version"], row["screen"], int(row["reached"]), int(row["dropped"]))


def top_failure(client: Client, start: datetime, end: datetime, *,
                countries: tuple[str, ...] = ()) -> tuple[int, str, int] | None:
    """(code, meaning, failed messages) of the most frequent failure code in the period, or None."""
    failures = queries.failures_by_error_code(client, queries.DeliveryFilter(start=start, end=end, countries=countries))
    if failures.empty:
        return None
    row = failures.iloc[0]
    return int(row["error_code"]), meaning(int(row["error_code"])), int(row["messages"])
