"""Errors of the event contract: events that cannot be decoded, Flow JSON that cannot be registered."""

from __future__ import annotations


class ContractError(Exception):
    """Root of every contract error; also raised when a canonical event cannot be decoded."""


class FlowDefinitionError(ContractError):
    """A Flow JSON document cannot be registered; the message says why."""
