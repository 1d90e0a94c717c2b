"""Who a webhook is about, after Meta's 2026 identity change (section 10 of the webhook reference).

A user may be named by a phone number (``recipient_id``, ``wa_id``, ``from``), a business-scoped user id (BSUID:
``recipient_user_id``, ``user_id``, ``from_user_id``) and, for linked portfolios, a parent BSUID
(``recipient_parent_user_id``, ``parent_user_id``). Every one of them leaves the receiver only as a keyed hash.
The person key of an event is the parent BSUID when present, else the BSUID, else the phone number; the warehouse
links the keys of one person seen under several of them (see ``warehouse.identity``).

The country is read before hashing: a BSUID's two-letter prefix, else the phone number's calling code (and, where a
code is shared, its leading digits), as ISO 3166 alpha-2; empty when neither tells.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

import phonenumbers

from contract.privacy import Pseudonymiser

# ``BR.1502576394655843``; a parent BSUID ``US.ENT.11815799212886844830``.
_BSUID_COUNTRY = re.compile(r"([A-Z]{2})\.")
# Calling codes that belong to no country (+800 freephone, +882 international networks, ...).
_NO_COUNTRY = "001"


@dataclass(frozen=True, slots=True)
class Identity:
    """The keyed hashes naming one user in one event, the person key among them, and the user's country."""

    phone_hash: str = ""
    user_id_hash: str = ""
    parent_user_id_hash: str = ""
    country: str = ""

    @property
    def person_hash(self) -> str:
        return self.parent_user_id_hash or self.user_id_hash or self.phone_hash


NOBODY = Identity()


def identity(hash_value: Pseudonymiser, phone: Any, user_id: Any, parent_user_id: Any) -> Identity:
    """The identity named by a phone number, a BSUID and a parent BSUID, any of them missing (None or empty)."""
    phone = identifier(phone)
    user_id = identifier(user_id)
    parent = identifier(parent_user_id)
    if not (phone or user_id or parent):
        return NOBODY
    return Identity(
        phone_hash=hash_value(phone),
        user_id_hash=hash_value(user_id),
        parent_user_id_hash=hash_value(parent),
        country=bsuid_country(user_id) or bsuid_country(parent) or phone_country(phone),
    )


def bsuid_country(bsuid: str) -> str:
    """The ISO country of a BSUID (its prefix before the first dot), or empty."""
    match = _BSUID_COUNTRY.match(bsuid) if bsuid else None
    return match.group(1) if match else ""


@functools.lru_cache(maxsize=65_536)
def phone_country(phone: str) -> str:
    """The ISO country of a phone number as Meta writes it (digits with the calling code, no ``+``), or empty.

    The country whose numbering plan the number fits; for a number that fits none (a test number), the main
    country of its calling code. Remembered per number: the statuses of one message name the same number.
    """
    digits = phone.lstrip("+")
    if not digits.isdigit() or not 7 <= len(digits) <= 17:
        return ""
    try:
        number = phonenumbers.parse("+" + digits)
    except phonenumbers.NumberParseException:
        return ""
    if number.country_code is None:
        return ""
    region = phonenumbers.region_code_for_number(number) or phonenumbers.region_code_for_country_code(
        number.country_code)
    return "" if not region or region in (_NO_COUNTRY, "ZZ") else region


def identifier(value: Any) -> str:
    """An identifier Meta sent: a string, or a number Meta wrote without quotes; anything else is missing."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return ""
