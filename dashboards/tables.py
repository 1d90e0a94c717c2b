"""How the pages show a table: the table, a CSV download of it, and the colours a drop rate gets."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st
from pandas.io.formats.style import Styler

# A screen's drop rate (dropped / reached) is shaded by how bad it is: below DROP_RATE_AMBER it is not shaded
# (some people always leave), from DROP_RATE_AMBER amber (worth a look), from DROP_RATE_RED red (the screen
# loses more than it should). 0 % is never shaded.
DROP_RATE_AMBER = 0.10
DROP_RATE_RED = 0.30
AMBER = "background-color: #ffe0b2; color: #3e2723"
RED = "background-color: #ffcdd2; color: #b71c1c"

# A text cell starting with one of these is read as a formula by spreadsheets (CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def drop_rate_style(rate: float) -> str:
    """The CSS of a drop-rate cell: none below 10 %, amber from 10 %, red from 30 % (NaN: none)."""
    if pd.isna(rate) or rate < DROP_RATE_AMBER:
        return ""
    return AMBER if rate < DROP_RATE_RED else RED


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """The frame as UTF-8 CSV, without the index; a text cell a spreadsheet would run as a formula gets a ``'``."""
    safe = frame.copy()
    for column in safe.columns:
        if safe[column].dtype == object or pd.api.types.is_string_dtype(safe[column]):
            safe[column] = [_defused(value) for value in safe[column]]
    text: str = safe.to_csv(index=False)
    return text.encode()


def _defused(value: object) -> object:
    return f"'{value}" if isinstance(value, str) and value.startswith(_FORMULA_STARTS) else value


def show(table: pd.DataFrame | Styler, *, name: str, **dataframe_options: Any) -> None:
    """``st.dataframe(table, hide_index=True, width="stretch", **dataframe_options)`` and a "Download CSV" button
    for ``name``.csv (the values, not their display format); ``name`` is unique on its page."""
    frame = table.data if isinstance(table, Styler) else table
    st.dataframe(table, **{"hide_index": True, "width": "stretch", **dataframe_options})
    st.download_button("Download CSV", csv_bytes(frame), file_name=f"{name}.csv", mime="text/csv",
                       key=f"download_{name}", on_click="ignore", icon=":material/download:")
