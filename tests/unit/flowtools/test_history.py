"""The first run's simulated history: every kind of data a page shows, parsed by the real receiver parser."""

from __future__ import annotations

import collections

import orjson

from contract.events import FlowCompletion, FlowHealth, MessageStatus, UserPreference, WebhookError
from contract.privacy import Pseudonymiser
from flowtools.simulator.history import MESSAGES_PER_DAY, SESSIONS_PER_DAY, history_posts
from ingest.parsing import WebhookParser

NOW_S = 1_790_000_000


def test_two_days_of_history_hold_every_kind_of_data_within_the_days() -> None:
    posts = history_posts(days=2, now_s=NOW_S)
    assert history_posts(days=2, now_s=NOW_S) == posts  # deterministic
    assert history_posts(days=0, now_s=NOW_S) == []
    parser = WebhookParser(pseudonymise=Pseudonymiser("k"), form_fields_allowlist=("plan",))
    kinds: collections.Counter[type] = collections.Counter()
    reasons: collections.Counter[str] = collections.Counter()
    sent_sessions: set[str] = set()
    times: list[int] = []
    wamids: set[str] = set()
    for kind, body in posts:
        if kind == "events":
            items = orjson.loads(body)
            sent_sessions |= {item["flow_token"] for item in items if item["type"] == "flow_sent"}
            times += [int(item["timestamp"]) for item in items]
            continue
        result = parser.parse(body)
        kinds.update(type(event) for event in result.events)
        reasons.update(event.reason for event in result.rejected)
        times += [event.occurred_at for event in result.events if isinstance(event, MessageStatus)]
        wamids |= {event.wamid for event in result.events if isinstance(event, MessageStatus)}
    assert len(sent_sessions) == 2 * SESSIONS_PER_DAY  # some POSTs twice, as the sources retry
    # The webhook simulator's messages (2 days' worth) beside the Flow messages of the sessions.
    assert len(wamids) == 2 * MESSAGES_PER_DAY + 2 * SESSIONS_PER_DAY
    assert kinds[FlowHealth] == 11 and kinds[FlowCompletion] > 0 and kinds[UserPreference] > 0
    assert kinds[WebhookError] > 0
    assert reasons == {"unknown status value 'deleted'": 3, "status without id": 1}
    assert NOW_S - 2 * 86_400 <= min(times) and max(times) <= NOW_S
