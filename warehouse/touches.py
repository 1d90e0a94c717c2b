"""Touches: the rows an insert's materialized view writes to say "this session (or message) changed, now".

A rollup pass resolves what was touched since its previous pass (:mod:`warehouse.resolution`), in chunks of about
the same number of touches.
"""

from __future__ import annotations

from datetime import datetime

from clickhouse_connect.driver.client import Client


def touch_chunks(client: Client, table: str, since: datetime, until: datetime, chunk: int
                 ) -> list[tuple[datetime, datetime]]:
    """[start, end) ranges of touch time in ``table`` covering [since, until), each of about ``chunk`` touches."""
    bounds = [row[0].replace(tzinfo=None) for row in client.query(
        f"SELECT touched_at FROM (SELECT touched_at, row_number() OVER (ORDER BY touched_at) AS n "
        f"FROM {table} WHERE touched_at >= {{since:DateTime64(3, 'UTC')}} "
        "AND touched_at < {until:DateTime64(3, 'UTC')}) WHERE n % {chunk:UInt32} = 0 ORDER BY touched_at",
        parameters={"since": since, "until": until, "chunk": chunk}).result_rows]
    edges = [since, *[b for b in bounds if since < b < until], until]
    return [(a, b) for a, b in zip(edges, edges[1:], strict=False) if a < b]
