"""What Meta's delivery traffic is made of: status paths, error codes, pricing categories, names, form answers."""

from __future__ import annotations

import random
from typing import Any

from contract.events import MESSAGE_STATUSES

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

# (category, pricing type, weight) of messages that are not Flows.
CATEGORIES: tuple[tuple[str, str, float], ...] = (
    ("marketing", "regular", 0.45),
    ("utility", "regular", 0.28),
    ("authentication", "regular", 0.10),
    ("service", "free_customer_service", 0.15),
    ("marketing", "free_entry_point", 0.02),
)
CAMPAIGNS = ("spring_sale", "cart_reminder", "order_update", "otp_login", "reactivation")

# Names of the businesses' Flows; each has its form fields in :func:`form_answers` (personal data on purpose).
FLOW_NAMES: tuple[str, ...] = ("plan_picker", "lead_capture", "nps_survey", "appointment_booking")
FIRST_NAMES = tuple(
    "Ana Bruno Carla Diego Elisa Felipe Gabriela Hugo Isabela João Karina Lucas Mariana Nicolas Olivia Paulo "
    "Rafaela Tiago".split()
)
LAST_NAMES = ("Silva", "Santos", "Oliveira", "Souza", "Lima", "Pereira", "Costa", "Almeida", "Ribeiro")


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
