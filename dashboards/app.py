"""flowscope dashboards: the Streamlit entry point (``flowscope dashboards``)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

PAGES = Path(__file__).with_name("pages")

st.set_page_config(page_title="flowscope", page_icon=":bar_chart:", layout="wide")
navigation = st.navigation(
    [
        st.Page(str(PAGES / "delivery.py"), title="Delivery status", icon=":material/mark_email_read:", default=True),
    ]
)
navigation.run()
