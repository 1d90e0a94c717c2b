"""The durable broker's retention policy: which record objects go, and why."""

from __future__ import annotations

import pytest

from config.exceptions import SettingsError
from config.settings import Settings
from embedded.retention import Policy, RecordObject

NOW = 1_000_000.0


def objects(*specs: tuple[int, int, float]) -> list[RecordObject]:
    """(offset, size, age in seconds) → record objects, oldest first."""
    return [RecordObject(offset, f"records/{offset:020d}.batch", size, NOW - age) for offset, size, age in specs]


def removed(policy: Policy, found: list[RecordObject], committed: dict[str, int]) -> list[tuple[int, str]]:
    return [(o.offset, reason) for o, reason in policy.removable(found, committed, now=NOW)]


GENEROUS = Policy(retention_s=86_400, retention_bytes=10**9, consumed_after_s=10)


def test_an_object_goes_once_every_group_committed_past_its_last_record() -> None:
    found = objects((0, 100, 60), (5, 100, 60), (9, 100, 60), (12, 100, 60))
    # Offsets 0-4 and 5-8 are below both groups' commits; 9-11 is not below "slow"'s 10.
    assert removed(GENEROUS, found, {"fast": 12, "slow": 10}) == [(0, "consumed"), (5, "consumed")]


def test_the_object_holding_the_committed_offset_stays() -> None:
    found = objects((0, 100, 60), (5, 100, 60), (9, 100, 60))
    assert removed(GENEROUS, found, {"g": 7}) == [(0, "consumed")]
    assert removed(GENEROUS, found, {"g": 5}) == [(0, "consumed")]
    assert removed(GENEROUS, found, {"g": 4}) == []


def test_consumed_objects_are_kept_for_the_grace_period() -> None:
    found = objects((0, 100, 11), (5, 100, 9), (9, 100, 1))
    assert removed(GENEROUS, found, {"g": 9}) == [(0, "consumed")]


def test_without_committed_offsets_only_time_and_size_remove() -> None:
    found = objects((0, 100, 90_000), (5, 100, 80_000), (9, 100, 1))
    assert removed(GENEROUS, found, {}) == [(0, "time")]


def test_time_removes_unconsumed_objects_but_never_the_newest() -> None:
    found = objects((0, 100, 90_000), (5, 100, 90_000))
    assert removed(GENEROUS, found, {"g": 0}) == [(0, "time")]
    assert removed(GENEROUS, objects((0, 100, 90_000)), {}) == []


def test_size_removes_the_oldest_until_the_partition_fits() -> None:
    policy = Policy(retention_s=86_400, retention_bytes=250, consumed_after_s=10)
    found = objects((0, 100, 30), (5, 100, 20), (9, 100, 10), (12, 100, 1))
    assert removed(policy, found, {}) == [(0, "size"), (5, "size")]


def test_size_counts_what_consumption_already_removes() -> None:
    policy = Policy(retention_s=86_400, retention_bytes=250, consumed_after_s=10)
    found = objects((0, 100, 30), (5, 100, 20), (9, 100, 10), (12, 100, 1))
    assert removed(policy, found, {"g": 9}) == [(0, "consumed"), (5, "consumed")]


def test_size_never_removes_the_newest_object() -> None:
    policy = Policy(retention_s=86_400, retention_bytes=10, consumed_after_s=10)
    found = objects((0, 100, 30), (5, 100, 20))
    assert removed(policy, found, {}) == [(0, "size")]


def test_the_policy_comes_from_the_settings() -> None:
    settings = Settings.build(broker_retention_s=60.0, broker_retention_bytes=1000, broker_retention_consumed_s=2.0)
    assert Policy.of(settings) == Policy(retention_s=60.0, retention_bytes=1000, consumed_after_s=2.0)


@pytest.mark.parametrize("name", ["broker_retention_s", "broker_retention_bytes", "broker_retention_consumed_s",
                                  "broker_retention_interval_s"])
def test_retention_settings_must_be_positive(name: str) -> None:
    with pytest.raises(SettingsError, match=name.upper()):
        Settings.build(**{name: 0})
