"""Session touches made old, as minutes of waiting would make them: shared by the flow query tests."""

from __future__ import annotations

from clickhouse_connect.driver.client import Client

from warehouse import flows, tables


def age_touches(client: Client) -> None:
    """Make every session touch older than the margin the queries allow inserts in flight."""
    touches = tables.FLOW_SESSION_TOUCHES_TABLE
    client.command(f"CREATE TABLE aged AS {touches}")
    client.command(f"INSERT INTO aged SELECT touched_at - toIntervalSecond({flows.TOUCH_MARGIN_S + 60}), "
                   f"flow_token FROM {touches}")
    client.command(f"TRUNCATE TABLE {touches}")
    client.command(f"INSERT INTO {touches} SELECT * FROM aged")
    client.command("DROP TABLE aged")
