"""Time buckets of the over-time charts: how wide for a range, and a series with every bucket of the range."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd


def over_time_bucket_minutes(span: timedelta) -> int:
    """The bucket of an over-time chart (:func:`warehouse.flows.funnel_over_time`) for a range this long: 5 minutes
    up to 6 hours, an hour up to 7 days, else a day (at most 73, 169 and one per day of buckets)."""
    return 5 if span <= timedelta(hours=6) else 60 if span <= timedelta(days=7) else 24 * 60


def every_bucket(series: pd.DataFrame, *, start: datetime, end: datetime, bucket_minutes: int) -> pd.DataFrame:
    """An over-time frame (a ``bucket`` column and counts, as :func:`warehouse.flows.funnel_over_time` returns) with
    every bucket from the one holding ``start`` to the one holding ``end``, 0 in those it has no row for: a series
    over the whole range, even with one active bucket.

    Buckets start on multiples of ``bucket_minutes`` since the epoch (as ``toStartOfInterval`` starts them: 5, 60
    and 1440 minutes divide a day). ``bucket`` comes back as naive UTC ``datetime64[ns]``, the counts as int64.
    """
    if bucket_minutes <= 0:
        raise ValueError(f"bucket_minutes must be positive, got {bucket_minutes}")
    if end < start:
        raise ValueError(f"the range ends ({end}) before it starts ({start})")
    freq = pd.Timedelta(minutes=bucket_minutes)
    buckets = pd.to_datetime(series["bucket"])
    if buckets.dt.tz is not None:
        buckets = buckets.dt.tz_convert("UTC").dt.tz_localize(None)
    values = [column for column in series.columns if column != "bucket"]
    counts = series[values].set_axis(pd.DatetimeIndex(buckets).as_unit("ns"), axis=0)
    whole = pd.date_range(pd.Timestamp(start).floor(freq), pd.Timestamp(end).floor(freq), freq=freq, unit="ns")
    filled = counts.reindex(whole.union(counts.index), fill_value=0).astype("int64")
    return filled.rename_axis("bucket").reset_index()
