"""The receiver's Prometheus metrics, defined once.

With several uvicorn worker processes (``FLOWSCOPE_INGEST_WORKERS`` > 1) every process writes its
samples to files under ``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` sums them, so Prometheus sees
the receiver's true totals whichever worker answers the scrape.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

from contract.events import AnyEvent, UserPreference, WebhookError

WEBHOOKS = Counter(
    "flowscope_ingest_webhooks_total",
    "Requests received, by field (messages, flows, other, mixed, unknown for unreadable bodies, "
    "first_party, flow_definition) and outcome.",
    ["field", "outcome"],
)
EVENTS = Counter(
    "flowscope_ingest_events_total",
    "Canonical events written to the broker, by kind (the contract's tag: message_status, flow_health, ...).",
    ["kind"],
)
IGNORED = Counter(
    "flowscope_ingest_ignored_total",
    "Webhook parts deliberately not analysed (other fields, other message types), by kind.",
    ["kind"],
)
WEBHOOK_ERRORS = Counter(
    "flowscope_ingest_webhook_errors_total",
    "Value-level errors Meta reported (value.errors[], not tied to one message) in accepted webhooks, by Meta's "
    "error code; a webhook Meta delivers again counts again (the warehouse table webhook_errors keeps each once).",
    ["code"],
)
USER_PREFERENCES = Counter(
    "flowscope_ingest_user_preferences_total",
    "Marketing preference changes (user_preferences[]) in accepted webhooks, by value (stop, resume) and "
    "category (other for a category not listed here); a webhook Meta delivers again counts again.",
    ["value", "category"],
)
REQUEST_LATENCY = Histogram(
    "flowscope_ingest_request_duration_seconds",
    "Time from request start to response, for webhook and first-party event POSTs.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
BROKER_WRITE_LATENCY = Histogram(
    "flowscope_ingest_broker_write_duration_seconds",
    "Time until the broker acknowledged every event of one request.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

# Series that exist from the start at 0, so rate() and alerts see the first increase too.
_EXPECTED = {
    **{field: ("accepted", "broker_unavailable")
       for field in ("messages", "flows", "user_preferences", "other", "mixed")},
    "unknown": ("bad_signature", "malformed", "too_large"),
    "first_party": ("accepted", "partial", "bad_signature", "malformed", "too_large", "broker_unavailable"),
    "flow_definition": ("accepted", "bad_signature", "malformed", "too_large", "broker_unavailable"),
}
for _field, _outcomes in _EXPECTED.items():
    for _outcome in _outcomes:
        WEBHOOKS.labels(_field, _outcome)
# user_preferences[].category values we label by; anything else is counted as "other" (labels stay bounded).
PREFERENCE_CATEGORIES = frozenset({"marketing_messages"})
for _value in ("stop", "resume"):
    for _category in (*PREFERENCE_CATEGORIES, "other"):
        USER_PREFERENCES.labels(_value, _category)

_event_counters: dict[type, Counter] = {}
_webhook_counters: dict[tuple[str, str], Counter] = {}


def event_counter(kind: type[AnyEvent]) -> Counter:
    """The events counter child of one event kind, labelled with the contract's tag."""
    counter = _event_counters.get(kind)
    if counter is None:
        counter = _event_counters[kind] = EVENTS.labels(str(kind.__struct_config__.tag))
    return counter


def webhook_counter(field: str, outcome: str) -> Counter:
    """The webhooks counter child of one (field, outcome): looked up once, not on every request."""
    counter = _webhook_counters.get((field, outcome))
    if counter is None:
        counter = _webhook_counters[field, outcome] = WEBHOOKS.labels(field, outcome)
    return counter


def count_reports(events: list[AnyEvent]) -> None:
    """Count the value-level errors (by code) and the marketing preference changes (by value and category) among
    ``events``: one counter update per label set."""
    errors: dict[str, int] = {}
    preferences: dict[tuple[str, str], int] = {}
    for event in events:
        if isinstance(event, WebhookError):
            code = str(event.code)
            errors[code] = errors.get(code, 0) + 1
        elif isinstance(event, UserPreference):
            labels = (event.value, event.category if event.category in PREFERENCE_CATEGORIES else "other")
            preferences[labels] = preferences.get(labels, 0) + 1
    for code, count in errors.items():
        WEBHOOK_ERRORS.labels(code).inc(count)
    for (value, category), count in preferences.items():
        USER_PREFERENCES.labels(value, category).inc(count)


def exposition(*, multiprocess_mode: bool) -> bytes:
    """The text exposition: this process's registry, or every worker process's samples summed."""
    if not multiprocess_mode:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry)
