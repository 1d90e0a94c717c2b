"""Simulated WhatsApp users of the Flow sessions, named as Meta names them since 2026 (section 10 of the webhook
reference): a country, a phone number Meta shows always, sometimes or never, a BSUID, for some a parent BSUID, and
for a few a change of number (or of BSUID) at one moment. One user is one person, whatever identifiers show.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flowtools.simulator import payloads
from ingest.identity import phone_country

# ISO country → (calling code, leading digits of valid-looking mobile numbers, digits after them).
PHONE_PLANS: dict[str, tuple[str, tuple[str, ...], int]] = {
    "BR": ("55", ("1199", "2198", "3197", "4199", "5196", "6198", "7197", "8199"), 7),
    "US": ("1", ("2125", "4158", "3127", "6174", "2063", "3059", "6462", "7134"), 6),
    "IN": ("91", ("7", "8", "9"), 9),
    "MX": ("52", ("55", "33", "81"), 8),
    "DE": ("49", ("151", "152", "160", "170", "171", "175", "176"), 8),
    "GB": ("44", ("7400", "7412", "7423", "7444", "7450", "7470", "7480", "7490"), 6),
}
COUNTRIES: tuple[str, ...] = tuple(PHONE_PLANS)

# How much of the phone number Meta shows of a user.
ALWAYS, SOMETIMES, NEVER = "always", "sometimes", "never"
PHONE_LESS_SHARE = 1 / 3  # username users: Meta never shows their number
SOMETIMES_SHARE = 0.15  # the number on some statuses and not on others
PARENT_SHARE = 0.10  # users with a parent BSUID (linked portfolios)
USERNAME_SHARE = 0.2  # users with a visible number who also have a username
NAMES = ("Ana", "João", "Priya", "Carlos", "Lena", "Tom", "Sofia", "Arjun", "Mia", "Lucas")


@dataclass(frozen=True, slots=True)
class Handle:
    """The identifiers of a user for a while: phone number ("" for a user whose number Meta never shows), BSUID,
    parent BSUID ("" when none)."""

    phone: str
    user_id: str
    parent_user_id: str = ""


@dataclass
class User:
    """One simulated person; ``handles[1]`` (when there is one) names them from ``changed_at_s`` on."""

    number: int  # the person (position in the pool)
    country: str  # ISO 3166 alpha-2
    shows_phone: str  # ALWAYS, SOMETIMES or NEVER
    name: str
    username: str  # "" when none
    handles: list[Handle] = field(default_factory=list)
    changed_at_s: int | None = None

    def at(self, t_s: float) -> Handle:
        """The identifiers Meta names the user by at ``t_s`` (Unix seconds)."""
        if self.changed_at_s is not None and t_s >= self.changed_at_s:
            return self.handles[1]
        return self.handles[0]

    def shown(self, rng: random.Random) -> bool:
        """Whether Meta shows the phone number in one payload (a fair coin for SOMETIMES users)."""
        return self.shows_phone == ALWAYS or (self.shows_phone == SOMETIMES and rng.random() < 0.5)


def pool(rng: random.Random, size: int, *, taken: set[str], prefix: str = "") -> list[User]:
    """``size`` users: exactly round(size / 3) phone-less, round(0.15 × size) showing the number sometimes, the rest
    always; countries, numbers and BSUIDs at random, none of them in ``taken`` (to which they are added)."""
    kinds = [NEVER] * round(size * PHONE_LESS_SHARE) + [SOMETIMES] * round(size * SOMETIMES_SHARE)
    kinds += [ALWAYS] * (size - len(kinds))
    rng.shuffle(kinds)
    users = []
    for number, kind in enumerate(kinds):
        country = rng.choice(COUNTRIES)
        parent = _parent(rng, taken, country) if rng.random() < PARENT_SHARE else ""
        username = f"@{prefix}u{number}" if kind != ALWAYS or rng.random() < USERNAME_SHARE else ""
        users.append(User(number, country, kind, rng.choice(NAMES), username,
                          [Handle(_phone(rng, taken, country) if kind != NEVER else "", _bsuid(rng, taken, country),
                                  parent)]))
    return users


def change_identity(rng: random.Random, user: User, at_s: int, *, taken: set[str]) -> None:
    """From ``at_s`` on the user has a new BSUID and, when Meta knows their number, a new number (same country);
    the parent BSUID stays."""
    old = user.handles[0]
    new_phone = _phone(rng, taken, user.country) if old.phone else ""
    user.handles.append(Handle(new_phone, _bsuid(rng, taken, user.country), old.parent_user_id))
    user.changed_at_s = at_s


def change_message(user: User, *, wamid: str) -> dict[str, Any]:
    """The system message telling of the user's change (``user_changed_number`` or ``user_changed_user_id``)."""
    if user.changed_at_s is None:
        raise ValueError("the user changed no identifier")
    old, new = user.handles
    return payloads.identity_change(
        wamid=wamid, timestamp=user.changed_at_s, previous_phone=old.phone or None, previous_user_id=old.user_id,
        phone=new.phone or None, user_id=new.user_id, parent_user_id=new.parent_user_id)


def status(user: User, *, shown: bool, wamid: str, status: str, timestamp: int,
           pricing: dict[str, Any] | None) -> dict[str, Any]:
    """A status of a message to the user as Meta sends it: the number only when ``shown``; a failed message sent
    to a number names only that number, one sent to a BSUID only the BSUIDs, and carries no ``contacts[]``."""
    handle = user.at(timestamp)
    phone = handle.phone if shown and handle.phone else None
    if status == "failed":
        if phone is not None:
            return payloads.status(wamid=wamid, status=status, timestamp=timestamp, recipient_id=phone)
        return payloads.status(wamid=wamid, status=status, timestamp=timestamp, recipient_id=None,
                               recipient_user_id=handle.user_id, recipient_parent_user_id=handle.parent_user_id)
    contact = payloads.contact(wa_id=phone or "", user_id=handle.user_id, parent_user_id=handle.parent_user_id,
                               username=user.username if status in ("delivered", "read") else "")
    return payloads.status(wamid=wamid, status=status, timestamp=timestamp, recipient_id=phone,
                           recipient_user_id=handle.user_id, recipient_parent_user_id=handle.parent_user_id,
                           contacts=[contact], pricing=pricing)


def contact(user: User, *, shown: bool, at_s: int) -> dict[str, Any]:
    """The user's ``contacts[]`` entry in an inbound message or a preference change."""
    handle = user.at(at_s)
    return payloads.contact(wa_id=handle.phone if shown else "", name=user.name, user_id=handle.user_id,
                            parent_user_id=handle.parent_user_id, username=user.username)


def preference(user: User, *, shown: bool, value: str, timestamp: int) -> dict[str, Any]:
    """The user's ``user_preferences[]`` entry: ``wa_id`` only when the number is shown."""
    handle = user.at(timestamp)
    return payloads.user_preference(value=value, timestamp=timestamp, user_id=handle.user_id,
                                    wa_id=handle.phone if shown and handle.phone else None,
                                    parent_user_id=handle.parent_user_id)


def _phone(rng: random.Random, taken: set[str], country: str) -> str:
    """A number the receiver places in ``country`` (``ingest.identity.phone_country``), as Meta writes it."""
    code, leads, digits = PHONE_PLANS[country]
    while True:
        number = f"{code}{rng.choice(leads)}{rng.randrange(10**digits):0{digits}d}"
        if number not in taken and phone_country(number) == country:
            taken.add(number)
            return number


def _bsuid(rng: random.Random, taken: set[str], country: str) -> str:
    return _unique(taken, lambda: f"{country}.{rng.randrange(10**15, 10**16)}")


def _parent(rng: random.Random, taken: set[str], country: str) -> str:
    return _unique(taken, lambda: f"{country}.ENT.{rng.randrange(10**19, 10**20)}")


def _unique(taken: set[str], draw: Callable[[], str]) -> str:
    while True:
        value = draw()
        if value not in taken:
            taken.add(value)
            return value
