"""Users, roles and authentication the ways ClickHouse's HTTP interface accepts it."""

from __future__ import annotations

import base64

import pytest

from chserver.access import AccessConfig, Authenticator, Role, User, credentials
from chserver.exceptions import EngineError

USERS = (User("boss", "pw-a", Role.ADMIN), User("feeder", "pw-w", Role.WRITER), User("reader", "pw-r", Role.ANALYST))


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_each_credential_channel() -> None:
    assert credentials({"x-clickhouse-user": "reader", "x-clickhouse-key": "pw-r"}, {}) == ("reader", "pw-r")
    assert credentials({"authorization": _basic("reader", "p:w")}, {}) == ("reader", "p:w")
    assert credentials({}, {"user": "reader", "password": "pw-r"}) == ("reader", "pw-r")
    assert credentials({}, {}) == ("default", "")


@pytest.mark.parametrize(
    ("headers", "params", "message"),
    [
        ({"x-clickhouse-user": "a", "authorization": _basic("a", "b")}, {},
         "not allowed to use X-ClickHouse HTTP headers and Authorization HTTP header simultaneously"),
        ({"x-clickhouse-user": "a"}, {"user": "a"},
         "not allowed to use X-ClickHouse HTTP headers and authentication via parameters simultaneously"),
        ({"authorization": _basic("a", "b")}, {"password": "b"},
         "not allowed to use Authorization HTTP header and authentication via parameters simultaneously"),
        ({"authorization": "Bearer token"}, {}, "'Bearer' HTTP Authorization scheme is not supported"),
        ({"x-clickhouse-key": "b"}, {}, "Got an empty user name from X-ClickHouse HTTP headers"),
        ({"authorization": _basic("", "b")}, {}, "Got an empty user name from Authorization HTTP header"),
    ],
)
def test_mixed_or_malformed_credentials_fail_like_clickhouse(headers: dict[str, str], params: dict[str, str],
                                                             message: str) -> None:
    with pytest.raises(EngineError) as failed:
        credentials(headers, params)
    assert (failed.value.code, failed.value.name) == (516, "AUTHENTICATION_FAILED")
    assert message in failed.value.message


def test_a_wrong_password_and_an_unknown_user_get_the_same_answer() -> None:
    authenticator = Authenticator(AccessConfig(USERS))
    assert authenticator.authenticate("reader", "pw-r").role is Role.ANALYST
    for user, password in (("reader", "pw-w"), ("nobody", "pw-r"), ("default", ""), ("reader", "")):
        with pytest.raises(EngineError) as failed:
            authenticator.authenticate(user, password)
        assert failed.value.message == (f"Code: 516. DB::Exception: {user}: Authentication failed: password is "
                                        "incorrect, or there is no user with such name. (AUTHENTICATION_FAILED)")


@pytest.mark.parametrize(
    "users",
    [(), (User("default", "x", Role.ADMIN),), (User("a", "", Role.ADMIN),),
     (User("a", "x", Role.ADMIN), User("a", "y", Role.WRITER))],
)
def test_no_anonymous_default_passwordless_or_duplicate_user(users: tuple[User, ...]) -> None:
    with pytest.raises(ValueError):
        AccessConfig(users)


def test_passwords_stay_out_of_reprs() -> None:
    assert "pw-a" not in repr(AccessConfig(USERS))
