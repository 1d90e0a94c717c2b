"""Meaning of the WhatsApp Cloud API error codes seen on failed statuses (classify by code, never by text)."""

from __future__ import annotations

# A failed status stores error code 0 when it carried no ``errors[]`` (or a code out of range, see
# contract.limits.MAX_ERROR_CODE): 0 is our "no code", not one of Meta's.
NO_ERROR_CODE = 0

ERROR_MEANINGS: dict[int, str] = {
    NO_ERROR_CODE: "No error code given by Meta (the failed status carried no errors[])",
    130429: "Throughput limit for the number reached",
    130472: "User in a marketing experiment holdout",
    131000: "Unknown error",
    131008: "Required parameter missing",
    131009: "Parameter value invalid",
    131021: "Sender is the recipient",
    131026: "Message undeliverable",
    131031: "Business account locked",
    131042: "Payment or eligibility problem",
    131047: "Re-engagement: over 24 h since the user last wrote",
    131048: "Spam rate limit hit",
    131049: "Withheld to keep ecosystem engagement healthy",
    131050: "User stopped marketing messages",
    131051: "Unsupported message type",
    131053: "Media upload error",
    131056: "Pair rate limit: too many messages to one user",
    131057: "Account in maintenance mode",
    132000: "Template parameter count mismatch",
    132001: "Template missing or not approved",
    132005: "Template text too long",
    132007: "Template format-character policy violated",
    132012: "Template parameter format mismatch",
    132015: "Template paused for low quality",
    132016: "Template disabled",
    132068: "Flow is blocked",
    132069: "Flow is throttled",
    133010: "Phone number not registered",
    368: "Temporarily blocked for policy violations",
    190: "Access token expired",
}


def meaning(code: int) -> str:
    """What ``code`` means; empty for a code this table does not know."""
    return ERROR_MEANINGS.get(code, "")
