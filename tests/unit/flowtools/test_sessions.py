"""The Flow session simulator (``flowscope simulate-flows``): Meta's 2026 identity mix, per-message prices,
marketing opt-outs and value-level errors, every body parsed by the real receiver parser, and the exact truth."""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from config.ratecard import SAMPLE_PATH, RateCard
from contract.events import FlowCompletion, IdentityLink, MessageStatus, UserPreference, WebhookError
from contract.privacy import Pseudonymiser
from flowtools.simulator import users
from flowtools.simulator.cli import flows_main
from flowtools.simulator.flows import ALLOWLIST
from flowtools.simulator.sessions import OPT_OUT_MIN_DELAY_S, Session, generate_sessions, requests, truth
from ingest.identity import bsuid_country, phone_country
from ingest.parsing import WebhookParser
from tests.unit.flowtools.pricing import sample_rate

NOW_MS = 1_767_200_000_000
HOUR_S = 3600
WINDOW_S = 6 * HOUR_S
HASH = Pseudonymiser("test-key")
CARD = RateCard.from_file(SAMPLE_PATH)


@cache
def run(n: int = 1500, seed: int = 11, **options: Any) -> tuple[list[Session], list[tuple[str, bytes]]]:
    """``n`` sessions that started three days before NOW_MS (so some opt-outs fall outside a 6 h window), with
    more opt-outs and errors than by default, and their POSTs."""
    sessions = generate_sessions(n, seed=seed, start_ms=NOW_MS - 72 * HOUR_S * 1000, spacing_ms=60_000,
                                 now_ms=NOW_MS, opt_out_window_s=WINDOW_S, **({"opt_out_ratio": 0.3,
                                                                                "webhook_error_ratio": 0.02} | options))
    return sessions, requests(sessions, seed=seed)


def webhook_bodies(posts: list[tuple[str, bytes]]) -> Iterator[dict[str, Any]]:
    for kind, body in posts:
        if kind == "webhook":
            yield json.loads(body)


def changes(posts: list[tuple[str, bytes]]) -> Iterator[dict[str, Any]]:
    for body in webhook_bodies(posts):
        for entry in body["entry"]:
            yield from entry["changes"]


def statuses_by_wamid(posts: list[tuple[str, bytes]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for change in changes(posts):
        for status in change["value"].get("statuses", []):
            out.setdefault(status["id"], []).append(status)
    return out


def parsed(posts: list[tuple[str, bytes]]) -> tuple[list[Any], list[Any]]:
    """Every event (deduplicated by event id, as the warehouse keeps them) and every rejected part."""
    parser = WebhookParser(pseudonymise=HASH, form_fields_allowlist=ALLOWLIST)
    events: dict[str, Any] = {}
    rejected = []
    for kind, body in posts:
        if kind == "webhook":
            result = parser.parse(body, received_at_ms=NOW_MS)
            rejected += result.rejected
            events |= {e.event_id: e for e in result.events}
    return list(events.values()), rejected


def test_every_body_parses_with_the_receivers_parser_and_nothing_is_rejected() -> None:
    sessions, posts = run()
    events, rejected = parsed(posts)
    assert rejected == []
    kinds = Counter(type(e).__name__ for e in events)
    assert kinds["MessageStatus"] == sum(len(s.statuses) for s in sessions)
    assert kinds["FlowCompletion"] == sum(s.completed_s is not None for s in sessions)
    assert kinds["UserPreference"] == len({(s.user.number, t, v) for s in sessions for t, v in s.preferences})
    assert kinds["IdentityLink"] > 0
    errors = Counter(str(e.code) for e in events if isinstance(e, WebhookError))
    assert errors == truth(sessions, timeout_s=1800, now_s=NOW_MS / 1000)["webhook_errors"]
    assert sum(errors.values()) > 10
    assert {e.field for e in events if isinstance(e, WebhookError)} == {"messages"}


def test_every_event_names_the_users_country_and_the_links_make_each_user_one_person() -> None:
    sessions, posts = run()
    events, _ = parsed(posts)
    by_wamid = {s.wamid: s for s in sessions}
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    def union(*hashes: str) -> None:
        present = [h for h in hashes if h]
        for h in present[1:]:
            parent[find(h)] = find(present[0])

    person_of_user: dict[int, set[str]] = {}
    for e in events:
        if isinstance(e, MessageStatus):
            assert e.country == by_wamid[e.wamid].user.country
            union(e.recipient_hash, e.recipient_user_id_hash, e.recipient_parent_user_id_hash)
            person_of_user.setdefault(by_wamid[e.wamid].user.number, set()).add(e.person_hash)
        elif isinstance(e, FlowCompletion):
            assert e.country == by_wamid[e.flow_wamid].user.country
            union(e.user_hash, e.user_id_hash, e.parent_user_id_hash)
        elif isinstance(e, UserPreference):
            union(e.phone_hash, e.user_id_hash, e.parent_user_id_hash)
        elif isinstance(e, IdentityLink):
            union(e.from_hash, e.to_hash)
    people = {number: {find(h) for h in hashes} for number, hashes in person_of_user.items()}
    assert all(len(roots) == 1 for roots in people.values())
    assert len({root for roots in people.values() for root in roots}) == truth(
        sessions, timeout_s=1800, now_s=NOW_MS / 1000)["persons"]


def test_a_third_of_users_never_show_a_number_and_the_rest_as_the_reference_says() -> None:
    pool = users.pool(random.Random(1), 300, taken=set())
    assert Counter(u.shows_phone for u in pool) == {users.NEVER: 100, users.SOMETIMES: 45, users.ALWAYS: 155}
    sessions, posts = run()
    by_wamid = statuses_by_wamid(posts)
    shown: dict[str, set[bool]] = {}
    for s in sessions:
        for status in by_wamid[s.wamid]:
            if status["status"] == "failed":
                assert "contacts" not in status and "pricing" not in status
                assert ("recipient_id" in status) != ("recipient_user_id" in status)
            else:
                (contact,) = status["contacts"]
                assert contact["user_id"] == status["recipient_user_id"]
                assert contact.get("wa_id") == status.get("recipient_id")
                assert ("parent_user_id" in contact) == bool(s.user.handles[0].parent_user_id)
            shown.setdefault(s.user.shows_phone, set()).add("recipient_id" in status)
    assert shown == {users.NEVER: {False}, users.SOMETIMES: {False, True}, users.ALWAYS: {True}}
    for change in changes(posts):
        for message in change["value"].get("messages", []):
            if message["type"] == "interactive":
                assert "from_user_id" in message
                contact = next(c for c in change["value"]["contacts"] if c["user_id"] == message["from_user_id"])
                assert contact.get("wa_id") == message.get("from")


def test_numbers_and_bsuids_belong_to_the_users_country() -> None:
    pool = users.pool(random.Random(2), 600, taken=set())
    assert {u.country for u in pool} == set(users.COUNTRIES)
    assert 0.05 < sum(bool(u.handles[0].parent_user_id) for u in pool) / len(pool) < 0.15
    for user in pool:
        handle = user.handles[0]
        assert bsuid_country(handle.user_id) == user.country
        assert len(handle.user_id) == 3 + 16 and handle.user_id[3:].isdigit()
        if handle.parent_user_id:
            assert handle.parent_user_id.startswith(f"{user.country}.ENT.") and len(handle.parent_user_id) == 27
        assert (handle.phone == "") == (user.shows_phone == users.NEVER)
        if handle.phone:
            assert phone_country(handle.phone) == user.country
            assert handle.phone.startswith(users.PHONE_PLANS[user.country][0])


def test_identity_changes_fall_between_two_statuses_and_later_payloads_use_the_new_ids() -> None:
    sessions, posts = run()
    changed = {s.user.number: s.user for s in sessions if s.user.changed_at_s is not None}
    assert changed
    systems = [m for c in changes(posts) for m in c["value"].get("messages", []) if m["type"] == "system"]
    assert len(systems) == len(changed)
    assert all("contacts" not in c["value"] for c in changes(posts)
               if any(m["type"] == "system" for m in c["value"].get("messages", [])))
    by_wamid = statuses_by_wamid(posts)
    for user in changed.values():
        old, new = user.handles
        assert user.changed_at_s is not None and new.user_id != old.user_id
        assert new.phone != old.phone if old.phone else new.phone == ""
        assert new.parent_user_id == old.parent_user_id
        times = sorted({t for s in sessions if s.user is user for t in s.statuses.values()})
        assert any(a < user.changed_at_s < b for a, b in zip(times, times[1:], strict=False))
        for s in (s for s in sessions if s.user is user):
            for status in by_wamid[s.wamid]:
                handle = new if int(status["timestamp"]) >= user.changed_at_s else old
                assert status.get("recipient_user_id", handle.user_id) == handle.user_id
                assert status.get("recipient_id", handle.phone) == handle.phone
    kinds = Counter(m["system"]["type"] for m in systems)
    assert set(kinds) <= {"user_changed_number", "user_changed_user_id"}


def test_every_flow_message_status_but_failed_carries_its_per_message_price() -> None:
    sessions, posts = run()
    by_wamid = statuses_by_wamid(posts)
    mix = Counter((s.category, s.pricing_type) for s in sessions)
    assert set(mix) == {("marketing", "regular"), ("utility", "regular"), ("service", "free_customer_service"),
                        ("marketing", "free_entry_point")}
    assert 0.45 < mix["marketing", "regular"] / len(sessions) < 0.55
    for s in sessions:
        for status in by_wamid[s.wamid]:
            if status["status"] != "failed":
                assert status["pricing"] == {"billable": s.pricing_type == "regular", "pricing_model": "PMP",
                                             "type": s.pricing_type, "category": s.category}


def test_opt_outs_are_emitted_in_the_past_and_some_fall_outside_the_window() -> None:
    sessions, posts = run()
    stops = [(s, t) for s in sessions for t, v in s.preferences if v == "stop"]
    resumes = [(s, t) for s in sessions for t, v in s.preferences if v == "resume"]
    assert stops and resumes and len(resumes) < len(stops)
    assert all(s.statuses["sent"] + OPT_OUT_MIN_DELAY_S <= t <= NOW_MS // 1000 - 1 for s, t in stops + resumes)
    inside = [t < s.statuses["sent"] + WINDOW_S for s, t in stops]
    assert any(inside) and not all(inside)
    emitted = [p for c in changes(posts) if c["field"] == "user_preferences" for p in c["value"]["user_preferences"]]
    assert len({json.dumps(p, sort_keys=True) for p in emitted}) == len(stops) + len(resumes)  # some POSTs twice
    assert {p["category"] for p in emitted} == {"marketing_messages"}
    assert all("user_id" in p for p in emitted)


def test_truth_invariants() -> None:
    sessions, _ = run()
    figures = truth(sessions, timeout_s=1800, now_s=NOW_MS / 1000, rate_card=CARD, opt_out_window_s=WINDOW_S)
    assert 0 < figures["persons"] <= len(sessions)
    assert figures["opt_out_window_s"] == WINDOW_S
    assert sum(Decimal(v) for v in figures["spend_by_country"].values()) == sum(
        Decimal(v["spend"]) for f in figures["flows"].values() for v in f["versions"].values())
    for flow in figures["flows"].values():
        for version in flow["versions"].values():
            for target in (version, *version["by_campaign"].values()):
                funnel = target.get("funnel", target)  # a version's funnel is its own key, a campaign's inline
                assert 0 <= target["opt_outs"] <= target["persons"] <= funnel["sent"]
                assert target["billable_messages"] <= funnel["delivered"]
                ttc = target["time_to_complete"]
                assert ttc["completions"] == funnel["completed"]
                assert 0 < ttc["p50_ms"] <= ttc["p90_ms"]
            assert version["persons"] <= sum(c["persons"] for c in version["by_campaign"].values())
    assert any(v["opt_outs"] for f in figures["flows"].values() for v in f["versions"].values())
    without = truth(sessions, timeout_s=1800, now_s=NOW_MS / 1000)
    assert "spend_by_country" not in without
    assert all("spend" not in v for f in without["flows"].values() for v in f["versions"].values())


def test_opt_outs_and_time_to_complete_follow_their_definitions() -> None:
    sessions, _ = run()
    figures = truth(sessions, timeout_s=1800, now_s=NOW_MS / 1000, opt_out_window_s=WINDOW_S)
    stops = [(s.user.number, t) for s in sessions for t, v in s.preferences if v == "stop"]
    for flow_id, flow in figures["flows"].items():
        for name, version in flow["versions"].items():
            mine = [s for s in sessions if (s.flow.flow_id, s.version) == (flow_id, name)]
            assert version["opt_outs"] == len({s.user.number for s in mine for who, t in stops if who == s.user.number
                                               and s.statuses["sent"] <= t < s.statuses["sent"] + WINDOW_S})
            lengths = sorted(s.completed_s * 1000 - s.sent_ms for s in mine if s.completed_s is not None)
            assert version["time_to_complete"]["p50_ms"] == lengths[len(lengths) // 2]
            assert version["time_to_complete"]["p90_ms"] == lengths[int(0.9 * len(lengths))]
    wider = truth(sessions, timeout_s=1800, now_s=NOW_MS / 1000, opt_out_window_s=10 * 24 * HOUR_S)
    assert sum(v["opt_outs"] for f in wider["flows"].values() for v in f["versions"].values()) > sum(
        v["opt_outs"] for f in figures["flows"].values() for v in f["versions"].values())


def test_spend_equals_a_recount_from_the_bodies_priced_by_hand() -> None:
    sessions = generate_sessions(40, seed=5, start_ms=NOW_MS - HOUR_S * 1000, now_ms=NOW_MS)
    posts = requests(sessions, seed=5)
    spend: dict[str, Decimal] = {}
    by_country: dict[str, Decimal] = {}
    billable: Counter[str] = Counter()
    for wamid, statuses in statuses_by_wamid(posts).items():
        kinds = {s["status"]: s for s in statuses}
        if "delivered" not in kinds and "read" not in kinds:
            continue
        pricing = kinds["sent"]["pricing"]
        country = bsuid_country(next(s["recipient_user_id"] for s in statuses if "recipient_user_id" in s))
        day = datetime.fromtimestamp(int(kinds["sent"]["timestamp"]), UTC).date()
        price = sample_rate(country, pricing["category"], pricing["type"], day)
        flow = next(s for s in sessions if s.wamid == wamid)
        key = f"{flow.flow.flow_id}/{flow.version}"
        spend[key] = spend.get(key, Decimal(0)) + price
        by_country[country] = by_country.get(country, Decimal(0)) + price
        billable[key] += pricing["billable"]
    figures = truth(sessions, timeout_s=1800, now_s=NOW_MS / 1000, rate_card=CARD)
    got = {f"{flow_id}/{name}": Decimal(v["spend"]) for flow_id, f in figures["flows"].items()
           for name, v in f["versions"].items()}
    assert got == {key: spend.get(key, Decimal(0)) for key in got}
    assert {k: Decimal(v) for k, v in figures["spend_by_country"].items()} == by_country
    assert {f"{flow_id}/{name}": v["billable_messages"] for flow_id, f in figures["flows"].items()
            for name, v in f["versions"].items()} == {key: billable[key] for key in got}
    assert sum(by_country.values()) > 0


def test_a_run_is_deterministic_for_a_seed() -> None:
    def once(seed: int) -> tuple[list[tuple[str, bytes]], dict[str, Any]]:
        sessions = generate_sessions(300, seed=seed, start_ms=NOW_MS - 7200_000, now_ms=NOW_MS,
                                     webhook_error_ratio=0.05)
        return requests(sessions, seed=seed), truth(sessions, timeout_s=1800, now_s=NOW_MS / 1000, rate_card=CARD)

    assert once(9) == once(9)
    assert once(9) != once(10)


def test_value_level_errors_are_about_one_post_in_500_by_default() -> None:
    sessions, posts = run(6000, 4, opt_out_ratio=0.05, webhook_error_ratio=1 / 1850)
    errors = sum(1 for c in changes(posts) if "errors" in c["value"])
    assert all("statuses" not in c["value"] and "messages" not in c["value"] for c in changes(posts)
               if "errors" in c["value"])
    assert 1 / 1500 < errors / len(posts) < 1 / 200


class _Ok(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture
def receiver_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_simulate_flows_prices_its_truth_by_the_rate_card_and_window_given(
        receiver_url: str, tmp_path: Path) -> None:
    card = tmp_path / "card.csv"
    card.write_text("market,category,pricing_type,currency,price,effective_from\n"
                    "*,marketing,*,EUR,1,2020-01-01\n*,utility,*,EUR,1,2020-01-01\n*,service,*,EUR,0,2020-01-01\n")
    out = tmp_path / "truth.json"
    argv = ["--url", receiver_url, "--sessions", "60", "--seed", "3", "--truth", str(out)]
    assert flows_main([*argv, "--rate-card", str(card), "--opt-out-window-hours", "12"]) == 0
    figures = json.loads(out.read_text())
    assert figures["opt_out_window_s"] == 12 * HOUR_S
    billable = sum(v["billable_messages"] for f in figures["flows"].values() for v in f["versions"].values())
    assert sum(Decimal(v) for v in figures["spend_by_country"].values()) == billable
    assert flows_main([*argv, "--rate-card", str(tmp_path / "missing.csv")]) == 2
    assert flows_main(argv) == 0
    assert json.loads(out.read_text())["opt_out_window_s"] == 48 * HOUR_S
