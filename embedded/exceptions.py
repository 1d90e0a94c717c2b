"""Errors of the embedded stack."""

from __future__ import annotations


class SupervisorError(Exception):
    """A process of the embedded stack failed to start or stopped unexpectedly."""
