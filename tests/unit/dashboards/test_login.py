"""The dashboards' login gate, run by Streamlit's own script runner (no browser, no warehouse)."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from dashboards.login import NOT_CONFIGURED, REFUSED, password_matches


def gated_page() -> None:
    import streamlit as st

    from dashboards.login import require_login

    require_login("s3cret")
    st.write("the data")


def test_password_matches_only_the_exact_password() -> None:
    assert password_matches("s3cret", "s3cret")
    assert not password_matches("s3cre", "s3cret")
    assert not password_matches("s3cret ", "s3cret")
    assert not password_matches("", "s3cret")
    assert not password_matches("", "")  # no password configured: nobody gets in
    assert password_matches("pässwörd", "pässwörd")


def test_nothing_runs_before_the_right_password() -> None:
    app = AppTest.from_function(gated_page).run()
    assert [t.value for t in app.title] == ["flowscope dashboards"]
    assert [m.value for m in app.markdown] == []
    assert [e.value for e in app.error] == []

    app.text_input[0].input("wrong")
    app.button[0].click().run()
    assert [e.value for e in app.error] == [REFUSED]
    assert [m.value for m in app.markdown] == []

    app.text_input[0].input("s3cret")
    app.button[0].click().run()
    assert [m.value for m in app.markdown] == ["the data"]
    assert [e.value for e in app.error] == []
    assert len(app.text_input) == 0

    app.run()  # later runs of the same session need no password
    assert [m.value for m in app.markdown] == ["the data"]


def no_password_page() -> None:
    from dashboards.login import require_login

    require_login("")


def test_no_configured_password_keeps_the_dashboards_locked() -> None:
    app = AppTest.from_function(no_password_page).run()
    assert [e.value for e in app.error] == [NOT_CONFIGURED]
    assert len(app.text_input) == 0
