"""What Meta's delivery traffic is made of: status paths, error codes, pricing categories, names, form answers."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from contract.events import MESSAGE_STATUSES
from flowtools.simulator import payloads, users

# The statuses the simulator generates: all of Meta's but ``played`` (voice messages only).
STATUSES: tuple[str, ...] = tuple(status for status in MESSAGE_STATUSES if status != "played")

# Status paths of messages that do not fail, with their weights.
STATUS_PATHS: tuple[tuple[tuple[str, ...], float], ...] = (
    (("sent", "delivered", "read"), 0.68),
    (("sent", "delivered"), 0.20),
    (("sent",), 0.12),
)
FAILED_PATH: tuple[str, ...] = ("sent", "failed")
READ_WITHOUT_DELIVERED: tuple[str, ...] = ("sent", "read")

# code → (weight, title, details). Flow-only codes are drawn for Flow messages only.
ERRORS: dict[int, tuple[float, str, str]] = {
    131049: (
        30,
        "This message was not delivered to maintain healthy ecosystem engagement.",
        "In order to maintain a healthy ecosystem engagement, the message failed to be delivered.",
    ),
    131026: (20, "Message undeliverable", "Message Undeliverable."),
    131047: (
        12,
        "Re-engagement message",
        "Message failed to send because more than 24 hours have passed since the customer last replied to this number.",
    ),
    131048: (
        8,
        "Spam rate limit hit",
        "Message failed to send because there are restrictions on how many messages can be sent "
        "from this phone number.",
    ),
    131056: (
        6,
        "(Business Account, Consumer Account) pair rate limit hit",
        "Too many messages sent from the sender phone number to the same recipient phone number in a "
        "short period of time.",
    ),
    130429: (6, "Rate limit hit", "Cloud API message throughput has been reached."),
    131050: (
        6,
        "Unable to deliver the message. This recipient has chosen to stop receiving marketing "
        "messages on WhatsApp from your business.",
        "The user has stopped marketing messages from this business.",
    ),
    131000: (4, "Something went wrong", "Message failed to send due to an unknown error."),
    132069: (
        3,
        "Flow is in throttled state",
        "Flow is in throttled state and 10 messages using this flow were already sent in the last hour.",
    ),
    132068: (2, "Flow is in blocked state", "Flow is in blocked state."),
    130472: (
        2,
        "User's number is part of an experiment",
        "Failed to send message because this user's phone number is part of an experiment.",
    ),
}
FLOW_ONLY_ERRORS = frozenset({132068, 132069})

# Value-level errors (``value.errors[]``, not tied to one message): code → (title, details).
VALUE_ERRORS: dict[int, tuple[str, str]] = {
    131000: ("Something went wrong", "Message failed to send because of an unknown error. Try again later."),
    130472: (
        "User's number is part of an experiment",
        "Failed to send message because this user's phone number is part of an experiment.",
    ),
    368: ("Temporarily blocked for policies violations", "The account is restricted for violating a policy."),
}

# Marketing opt-outs (``user_preferences``): a stop follows a Flow message's ``sent`` status by a uniform delay in
# [OPT_OUT_MIN_DELAY_S, OPT_OUT_MAX_DELAY_S] (twice the default opt-out window, so about half fall outside it); a
# resume follows a stop by a uniform delay in [OPT_OUT_MIN_DELAY_S, RESUME_MAX_DELAY_S].
OPT_OUT_WINDOW_S = 48 * 3600
OPT_OUT_MIN_DELAY_S = 60
OPT_OUT_MAX_DELAY_S = 2 * OPT_OUT_WINDOW_S
RESUME_MAX_DELAY_S = 24 * 3600
# Preferences waiting for their time, at most (an endless run drops new ones beyond: its memory stays bounded).
MAX_PENDING_PREFERENCES = 100_000
GROUP_MEMBERS = (2, 8)  # fewest and most members (with a phone number) of a simulated WhatsApp group
USERS_PER_GROUP = 100  # the businesses message about recipients / USERS_PER_GROUP groups (at least one)

# (category, pricing type, weight) of messages that are not Flows: every pricing type Meta sends (section 10 of the
# webhook reference): regular (billable) for the four charged categories, free customer service replies, and free
# entry point messages (marketing or utility, from an ad or a Facebook Page button).
CATEGORIES: tuple[tuple[str, str, float], ...] = (
    ("marketing", "regular", 0.43),
    ("utility", "regular", 0.26),
    ("authentication", "regular", 0.08),
    ("authentication_international", "regular", 0.03),
    ("service", "free_customer_service", 0.15),
    ("marketing", "free_entry_point", 0.03),
    ("utility", "free_entry_point", 0.02),
)
CAMPAIGNS = ("spring_sale", "cart_reminder", "order_update", "otp_login", "reactivation")

# Names of the businesses' Flows; each has its form fields in :func:`form_answers` (personal data on purpose).
FLOW_NAMES: tuple[str, ...] = ("plan_picker", "lead_capture", "nps_survey", "appointment_booking")
FIRST_NAMES = tuple(
    "Ana Bruno Carla Diego Elisa Felipe Gabriela Hugo Isabela João Karina Lucas Mariana Nicolas Olivia Paulo "
    "Rafaela Tiago".split()
)
LAST_NAMES = ("Silva", "Santos", "Oliveira", "Souza", "Lima", "Pereira", "Costa", "Almeida", "Ribeiro")


@dataclass(frozen=True, slots=True, eq=False)
class Recipient:
    """A user of the pool (:func:`flowtools.simulator.users.pool`) and the full name the business knows them by."""

    user: users.User
    name: str

    @property
    def handle(self) -> users.Handle:
        return self.user.handles[0]

    @property
    def identifiers(self) -> tuple[str, ...]:
        """Every identifier of the user, shown or not: one user is one person."""
        return tuple(i for i in (self.handle.phone, self.handle.user_id, self.handle.parent_user_id) if i)

    @property
    def address(self) -> str:
        """What a message id encodes of the user: the phone number, else the BSUID."""
        return self.handle.phone or self.handle.user_id

    def phone(self, *, shown: bool) -> str | None:
        """The phone number a payload names: None when Meta does not show it (or the user has none)."""
        return self.handle.phone if shown and self.handle.phone else None

    def contact(self, *, shown: bool) -> dict[str, Any]:
        """The user's ``contacts[]`` entry in an inbound message or a preference change."""
        handle = self.handle
        return payloads.contact(wa_id=self.phone(shown=shown) or "", name=self.name, user_id=handle.user_id,
                                parent_user_id=handle.parent_user_id, username=self.user.username)


@dataclass(frozen=True, slots=True)
class Group:
    """A WhatsApp group the businesses message: its id and its members' phone numbers. Not a person."""

    group_id: str
    members: tuple[str, ...]


def audience(rng: random.Random, size: int) -> tuple[list[Recipient], list[Group]]:
    """``size`` users as Meta names them since 2026 (:func:`flowtools.simulator.users.pool`: six countries, a third
    phone-less, 15 % showing the number sometimes, 10 % with a parent BSUID), and groups of those with a number."""
    taken: set[str] = set()
    pool = users.pool(rng, size, taken=taken)
    recipients = [Recipient(user, f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}") for user in pool]
    phones = [user.handles[0].phone for user in pool if user.handles[0].phone]
    groups = []
    for _ in range(max(1, size // USERS_PER_GROUP)):
        group_id = f"120363{rng.randrange(10**11, 10**12)}"
        while group_id in taken:
            group_id = f"120363{rng.randrange(10**11, 10**12)}"
        taken.add(group_id)
        groups.append(Group(group_id, tuple(rng.sample(phones, min(len(phones), rng.randint(*GROUP_MEMBERS))))))
    return recipients, groups


def preference_times(rng: random.Random, sent: float, *, resume_ratio: float) -> list[tuple[float, str]]:
    """(seconds, ``stop`` | ``resume``): a marketing stop a while after a Flow message's ``sent``, sometimes a resume
    after it."""
    stop = sent + rng.uniform(OPT_OUT_MIN_DELAY_S, OPT_OUT_MAX_DELAY_S)
    times = [(stop, "stop")]
    if rng.random() < resume_ratio:
        times.append((stop + rng.uniform(OPT_OUT_MIN_DELAY_S, RESUME_MAX_DELAY_S), "resume"))
    return times


def status_delay(rng: random.Random, current: str, nxt: str) -> float:
    """Seconds between two statuses of one message."""
    if nxt == "delivered":
        return 0.5 + min(rng.expovariate(1 / 1.5), 30.0)
    if nxt == "read" and current == "delivered":
        return 1.0 + min(rng.expovariate(1 / 10), 300.0)
    if nxt == "read":  # chat open: read straight after sent
        return 1.0 + min(rng.expovariate(1 / 2), 30.0)
    return 0.5 + min(rng.expovariate(1 / 3), 60.0)  # failed


def completion_delay(rng: random.Random) -> float:
    """Seconds from a Flow message's last status until the user completes the Flow."""
    return 15.0 + min(rng.expovariate(1 / 60), 900.0)


def form_answers(rng: random.Random, flow_name: str, contact_name: str) -> dict[str, Any]:
    """The answers of a completed Flow's form (its ``response_json`` without the flow token)."""
    first, _, last = contact_name.partition(" ")
    email = f"{first.lower()}.{last.lower()}{rng.randint(1, 999)}@example.com".replace("ã", "a")
    if flow_name == "plan_picker":
        return {"plan": rng.choice(("basic", "pro", "enterprise")), "seats": rng.randint(1, 50), "email": email}
    if flow_name == "lead_capture":
        return {
            "full_name": contact_name,
            "email": email,
            "company": f"{last} Ltda",
            "interest": rng.choice(("pricing", "demo", "support")),
        }
    if flow_name == "nps_survey":
        return {"score": rng.randint(0, 10), "comment": rng.choice(("", "Great service", "Too slow")), "email": email}
    return {
        "date": f"2026-12-{rng.randint(1, 28):02d}",
        "slot": rng.choice(("morning", "afternoon")),
        "full_name": contact_name,
        "phone": "55119" + f"{rng.randrange(10**8):08d}",
    }
