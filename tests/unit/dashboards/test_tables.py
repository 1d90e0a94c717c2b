"""Tables on the pages: the drop-rate colours by threshold, the CSV bytes, and a table shown with its download."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from dashboards.tables import AMBER, DROP_RATE_AMBER, DROP_RATE_RED, RED, csv_bytes, drop_rate_style


@pytest.mark.parametrize(("rate", "style"), [
    (0.0, ""), (0.0999, ""), (0.10, AMBER), (0.2999, AMBER), (0.30, RED), (1.0, RED), (float("nan"), ""),
])
def test_a_drop_rate_is_shaded_by_how_bad_it_is(rate: float, style: str) -> None:
    assert (DROP_RATE_AMBER, DROP_RATE_RED) == (0.10, 0.30)
    assert drop_rate_style(rate) == style


def test_a_table_of_zero_drop_rates_is_not_shaded() -> None:
    zeros = pd.DataFrame({"screen": ["A", "B"], "drop rate": [0.0, 0.0]})
    assert "background-color" not in zeros.style.map(drop_rate_style, subset=["drop rate"]).to_html()
    worst = pd.DataFrame({"screen": ["A", "B"], "drop rate": [0.0, 0.5]})
    assert worst.style.map(drop_rate_style, subset=["drop rate"]).to_html().count("background-color") == 1


def test_csv_bytes_are_the_values_without_the_index() -> None:
    frame = pd.DataFrame(
        {"error_code": [0, 131049], "meaning": ["No code, given", 'say "hi"'], "rate": [0.25, -1.5],
         "at": [datetime(2026, 1, 2, 3, 4, 5), datetime(2026, 1, 2, 3, 4, 6, 500_000)], "note": ["é", None]},
        index=[7, 9],
    )
    assert csv_bytes(frame) == (
        "error_code,meaning,rate,at,note\n"
        '0,"No code, given",0.25,2026-01-02 03:04:05.000,é\n'
        '131049,"say ""hi""",-1.5,2026-01-02 03:04:06.500,\n'
    ).encode()


def test_csv_bytes_defuse_text_a_spreadsheet_would_run() -> None:
    frame = pd.DataFrame({"raw": ["=HYPERLINK(1)", "+1", "-x", "@a", "ok", "a=b"], "n": [-1, 2, 3, 4, 5, 6]})
    assert csv_bytes(frame) == b"raw,n\n'=HYPERLINK(1),-1\n'+1,2\n'-x,3\n'@a,4\nok,5\na=b,6\n"


def page() -> None:
    import pandas as pd

    from dashboards.tables import drop_rate_style, show

    frame = pd.DataFrame({"screen": ["A"], "drop rate": [0.5]})
    show(frame, name="plain")
    show(frame.style.map(drop_rate_style, subset=["drop rate"]), name="styled", hide_index=False)


def test_show_renders_each_table_with_a_download_button() -> None:
    app = AppTest.from_function(page).run()
    assert not app.exception
    assert len(app.dataframe) == 2
    buttons = app.get("download_button")
    assert [b.proto.label for b in buttons] == ["Download CSV", "Download CSV"]
