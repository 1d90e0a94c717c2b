"""Error codes of failed statuses: code 0 (a failed status without errors[]) says so, in the table and the query."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from clickhouse_connect.driver.client import Client

from contract.events import MessageStatus
from warehouse import writer
from warehouse.error_codes import NO_ERROR_CODE, meaning
from warehouse.queries import DeliveryFilter, failures_by_error_code

NO_CODE = "No error code given by Meta (the failed status carried no errors[])"
T0 = int(time.time()) - 3600


def failed(wamid: str, code: int) -> MessageStatus:
    return MessageStatus(event_id=f"{wamid}.failed", waba_id="waba", phone_number_id="pn", wamid=wamid,
                         status="failed", occurred_at=T0, received_at_ms=T0 * 1000, recipient_hash="h",
                         error_code=code)


def test_code_zero_means_meta_gave_no_code() -> None:
    assert NO_ERROR_CODE == 0
    assert meaning(0) == NO_CODE
    assert meaning(131049) == "Withheld to keep ecosystem engagement healthy"
    assert meaning(999_999) == ""


def test_failures_without_a_code_are_labelled(client: Client) -> None:
    writer.write(client, *writer.inserts(statuses=[failed("w1", 0), failed("w2", 0), failed("w3", 131049),
                                                   failed("w4", 424242)]))
    end = datetime.now(UTC).replace(tzinfo=None)
    frame = failures_by_error_code(client, DeliveryFilter(start=end - timedelta(days=1), end=end))
    assert frame.to_dict("records") == [
        {"error_code": 0, "meaning": NO_CODE, "messages": 2},
        {"error_code": 131049, "meaning": "Withheld to keep ecosystem engagement healthy", "messages": 1},
        {"error_code": 424242, "meaning": "", "messages": 1},
    ]
