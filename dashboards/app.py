"""flowscope dashboards: the Streamlit entry point (``flowscope dashboards``)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboards.login import logged_in, require_login
from dashboards.state import settings

VIEWS = Path(__file__).with_name("views")  # not "pages": that name turns on Streamlit's legacy navigation

st.set_page_config(page_title="flowscope", page_icon=":bar_chart:", layout="wide")
# Every page is registered on every run, so a link to /funnel still leads to the funnel after the login; the
# menu stays hidden, and no page runs, until this browser session has logged in.
navigation = st.navigation(
    [
        st.Page(str(VIEWS / "overview.py"), title="Overview", icon=":material/dashboard:", default=True),
        st.Page(str(VIEWS / "delivery.py"), title="Delivery status", icon=":material/mark_email_read:"),
        st.Page(str(VIEWS / "funnel.py"), title="Engagement funnel", icon=":material/filter_alt:"),
        st.Page(str(VIEWS / "nodes.py"), title="Node performance", icon=":material/account_tree:"),
        st.Page(str(VIEWS / "health.py"), title="Flow health", icon=":material/monitor_heart:"),
        st.Page(str(VIEWS / "rejected.py"), title="Rejected events", icon=":material/report:"),
    ],
    position="sidebar" if logged_in() else "hidden",
)
require_login(settings().dashboard_password)
navigation.run()
