"""Meta's X-Hub-Signature-256: HMAC-SHA256 of the raw body with the app secret."""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Hub-Signature-256"  # the header Meta signs every webhook POST in
PREFIX = "sha256="


def sign(body: bytes, secret: str) -> str:
    """The header value Meta would send for ``body``."""
    return PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, header: str | None, secret: str) -> bool:
    """True when ``header`` is a valid signature of ``body``; compared in constant time."""
    return Verifier(secret)(body, header)


class Verifier:
    """:func:`verify` with one secret, keyed once: each check copies the keyed HMAC instead of keying a new one."""

    __slots__ = ("_keyed",)

    def __init__(self, secret: str) -> None:
        self._keyed = hmac.new(secret.encode(), digestmod=hashlib.sha256)

    def __call__(self, body: bytes, header: str | None) -> bool:
        if not header or not header.startswith(PREFIX):
            return False
        mac = self._keyed.copy()
        mac.update(body)
        # Bytes, not str: compare_digest raises on non-ASCII str, and a header may carry any byte.
        return hmac.compare_digest(
            mac.hexdigest().encode(), header[len(PREFIX):].strip().lower().encode("utf-8", "surrogatepass")
        )
