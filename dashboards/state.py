"""What every page shares: settings and one read-only (analyst) warehouse client per Streamlit server."""

from __future__ import annotations

import streamlit as st
from clickhouse_connect.driver.client import Client

from config.settings import Settings
from warehouse.client import connect


@st.cache_resource
def settings() -> Settings:
    return Settings.from_env()


@st.cache_resource
def warehouse() -> Client:
    return connect(settings().warehouse_url_for("analyst"), autogenerate_session_id=False)
