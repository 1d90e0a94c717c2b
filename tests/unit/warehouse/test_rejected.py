"""Rejected-event queries in the real ClickHouse engine (chDB in-process): counts per source and reason
in a time range, the newest first, a redelivered rejection once."""

from __future__ import annotations

from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client

from contract.events import SOURCE_FIRST_PARTY, SOURCE_WHATSAPP, RejectedEvent, event_id
from warehouse import rejected, writer

T0 = 1_790_000_000


def utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)


def rejection(source: str, reason: str, raw: str, at: float) -> RejectedEvent:
    return RejectedEvent(event_id=event_id("rejected", source, reason, raw), source=source, reason=reason, raw=raw,
                         received_at_ms=int(at * 1000), waba_id="880011223344556", phone_number_id="990000000000001")


def test_counts_by_source_and_reason_and_the_newest_first(client: Client) -> None:
    events = [
        rejection(SOURCE_WHATSAPP, "status without id", '{"n":1}', T0 + 1),
        rejection(SOURCE_WHATSAPP, "status without id", '{"n":2}', T0 + 2),
        rejection(SOURCE_WHATSAPP, "status without id", '{"n":2}', T0 + 2),  # redelivered: the same event
        rejection(SOURCE_WHATSAPP, "unknown status value 'opened'", '{"n":3}', T0 + 3),
        rejection(SOURCE_FIRST_PARTY, "event must be a JSON object", '"x"', T0 + 4.5),
        rejection(SOURCE_WHATSAPP, "status without id", '{"n":0}', T0 - 3600),  # before the range
    ]
    for event in events:  # one insert each: FINAL, not a single part, must merge the duplicate
        writer.write(client, *writer.inserts(rejected=[event]))

    counts = rejected.by_reason(client, utc(T0), utc(T0 + 60))
    assert counts.to_dict("records") == [
        {"source": SOURCE_WHATSAPP, "reason": "status without id", "events": 2, "last_received_at": utc(T0 + 2)},
        {"source": SOURCE_FIRST_PARTY, "reason": "event must be a JSON object", "events": 1,
         "last_received_at": utc(T0 + 4.5)},
        {"source": SOURCE_WHATSAPP, "reason": "unknown status value 'opened'", "events": 1,
         "last_received_at": utc(T0 + 3)},
    ]
    newest = rejected.latest(client, utc(T0), utc(T0 + 60), limit=3)
    assert newest[["received_at", "source", "reason", "raw"]].to_dict("records") == [
        {"received_at": utc(T0 + 4.5), "source": SOURCE_FIRST_PARTY, "reason": "event must be a JSON object",
         "raw": '"x"'},
        {"received_at": utc(T0 + 3), "source": SOURCE_WHATSAPP, "reason": "unknown status value 'opened'",
         "raw": '{"n":3}'},
        {"received_at": utc(T0 + 2), "source": SOURCE_WHATSAPP, "reason": "status without id", "raw": '{"n":2}'},
    ]
    assert list(newest["phone_number_id"]) == ["990000000000001"] * 3
    assert rejected.by_reason(client, utc(T0 + 3600), utc(T0 + 7200)).empty
