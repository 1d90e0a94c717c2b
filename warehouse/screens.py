"""Registered Flow screens: each version's screens as its latest registration defines them (``flow_screens``).

The stream worker's catalog (entry screen and screen ids of every version, to resolve endpoint INITs and reject
events naming screens a version lacks) and the Node performance page's screen list read them here.
"""

from __future__ import annotations

import pandas as pd
from clickhouse_connect.driver.client import Client

from warehouse.tables import FLOW_SCREENS_TABLE

_LATEST_SCREENS = f"""
    SELECT flow_id, flow_version, screen, position, title, terminal, success, component_types, next_screens,
           selection_fields
    FROM {FLOW_SCREENS_TABLE} FINAL
    WHERE (flow_id, flow_version, registered_at) IN (
        SELECT flow_id, flow_version, max(registered_at) FROM {FLOW_SCREENS_TABLE} GROUP BY flow_id, flow_version)
"""


def load_catalog(client: Client) -> dict[tuple[str, str], tuple[str, frozenset[str]]]:
    """(flow_id, version) → (entry screen, screen ids) of every registered version."""
    catalog: dict[tuple[str, str], tuple[str, set[str]]] = {}
    for flow_id, version, screen, _position, *_ in client.query(
        _LATEST_SCREENS + " ORDER BY flow_id, flow_version, position"
    ).result_rows:
        entry, screens = catalog.setdefault((flow_id, version), (screen, set()))
        screens.add(screen)
    return {key: (entry, frozenset(screens)) for key, (entry, screens) in catalog.items()}


def flow_screens(client: Client, flow_id: str, flow_version: str) -> pd.DataFrame:
    """The registered screens of a version in routing order (empty when not registered)."""
    sql = f"""
        SELECT screen, position, title, terminal, success, component_types, next_screens, selection_fields
        FROM ({_LATEST_SCREENS})
        WHERE flow_id = {{flow_id:String}} AND flow_version = {{flow_version:String}}
        ORDER BY position
    """
    frame = client.query_df(sql, parameters={"flow_id": flow_id, "flow_version": flow_version})
    return frame if len(frame.columns) else pd.DataFrame(columns=[
        "screen", "position", "title", "terminal", "success", "component_types", "next_screens", "selection_fields"])
