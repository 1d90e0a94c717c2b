"""Streamlit dashboards. Pages call typed query functions from ``warehouse.queries``; no SQL here."""
