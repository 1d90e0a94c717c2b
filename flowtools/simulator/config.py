"""SimulationConfig: what the webhook traffic simulator generates and how it sends it."""

from __future__ import annotations

from dataclasses import dataclass

from ingest.paths import WEBHOOK_PATH

DEFAULT_URL = f"http://127.0.0.1:8000{WEBHOOK_PATH}"


@dataclass(frozen=True, kw_only=True)
class SimulationConfig:
    """What to generate and how to send it. Ratios are probabilities in [0, 1]."""

    messages: int = 10_000  # outbound messages to simulate; 0 = endless
    rate: float = 200.0  # webhook POSTs per second (duplicates included)
    seed: int = 0
    traffic_seed: int | None = None  # seeds the messages apart from the businesses (None: from ``seed``)
    duplicate_ratio: float = 0.05  # share of POSTs re-sent later, byte for byte
    status_duplicate_ratio: float = 0.02  # share of status updates repeated in a later POST
    reorder_ratio: float = 0.05  # share of messages (2+ statuses) with one pair posted swapped
    flow_ratio: float = 0.4  # share of messages that are Flow messages
    completion_ratio: float = 0.35  # share of delivered/read Flow messages the user completes
    failure_ratio: float = 0.06  # share of messages that fail after sent
    read_without_delivered_ratio: float = 0.04  # share of messages read with no delivered status
    conversation_ratio: float = 0.3  # share of messages whose statuses carry a conversation object
    mixed_post_ratio: float = 0.15  # share of POSTs carrying updates of several phone numbers
    group_ratio: float = 0.02  # share of messages that are not Flows sent to a WhatsApp group
    opt_out_ratio: float = 0.04  # share of Flow messages whose recipient later stops marketing messages
    resume_ratio: float = 0.25  # share of those stops followed by a resume
    webhook_error_ratio: float = 0.002  # share of POSTs that carry only a value-level error
    max_batch: int = 50  # most updates in one POST (Meta: up to 1000)
    recipients: int = 2_000  # size of the pool of users
    start_time: float | None = None  # Unix seconds of simulated time 0; None = when generated or run
    live_clock: bool = False  # event times from the real clock (always so in endless mode)
    concurrency: int = 32  # POSTs in flight at most
    deadline_s: float = 120.0  # longest one POST is retried, from its first attempt
    timeout_s: float = 10.0  # one attempt's timeout
    retry_initial_s: float = 0.2  # first retry backoff, doubled up to retry_max_s
    retry_max_s: float = 5.0

    def __post_init__(self) -> None:
        for name in (
            "duplicate_ratio",
            "status_duplicate_ratio",
            "reorder_ratio",
            "flow_ratio",
            "completion_ratio",
            "failure_ratio",
            "read_without_delivered_ratio",
            "conversation_ratio",
            "mixed_post_ratio",
            "group_ratio",
            "opt_out_ratio",
            "resume_ratio",
            "webhook_error_ratio",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")
        if self.failure_ratio + self.read_without_delivered_ratio > 1.0:
            raise ValueError("failure_ratio + read_without_delivered_ratio must not exceed 1")
        if self.messages < 0:
            raise ValueError(f"messages must be >= 0 (0 = endless), got {self.messages}")
        if not self.rate > 0:
            raise ValueError(f"rate must be > 0 POSTs per second, got {self.rate}")
        if not 1 <= self.max_batch <= 1000:
            raise ValueError(f"max_batch must be within [1, 1000], got {self.max_batch}")
        if self.recipients < 1 or self.concurrency < 1:
            raise ValueError("recipients and concurrency must be at least 1")
        if self.deadline_s < 0 or self.timeout_s <= 0 or self.retry_initial_s <= 0:
            raise ValueError("deadline_s must be >= 0, timeout_s and retry_initial_s > 0")
