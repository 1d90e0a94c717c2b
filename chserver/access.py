"""Who may use the warehouse: users with a role, and authentication the ways ClickHouse's HTTP interface accepts.

ClickHouse takes a request's credentials from exactly one of: the ``X-ClickHouse-User`` /
``X-ClickHouse-Key`` headers, HTTP basic auth (``Authorization: Basic``), or the ``user`` /
``password`` URL parameters (never a form body); mixing two is an error. Without any it assumes the
user ``default``, which this server does not have, so an anonymous request fails like a wrong
password: code 516 (AUTHENTICATION_FAILED), and nothing runs.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field

from chserver.exceptions import EngineError
from chserver.protocol import AUTHENTICATION_FAILED

AUDIT_DATABASE = "audit"
DEFAULT_AUDIT_RETENTION_DAYS = 30


class Role(enum.Enum):
    """What a user may do: admin (DDL and DML), writer (INSERT into our tables), analyst (read-only)."""

    ADMIN = "admin"
    WRITER = "writer"
    ANALYST = "analyst"


@dataclass(frozen=True)
class User:
    """A warehouse user: a name, a password and one role."""

    name: str
    password: str = field(repr=False)
    role: Role


@dataclass(frozen=True)
class AccessConfig:
    """The server's users, the databases the writer may insert into, and how long the audit log keeps rows."""

    users: tuple[User, ...]
    databases: tuple[str, ...] = ("flowscope",)
    audit_retention_days: int = DEFAULT_AUDIT_RETENTION_DAYS

    def __post_init__(self) -> None:
        names = [user.name for user in self.users]
        if not self.users:
            raise ValueError("the warehouse server needs at least one user")
        if len(set(names)) != len(names):
            raise ValueError(f"warehouse user names must be unique, got {sorted(names)}")
        for user in self.users:
            if not user.name or user.name == "default":
                raise ValueError(f"invalid warehouse user name {user.name!r}: no anonymous or 'default' user")
            if not user.password:
                raise ValueError(f"warehouse user {user.name!r} has no password")
        if AUDIT_DATABASE in self.databases or "system" in self.databases:
            raise ValueError(f"the writer's databases cannot include system or {AUDIT_DATABASE}")
        if self.audit_retention_days < 1:
            raise ValueError(f"audit_retention_days must be at least 1, got {self.audit_retention_days}")


def _failed(message: str) -> EngineError:
    return EngineError(AUTHENTICATION_FAILED, f"Code: {AUTHENTICATION_FAILED}. DB::Exception: {message}. "
                       "(AUTHENTICATION_FAILED)", "AUTHENTICATION_FAILED")


def _mixed(first: str, second: str) -> EngineError:
    return _failed(f"Invalid authentication: it is not allowed to use {first} and {second} simultaneously")


def credentials(headers: Mapping[str, str], url_params: Mapping[str, str]) -> tuple[str, str]:
    """The (user, password) a request presents, taken as ClickHouse takes them (``default``/"" when none)."""
    user, password = headers.get("x-clickhouse-user", ""), headers.get("x-clickhouse-key", "")
    authorization = headers.get("authorization")
    in_params = "user" in url_params or "password" in url_params
    if user or password:
        if not user:
            raise _failed("Got an empty user name from X-ClickHouse HTTP headers")
        if authorization is not None:
            raise _mixed("X-ClickHouse HTTP headers", "Authorization HTTP header")
        if in_params:
            raise _mixed("X-ClickHouse HTTP headers", "authentication via parameters")
        return user, password
    if authorization is not None:
        if in_params:
            raise _mixed("Authorization HTTP header", "authentication via parameters")
        scheme, _, info = authorization.strip().partition(" ")
        if scheme.lower() != "basic":
            raise _failed(f"Invalid authentication: '{scheme}' HTTP Authorization scheme is not supported")
        try:
            decoded = base64.b64decode(info.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise _failed("Invalid authentication: malformed Basic credentials") from exc
        user, _, password = decoded.partition(":")
        if not user:
            raise _failed("Got an empty user name from Authorization HTTP header")
        return user, password
    user, password = url_params.get("user", "default"), url_params.get("password", "")
    if not user:
        raise _failed("Got an empty user name from authentication via parameters")
    return user, password


class Authenticator:
    """Checks a request's credentials against the configured users (passwords compared in constant time)."""

    def __init__(self, access: AccessConfig) -> None:
        self._users = {user.name: user for user in access.users}
        self._decoy = "x" * 32  # compared against when the user is unknown, so timing says nothing

    def authenticate(self, user: str, password: str) -> User:
        """The user, or AUTHENTICATION_FAILED (the same answer for an unknown user and a wrong password)."""
        known = self._users.get(user)
        expected = known.password if known is not None else self._decoy
        matches = hmac.compare_digest(expected.encode(), password.encode())
        if known is None or not matches:
            raise _failed(f"{user}: Authentication failed: password is incorrect, or there is no user with such name")
        return known
