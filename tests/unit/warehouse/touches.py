"""Touches made old, as minutes of waiting would make them: shared by the flow query tests."""

from __future__ import annotations

from clickhouse_connect.driver.client import Client

from warehouse import flows, message_hours, tables


def age_touches(client: Client, touches: str = tables.FLOW_SESSION_TOUCHES_TABLE) -> None:
    """Make every touch of ``touches`` (sessions', or messages') older than the margin the queries allow inserts
    in flight."""
    margin = max(flows.TOUCH_MARGIN_S, message_hours.TOUCH_MARGIN_S) + 60
    client.command(f"CREATE TABLE aged AS {touches}")
    client.command(f"INSERT INTO aged SELECT * REPLACE (touched_at - toIntervalSecond({margin}) AS touched_at) "
                   f"FROM {touches}")
    client.command(f"TRUNCATE TABLE {touches}")
    client.command(f"INSERT INTO {touches} SELECT * FROM aged")
    client.command("DROP TABLE aged")


def age_message_touches(client: Client) -> None:
    """Make every message touch (by a status: ``outbound_messages.touched_at``; by a send: ``message_touches``)
    older than the margin the queries allow inserts in flight."""
    age_touches(client, tables.MESSAGE_TOUCHES_TABLE)
    client.command(f"ALTER TABLE {tables.OUTBOUND_MESSAGES_TABLE} UPDATE touched_at = touched_at - "
                   f"toIntervalSecond({message_hours.TOUCH_MARGIN_S + 60}) WHERE 1", settings={"mutations_sync": 2})
