"""Errors of the configuration package."""

from __future__ import annotations


class SettingsError(Exception):
    """A setting is missing or malformed; the message names the environment variable."""


class RateCardError(Exception):
    """The rate card file cannot be used: the message names the file, the line and the reason."""
