"""Errors of the receiver."""

from __future__ import annotations


class IngestError(Exception):
    """Root of every receiver error."""


class MalformedPayloadError(IngestError):
    """The request body is not a webhook we can read; answered with 400 and the reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BrokerUnavailableError(IngestError):
    """The broker did not acknowledge every event in time; answered with 503 so Meta retries."""
