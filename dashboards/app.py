"""flowscope dashboards: the Streamlit entry point (``flowscope dashboards``)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

VIEWS = Path(__file__).with_name("views")  # not "pages": that name turns on Streamlit's legacy navigation

st.set_page_config(page_title="flowscope", page_icon=":bar_chart:", layout="wide")
navigation = st.navigation(
    [
        st.Page(str(VIEWS / "delivery.py"), title="Delivery status", icon=":material/mark_email_read:", default=True),
        st.Page(str(VIEWS / "funnel.py"), title="Engagement funnel", icon=":material/filter_alt:"),
        st.Page(str(VIEWS / "nodes.py"), title="Node performance", icon=":material/account_tree:"),
        st.Page(str(VIEWS / "health.py"), title="Flow health", icon=":material/monitor_heart:"),
        st.Page(str(VIEWS / "rejected.py"), title="Rejected events", icon=":material/report:"),
    ]
)
navigation.run()
