"""``flowscope warehouse rebuild`` against the real warehouse server (as its admin), while the rollup runs:
progress on every step, the same figures before and after, a range rebuild, and a clear refusal of a bad range."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from contract.events import MessageStatus
from embedded.supervisor import flowscope_command
from tests.stack import Stack, poll
from warehouse import tables, writer
from warehouse.client import connect
from warehouse.queries import DeliveryFilter, delivery_totals
from warehouse.rollup import DELIVERY_SEALED, progress

ALL = DeliveryFilter(start=datetime(2014, 1, 1), end=datetime(2100, 1, 1))


def run_rebuild(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **stack.settings.as_env(secrets=("warehouse_admin_password",))}
    return subprocess.run(flowscope_command("warehouse", "rebuild", *args), env=env, capture_output=True, text=True,
                          timeout=300, check=False)


def test_rebuild_from_the_command_line_keeps_every_figure(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory("warehouse", rollup_seal_after_s=60)
    admin = connect(stack.settings.warehouse_url_for("admin"))
    start = (int(time.time()) - 3600) // 60 * 60
    statuses = [MessageStatus(event_id=f"w{i}.{s}", waba_id="waba", phone_number_id="p1", wamid=f"w{i}", status=s,
                              occurred_at=start + 60 * i + k, received_at_ms=0, recipient_hash="h")
                for i in range(30) for k, s in enumerate(("sent", "delivered", "read")) if not (i == 7 and k == 1)]
    writer.write(admin, *writer.inserts(statuses=statuses))
    assert poll(lambda: progress(admin, DELIVERY_SEALED) is not None, want=True, deadline_s=60)
    expected = {"sent": 30, "delivered": 29, "read": 30, "failed": 0, "delivered_or_read": 30}
    assert poll(lambda: {k: delivery_totals(admin, ALL)[k] for k in expected}, want=expected, deadline_s=60) \
        == expected

    whole = run_rebuild(stack)
    assert whole.returncode == 0, whole.stderr
    steps = [line for line in whole.stdout.splitlines() if "rebuild [" in line]
    assert steps and all(f"/{len(steps) - 1}]" in line or f"/{len(steps)}]" in line for line in steps)
    assert "rebuilt in" in whole.stdout.splitlines()[-1]
    assert {k: delivery_totals(admin, ALL)[k] for k in expected} == expected

    since = datetime.fromtimestamp(start + 600, UTC).isoformat()
    until = (datetime.fromtimestamp(start + 900, UTC) + timedelta(seconds=1)).isoformat()
    ranged = run_rebuild(stack, "--since", since, "--until", until)
    assert ranged.returncode == 0, ranged.stderr
    assert {k: delivery_totals(admin, ALL)[k] for k in expected} == expected
    assert admin.command(f"SELECT uniqExactMerge(messages) FROM {tables.MESSAGE_STATUS_MINUTE_TABLE} "
                         "WHERE status = 'sent'") == 30

    backwards = run_rebuild(stack, "--since", until, "--until", since)
    assert backwards.returncode != 0
    assert "must be before" in backwards.stderr
    admin.close()
