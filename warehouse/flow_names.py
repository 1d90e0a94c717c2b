"""Flows by name: the display names businesses register their flows under, and how pages write a flow."""

from __future__ import annotations

from clickhouse_connect.driver.client import Client

from warehouse.tables import FLOW_DEFINITIONS_TABLE


def flow_names(client: Client) -> dict[str, str]:
    """Each registered flow's display name: the latest name given to any of its versions (flows never named
    have none: pages show their id)."""
    sql = f"""
        SELECT flow_id, argMax(flow_name, registered_at) FROM {FLOW_DEFINITIONS_TABLE}
        WHERE flow_name != '' GROUP BY flow_id
    """
    return {flow_id: name for flow_id, name in client.query(sql).result_rows}


def label(flow_id: str, names: dict[str, str]) -> str:
    """How pages name a flow: ``Lead form (1100000000000001)``, or the id alone when it has no name."""
    name = names.get(flow_id, "")
    return f"{name} ({flow_id})" if name else flow_id
