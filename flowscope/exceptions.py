"""Errors of the shared flowscope package."""

from __future__ import annotations


class FlowscopeError(Exception):
    """Root of every flowscope error."""


class SettingsError(FlowscopeError):
    """A setting is missing or malformed; the message names the environment variable."""


class ContractError(FlowscopeError):
    """A canonical event could not be decoded."""


class SupervisorError(FlowscopeError):
    """A process of the embedded stack failed to start or stopped unexpectedly."""


class FlowDefinitionError(FlowscopeError):
    """A Flow JSON document cannot be registered; the message says why."""
