"""The receiver's counters of value-level errors and marketing preference changes: exact deltas per answered POST."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson
from prometheus_client import REGISTRY

from config.settings import Settings
from contract.events import AnyEvent, UserPreference, WebhookError
from contract.privacy import Pseudonymiser
from ingest.exceptions import BrokerUnavailableError
from ingest.parsing import WebhookParser
from ingest.routes import answer_webhook
from ingest.signatures import Verifier, sign

SECRET = "app-secret"
WABA, PNID = "880011223344556", "990000000000001"
METADATA = {"display_phone_number": "15550001111", "phone_number_id": PNID}
ERRORS = "flowscope_ingest_webhook_errors_total"
PREFERENCES = "flowscope_ingest_user_preferences_total"


class Producer:
    """Stands in for the broker: keeps what it acknowledged, or refuses everything when ``down``."""

    def __init__(self, *, down: bool = False) -> None:
        self.down = down
        self.sent: list[AnyEvent] = []

    async def send(self, events: list[AnyEvent]) -> None:
        if self.down:
            raise BrokerUnavailableError("broker down")
        self.sent.extend(events)


@dataclass
class State:
    """What :func:`answer_webhook` reads from the app's state."""

    settings: Settings = field(default_factory=lambda: Settings.from_env({}))
    producer: Producer = field(default_factory=Producer)
    parser: WebhookParser = field(default_factory=lambda: WebhookParser(pseudonymise=Pseudonymiser("test-key")))
    webhook_signature: Verifier = field(default_factory=lambda: Verifier(SECRET))


def post(state: State, payload: dict[str, Any]) -> int:
    body = orjson.dumps(payload)
    status, _ = asyncio.run(answer_webhook(state, body, signature=sign(body, SECRET), content_type="application/json"))
    return status


def webhook(*changes: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return {"object": "whatsapp_business_account",
            "entry": [{"id": WABA, "time": 1767003600,
                       "changes": [{"field": name, "value": value} for name, value in changes]}]}


def error(code: int) -> dict[str, Any]:
    return {"code": code, "title": "Something went wrong", "message": "Something went wrong",
            "error_data": {"details": "Number restricted"}, "href": "https://developers.facebook.com/docs/"}


def preference(value: str, *, user: str, category: str = "marketing_messages") -> dict[str, Any]:
    return {"wa_id": user, "detail": f"User requested to {value} marketing messages", "category": category,
            "value": value, "timestamp": 1767003600}


def counts() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the two counters (the ``_total`` samples), by name and labels."""
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in REGISTRY.collect():
        for sample in family.samples:
            if sample.name in (ERRORS, PREFERENCES):
                found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return found


def deltas(before: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> dict[str, float]:
    """What changed since ``before``, as ``name{label=value,...}`` → increase."""
    changed: dict[str, float] = {}
    for key, value in counts().items():
        if value != before.get(key, 0.0):
            name, labels = key
            changed[name + "{" + ",".join(f"{k}={v}" for k, v in labels) + "}"] = value - before.get(key, 0.0)
    return changed


# Two value-level errors (two codes, in two changes of one body) and one stop, one resume of an unlisted category.
BODY = webhook(
    ("messages", {"messaging_product": "whatsapp", "metadata": METADATA, "errors": [error(131000)]}),
    ("user_preferences", {"messaging_product": "whatsapp", "metadata": METADATA,
                          "user_preferences": [preference("stop", user="5511999990000"),
                                               preference("resume", user="5511999990001", category="promotions")],
                          "errors": [error(368)]}),
)


def test_each_error_and_preference_of_an_accepted_webhook_is_counted_once() -> None:
    state = State()
    before = counts()
    assert post(state, BODY) == 200
    assert deltas(before) == {
        f"{ERRORS}{{code=131000}}": 1.0,
        f"{ERRORS}{{code=368}}": 1.0,
        f"{PREFERENCES}{{category=marketing_messages,value=stop}}": 1.0,
        f"{PREFERENCES}{{category=other,value=resume}}": 1.0,
    }
    # The counters match what was written: two WebhookError and two UserPreference events.
    assert sum(isinstance(e, WebhookError) for e in state.producer.sent) == 2
    assert sum(isinstance(e, UserPreference) for e in state.producer.sent) == 2


def test_a_redelivered_webhook_counts_again() -> None:
    state = State()
    before = counts()
    assert post(state, BODY) == 200
    assert post(state, BODY) == 200
    assert deltas(before) == {
        f"{ERRORS}{{code=131000}}": 2.0,
        f"{ERRORS}{{code=368}}": 2.0,
        f"{PREFERENCES}{{category=marketing_messages,value=stop}}": 2.0,
        f"{PREFERENCES}{{category=other,value=resume}}": 2.0,
    }


def test_errors_of_one_code_in_one_body_add_up() -> None:
    before = counts()
    body = webhook(("messages", {"messaging_product": "whatsapp", "metadata": METADATA,
                                 "errors": [error(131000), error(131000), error(131000)]}))
    assert post(State(), body) == 200
    assert deltas(before) == {f"{ERRORS}{{code=131000}}": 3.0}


def test_nothing_is_counted_when_the_broker_refuses_the_events() -> None:
    before = counts()
    assert post(State(producer=Producer(down=True)), BODY) == 503
    assert deltas(before) == {}


def test_a_webhook_without_errors_or_preferences_changes_neither_counter() -> None:
    before = counts()
    status = {"id": "wamid.HBgM1", "status": "delivered", "timestamp": "1767000001", "recipient_id": "5511999990000"}
    assert post(State(), webhook(("messages", {"messaging_product": "whatsapp", "metadata": METADATA,
                                               "statuses": [status]}))) == 200
    assert deltas(before) == {}


def test_preference_series_exist_at_zero_before_any_change() -> None:
    """So rate() and increase() see the first stop after a (re)start."""
    for value in ("stop", "resume"):
        for category in ("marketing_messages", "other"):
            assert REGISTRY.get_sample_value(PREFERENCES, {"value": value, "category": category}) is not None
