"""Reading Meta's webhook JSON: what every part's parser shares (``ingest.parsing``, ``ingest.people``).

The result of parsing one body (:class:`ParseResult`), and small readers of Meta's values: lists that must be
lists, Unix-seconds timestamps, error objects, the ``contacts[]`` entry of a user.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from contract.events import CanonicalEvent, RejectedEvent
from contract.limits import MAX_ERROR_CODE
from ingest.exceptions import MalformedPayloadError

# Timestamps before this are not WhatsApp Cloud API events (2014-01-01).
EARLIEST_TIMESTAMP = 1_388_534_400
# Clock skew tolerated for timestamps ahead of ours.
MAX_FUTURE_SKEW_S = 3600

# (reason, fragment, received_ms, waba_id, phone_number_id) → the rejected part, pseudonymised.
Reject = Callable[[str, Any, int, str, str], RejectedEvent]


@dataclass(slots=True)
class ParseResult:
    """What one webhook body gave: events, rejected parts (with reasons), and parts skipped on purpose."""

    events: list[CanonicalEvent] = field(default_factory=list)
    rejected: list[RejectedEvent] = field(default_factory=list)
    ignored: dict[str, int] = field(default_factory=dict)  # what we skip on purpose, by kind
    fields: set[str] = field(default_factory=set)  # the changes' ``field`` values, bounded (parsing.FIELD_LABELS)

    @property
    def field_label(self) -> str:
        """The request's ``field`` metric label: the one field its changes carry, other, or mixed."""
        if len(self.fields) == 1:
            return next(iter(self.fields))
        return "mixed" if self.fields else "other"

    def ignore(self, kind: str) -> None:
        self.ignored[kind] = self.ignored.get(kind, 0) + 1


@dataclass(frozen=True, slots=True)
class MetaError:
    """One of Meta's error objects (a failed status's ``errors[0]``, a value's ``errors[]``), normalised."""

    code: int = 0
    title: str = ""
    message: str = ""
    details: str = ""
    href: str = ""

    @classmethod
    def of(cls, raw: dict[str, Any]) -> MetaError:
        code = raw.get("code")
        data = raw.get("error_data")
        return cls(
            code=code if isinstance(code, int) and not isinstance(code, bool) and 0 <= code <= MAX_ERROR_CODE else 0,
            title=str(raw.get("title") or raw.get("message") or ""),
            message=str(raw.get("message") or ""),
            details=str(data.get("details") or "") if isinstance(data, dict) else "",
            href=str(raw.get("href") or ""),
        )


def list_of(node: dict[str, Any], key: str, where: str, *, required: bool = True) -> list[Any]:
    """``node[key]``, which must be a list (absent: empty when not ``required``); else the body is malformed."""
    value = node.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, list):
        raise MalformedPayloadError(f"{where}.{key} must be a list")
    return value


def timestamp(raw: Any, received_ms: int) -> tuple[int, str]:
    """Meta's Unix-seconds timestamp (a string, sometimes an int) → (seconds, problem)."""
    if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 18:  # int() refuses 4,300+ digits
        seconds = int(raw)
    elif isinstance(raw, int) and not isinstance(raw, bool):
        seconds = raw
    else:
        return 0, "missing or non-numeric timestamp"
    if seconds < EARLIEST_TIMESTAMP:
        return 0, f"timestamp {seconds} is before 2014"
    if seconds > received_ms // 1000 + MAX_FUTURE_SKEW_S:
        return 0, f"timestamp {seconds} is in the future"
    return seconds, ""


def as_object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def known(name: Any, names: frozenset[str]) -> str:
    """``name`` when it is one of ``names``, else "other" (metric labels stay bounded)."""
    return name if isinstance(name, str) and name in names else "other"


def phone_number_id(value: dict[str, Any]) -> str:
    """The business number of a change (``metadata.phone_number_id``), empty when absent."""
    metadata = value.get("metadata")
    return str(metadata.get("phone_number_id") or "") if isinstance(metadata, dict) else ""


def contacts_of(value: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """A change's ``contacts[]`` entries (objects only)."""
    return [c for c in list_of(value, "contacts", where, required=False) if isinstance(c, dict)]


def contact_of(contacts: list[dict[str, Any]], phone: Any, user_id: Any) -> dict[str, Any]:
    """The ``contacts[]`` entry of the user named by ``phone`` or ``user_id``; the only entry when there is one."""
    for contact in contacts:
        if (phone and contact.get("wa_id") == phone) or (user_id and contact.get("user_id") == user_id):
            return contact
    return contacts[0] if len(contacts) == 1 else {}
