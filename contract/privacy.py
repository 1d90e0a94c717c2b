"""Pseudonymisation: phone numbers become keyed hashes before anything is stored."""

from __future__ import annotations

import hashlib
from typing import Any

# Every payload key whose value is a user's phone number (or group id) in Meta's webhooks.
PHONE_KEYS = frozenset({"recipient_id", "wa_id", "from", "recipient_participant_id"})


class Pseudonymiser:
    """Keyed BLAKE2b: stable per key (so joins still work), not reversible without the key."""

    __slots__ = ("_keyed",)

    def __init__(self, key: str) -> None:
        # Keyed once: each value copies this state instead of keying a new hash (a block of work per value).
        self._keyed = hashlib.blake2b(key=hashlib.blake2b(key.encode(), digest_size=32).digest(), digest_size=16)

    def __call__(self, value: str) -> str:
        if not value:
            return ""
        keyed = self._keyed.copy()
        keyed.update(value.encode())
        return keyed.hexdigest()

    def hide(self, value: Any) -> Any:
        """The hash of a phone-number field's value, whatever its JSON type (a number too); null stays null."""
        if value is None or isinstance(value, bool):
            return value
        return self(value if isinstance(value, str) else str(value))

    def scrub(self, node: Any) -> Any:
        """A copy of a JSON value with every phone-number field replaced by its hash."""
        if isinstance(node, dict):
            return {k: (self.hide(v) if k in PHONE_KEYS else self.scrub(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [self.scrub(v) for v in node]
        return node
