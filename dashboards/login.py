"""The dashboards' login: a password from the environment, asked before any page runs.

Every script run of the app passes through :func:`require_login` before a page runs, so no page, query or
warehouse connection happens until this browser session has given ``FLOWSCOPE_DASHBOARD_PASSWORD``
(compared in constant time). The login lasts as long as Streamlit's session: moving between pages keeps it,
reloading the tab asks again.

For production, Streamlit's built-in OpenID Connect login is the stronger option: people sign in with the
company's identity provider (Google, Microsoft Entra, Okta, Auth0, Keycloak, ...) and nobody shares a password.
It needs Authlib (>= 1.3.2) installed and an ``[auth]`` table in ``.streamlit/secrets.toml``::

    [auth]
    redirect_uri = "https://dashboards.example.com/oauth2callback"
    cookie_secret = "<a long random string>"
    client_id = "<from the identity provider>"
    client_secret = "<from the identity provider>"
    server_metadata_url = "https://<provider>/.well-known/openid-configuration"

and, in place of the password form, ``if not st.user.is_logged_in: st.login(); st.stop()``. Streamlit then
keeps the identity in a signed cookie (``st.user`` holds its claims; ``st.logout()`` removes it); restrict who
may enter in the identity provider, or by checking ``st.user.email`` here.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import streamlit as st

logger = logging.getLogger(__name__)

LOGGED_IN = "flowscope_login"  # the session-state key holding this browser session's Login
REFUSED = "Wrong password. Try again."
NOT_CONFIGURED = "The dashboards have no password: set FLOWSCOPE_DASHBOARD_PASSWORD and restart them."


@dataclass(frozen=True)
class Login:
    """This browser session gave the right password at ``at``. Only this module makes one: a browser can send
    widget values (strings, numbers, booleans), never an object of this class."""

    at: datetime


def logged_in() -> bool:
    return isinstance(st.session_state.get(LOGGED_IN), Login)


def password_matches(given: str, expected: str) -> bool:
    """Constant-time comparison; an empty expected password matches nothing."""
    if not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def require_login(password: str) -> None:
    """Returns when this browser session has logged in; otherwise shows the login form and ends the run."""
    if logged_in():
        return
    st.title("flowscope dashboards")
    if not password:
        st.error(NOT_CONFIGURED)
        st.stop()
    with st.form("login"):
        given = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Log in")
    if submitted:
        if password_matches(given, password):
            st.session_state[LOGGED_IN] = Login(at=datetime.now(UTC))
            logger.info("dashboards: a browser session logged in")
            st.rerun()  # runs the requested page from the top, without the form
        logger.warning("dashboards: a login was refused (wrong password)")
        st.error(REFUSED)
    st.stop()
