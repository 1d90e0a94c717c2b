from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import itertools
import json
import math
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from decimal import Decimal
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.ratecard import SAMPLE_PATH, RateCard
from config.settings import DEV_APP_SECRET
from flowtools.simulator import payloads
from flowtools.simulator.cli import main
from flowtools.simulator.config import SimulationConfig
from flowtools.simulator.generator import generate, iter_webhooks
from flowtools.simulator.payloads import Webhook
from flowtools.simulator.runner import run
from flowtools.simulator.truth import Truth
from ingest.identity import bsuid_country, phone_country

START = 1_767_000_000.0
CONFIG = SimulationConfig(messages=3000, seed=7, start_time=START, rate=500.0)
ERROR_CODES = {130429, 130472, 131000, 131026, 131047, 131048, 131049, 131050, 131056, 132068, 132069}
STATUS_ORDER = {"sent": 0, "delivered": 1, "read": 2, "failed": 1}


@cache
def generated(config: SimulationConfig = CONFIG) -> tuple[list[Webhook], Truth]:
    return generate(config)


@dataclass
class Occurrence:
    seq: int
    position: int
    pnid: str
    waba_id: str
    status: dict[str, Any]


def statuses(webhooks: list[Webhook]) -> Iterator[Occurrence]:
    """Every status update in send order, parsed from the raw bytes as a receiver would."""
    for webhook in webhooks:
        body = json.loads(webhook.raw)
        position = 0
        for entry in body["entry"]:
            for change in entry["changes"]:
                for status in change["value"].get("statuses", []):
                    pnid = change["value"]["metadata"]["phone_number_id"]
                    yield Occurrence(webhook.seq, position, pnid, entry["id"], status)
                    position += 1


def completions(webhooks: list[Webhook]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(phone_number_id, message, value) of every inbound message, in send order."""
    for webhook in webhooks:
        for entry in json.loads(webhook.raw)["entry"]:
            for change in entry["changes"]:
                for message in change["value"].get("messages", []):
                    yield change["value"]["metadata"]["phone_number_id"], message, change["value"]


def by_wamid(webhooks: list[Webhook]) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for occ in statuses(webhooks):
        out.setdefault(occ.status["id"], {}).setdefault(occ.status["status"], occ.status)
    return out


def unique_posts(webhooks: list[Webhook]) -> list[Webhook]:
    return [w for w in webhooks if not w.duplicate]


def within(count: int, trials: int, ratio: float) -> bool:
    """``count`` is a plausible draw of Binomial(trials, ratio): within 4 standard deviations."""
    sd = math.sqrt(trials * ratio * (1 - ratio))
    return abs(count - trials * ratio) <= 4 * sd


# --- generation -------------------------------------------------------------------------------------


def test_generate_is_deterministic_for_a_seed() -> None:
    config = replace(CONFIG, messages=500)
    first, first_truth = generate(config)
    second, second_truth = generate(config)
    other, _ = generate(replace(config, seed=8))

    assert [w.raw for w in first] == [w.raw for w in second]
    assert [(w.seq, w.at, w.post_id, w.duplicate) for w in first] == [
        (w.seq, w.at, w.post_id, w.duplicate) for w in second
    ]
    assert first_truth == second_truth
    assert [w.raw for w in first] != [w.raw for w in other]


def test_schedule_is_ordered_and_paced_at_the_rate() -> None:
    webhooks, _ = generated()

    assert [w.seq for w in webhooks] == list(range(len(webhooks)))
    assert [w.at for w in webhooks] == [seq / CONFIG.rate for seq in range(len(webhooks))]


def recount(webhooks: list[Webhook], truth: Truth) -> dict[str, Any]:
    """The truth's counts, recounted independently from the raw bodies (phone numbers, flows from ``truth``)."""
    names = ("sent", "delivered", "read", "failed")
    pairs: dict[tuple[str, str], Occurrence] = {}
    for occ in statuses(webhooks):
        pairs.setdefault((occ.status["id"], occ.status["status"]), occ)
    per_message: dict[str, set[str]] = {}
    by_pnid = {pnid: dict.fromkeys(names, 0) for pnid in truth.phone_numbers}
    for (wamid, status), occ in pairs.items():
        per_message.setdefault(wamid, set()).add(status)
        by_pnid[occ.pnid][status] += 1
    codes = Counter(str(occ.status["errors"][0]["code"]) for (_, s), occ in pairs.items() if s == "failed")
    flow_of = {
        wamid: dict(part.split("=") for part in occ.status["biz_opaque_callback_data"].split(";"))["flow_id"]
        for (wamid, _), occ in pairs.items()
        if occ.status.get("biz_opaque_callback_data", "").startswith("flow_id=")
    }
    replies = {message["id"]: (pnid, message["context"]["id"]) for pnid, message, _ in completions(webhooks)}
    flows: dict[str, dict[str, Any]] = {
        fid: {"name": f["name"], "messages": 0, **dict.fromkeys(names, 0), "completions": 0}
        for fid, f in truth.flows.items()
    }
    for wamid, fid in flow_of.items():
        flows[fid]["messages"] += 1
        for status in per_message[wamid]:
            flows[fid][status] += 1
    for _, flow_wamid in replies.values():
        flows[flow_of[flow_wamid]]["completions"] += 1
    return {
        "messages": len(per_message),
        "flow_messages": len(flow_of),
        "statuses": {s: sum(1 for _, status in pairs if status == s) for s in names},
        "delivered_or_read": sum(1 for s in per_message.values() if s & {"delivered", "read"}),
        "read_without_delivered": sum(1 for s in per_message.values() if "read" in s and "delivered" not in s),
        "by_phone_number_id": by_pnid,
        "failed_by_error_code": dict(sorted(codes.items())),
        "completions": len(replies),
        "completions_by_phone_number_id": {
            pnid: sum(1 for p, _ in replies.values() if p == pnid) for pnid in truth.phone_numbers
        },
        "flows": flows,
        "posts": {
            "unique": len({w.raw for w in webhooks}),
            "sent_including_duplicates": len(webhooks),
            "retries": 0,
            "undelivered": 0,
        },
        "status_updates_sent_including_duplicates": sum(1 for _ in statuses(webhooks)),
        "completions_sent_including_duplicates": sum(1 for _ in completions(webhooks)),
    }


def test_truth_matches_a_recount_of_the_bodies() -> None:
    webhooks, truth = generated()
    counted = recount(webhooks, truth)

    assert {key: truth.to_dict()[key] for key in counted} == counted
    assert truth.messages == CONFIG.messages
    assert (truth.complete, truth.seed, truth.start_time) == (True, 7, START)


@settings(max_examples=30, deadline=None, database=None)
@given(
    seed=st.integers(0, 2**32),
    messages=st.integers(1, 120),
    max_batch=st.integers(1, 60),
    duplicate_ratio=st.floats(0, 0.5),
    status_duplicate_ratio=st.floats(0, 0.5),
    reorder_ratio=st.floats(0, 1),
    flow_ratio=st.floats(0, 1),
    completion_ratio=st.floats(0, 1),
    mixed_post_ratio=st.floats(0, 1),
)
def test_truth_matches_a_recount_for_any_config(**overrides: Any) -> None:
    config = SimulationConfig(start_time=START, rate=100.0, **overrides)
    webhooks, truth = generate(config)
    counted = recount(webhooks, truth)

    assert {key: truth.to_dict()[key] for key in counted} == counted
    assert truth.messages == config.messages
    assert max(w.status_updates + w.completions for w in webhooks) <= config.max_batch


def test_truth_round_trips_through_json() -> None:
    _, truth = generated()

    assert Truth.from_json(truth.to_json()) == truth
    assert json.loads(truth.to_json())["statuses"] == truth.statuses


def test_businesses_have_two_wabas_with_one_or_two_numbers_each() -> None:
    webhooks, truth = generated()
    wabas = Counter(p["waba_id"] for p in truth.phone_numbers.values())
    seen = {(occ.waba_id, occ.pnid) for occ in statuses(webhooks)}

    assert len(wabas) == 2
    assert set(wabas.values()) <= {1, 2}
    assert seen == {(p["waba_id"], pnid) for pnid, p in truth.phone_numbers.items()}
    recipients = Counter(occ.status.get("recipient_user_id") or occ.status["recipient_id"]
                         for occ in statuses(webhooks) if occ.status["status"] == "sent")
    assert max(recipients.values()) > 1  # a user gets several messages


def test_every_status_has_the_fields_the_reference_requires() -> None:
    webhooks, _ = generated()
    for webhook in webhooks:
        body = json.loads(webhook.raw)
        assert body["object"] == "whatsapp_business_account"
        for entry in body["entry"]:
            assert entry["id"].isdigit()
            for change in entry["changes"]:
                assert change["field"] in {"messages", "user_preferences"}
                assert change["value"]["messaging_product"] == "whatsapp"
                metadata = change["value"]["metadata"]
                assert metadata["phone_number_id"].isdigit() and metadata["display_phone_number"].isdigit()
    for occ in statuses(webhooks):
        status = occ.status
        assert status["id"].startswith("wamid.") and len(status["id"]) > 40
        assert status["status"] in {"sent", "delivered", "read", "failed"}
        assert isinstance(status["timestamp"], str) and status["timestamp"].isdigit()
        if status.get("recipient_type") == "group":
            assert status["recipient_id"].startswith("120363") and phone_country(status["recipient_participant_id"])
        else:
            assert phone_country(status.get("recipient_id", "")) or bsuid_country(status["recipient_user_id"])
        if "pricing" in status:
            pricing = status["pricing"]
            assert isinstance(pricing["billable"], bool)
            assert pricing["pricing_model"] == "PMP"
            assert pricing["type"] in {"regular", "free_customer_service", "free_entry_point"}
            assert pricing["category"] in {"marketing", "utility", "authentication", "authentication_international",
                                           "service"}
        if "conversation" in status:
            assert status["conversation"]["origin"]["type"] == status.get("pricing", {}).get(
                "category", status["conversation"]["origin"]["type"]
            )
        if status["status"] == "failed":
            (error,) = status["errors"]
            assert isinstance(error["code"], int) and error["code"] in ERROR_CODES
            assert error["title"] and error["message"] and error["error_data"]["details"]
            assert error["href"].startswith("https://developers.facebook.com/")
            assert "pricing" not in status
        else:
            assert "errors" not in status


def test_pricing_is_on_sent_and_exactly_one_of_delivered_or_read() -> None:
    webhooks, _ = generated()
    for wamid, path in by_wamid(webhooks).items():
        assert "pricing" in path["sent"], wamid
        later = [s for s in ("delivered", "read") if s in path]
        if later:
            assert sum("pricing" in path[s] for s in later) == 1, wamid


def test_flow_messages_carry_flow_id_and_token_in_callback_data() -> None:
    webhooks, truth = generated()
    flow_callbacks = {
        s["biz_opaque_callback_data"]
        for path in by_wamid(webhooks).values()
        for s in path.values()
        if s.get("biz_opaque_callback_data", "").startswith("flow_id=")
    }
    tokens = [cb.split(";tok=")[1] for cb in flow_callbacks]

    assert len(flow_callbacks) == truth.flow_messages
    assert all(cb.split(";")[0].removeprefix("flow_id=") in truth.flows for cb in flow_callbacks)
    assert all(tok.startswith("ft_") for tok in tokens)
    assert len(set(tokens)) == len(tokens)
    for path in by_wamid(webhooks).values():  # echoed on every status of the message
        assert len({s.get("biz_opaque_callback_data") for s in path.values()}) == 1


def test_timestamps_increase_along_each_path_and_stay_near_the_start() -> None:
    webhooks, _ = generated()
    paths = by_wamid(webhooks)
    last_at = webhooks[-1].at
    for wamid, path in paths.items():
        ordered = sorted(path.values(), key=lambda s: STATUS_ORDER[s["status"]])
        times = [int(s["timestamp"]) for s in ordered]
        assert times == sorted(set(times)), wamid
        assert START <= times[0] and times[-1] <= START + last_at + 5
    for _, message, _ in completions(webhooks):
        flow_path = paths[message["context"]["id"]]
        assert isinstance(message["timestamp"], str)
        assert int(message["timestamp"]) > max(int(s["timestamp"]) for s in flow_path.values())


def test_signatures_verify_with_hmac_over_the_raw_body() -> None:
    webhooks, _ = generated()
    for webhook in webhooks[:200]:
        headers = webhook.headers("s3cret")
        expected = hmac.new(b"s3cret", webhook.raw, hashlib.sha256).hexdigest()
        assert headers["Content-Type"] == "application/json"
        assert hmac.compare_digest(headers["X-Hub-Signature-256"], "sha256=" + expected)
        assert json.loads(webhook.raw) == webhook.body


def test_whole_posts_are_resent_later_byte_for_byte_at_the_configured_ratio() -> None:
    webhooks, truth = generated()
    originals = {w.post_id: w for w in webhooks if not w.duplicate}
    duplicates = [w for w in webhooks if w.duplicate]

    assert (
        len(duplicates)
        == truth.generated["duplicated_posts"]
        == truth.posts["sent_including_duplicates"] - len(originals)
    )
    assert within(len(duplicates), len(originals), CONFIG.duplicate_ratio)
    for duplicate in duplicates:
        original = originals[duplicate.post_id]
        assert duplicate.raw == original.raw
        assert duplicate.seq > original.seq


def test_single_statuses_are_repeated_in_later_posts_at_the_configured_ratio() -> None:
    webhooks, truth = generated()
    occurrences = Counter((occ.status["id"], occ.status["status"]) for occ in statuses(unique_posts(webhooks)))
    copies = sum(n - 1 for n in occurrences.values())

    assert copies == truth.generated["duplicated_status_updates"]
    assert within(copies, len(occurrences), CONFIG.status_duplicate_ratio)


def test_statuses_of_some_messages_are_posted_out_of_order_at_the_configured_ratio() -> None:
    webhooks, truth = generated()
    first_seen: dict[str, list[str]] = {}
    seen: set[tuple[str, str]] = set()
    for occ in statuses(webhooks):
        key = (occ.status["id"], occ.status["status"])
        if key not in seen:
            seen.add(key)
            first_seen.setdefault(occ.status["id"], []).append(occ.status["status"])
    reordered = {w: order for w, order in first_seen.items() if order != sorted(order, key=STATUS_ORDER.__getitem__)}
    eligible = sum(1 for order in first_seen.values() if len(order) >= 2)
    swapped_pairs = {tuple(order[:2]) for order in reordered.values()} | {
        tuple(order[1:]) for order in reordered.values() if len(order) == 3
    }

    assert len(reordered) == truth.generated["reordered_messages"]
    assert within(len(reordered), eligible, CONFIG.reorder_ratio)
    assert ("read", "delivered") in swapped_pairs  # read posted before delivered
    assert ("delivered", "sent") in swapped_pairs  # delivered posted before sent


def test_read_without_delivered_occurs() -> None:
    webhooks, truth = generated()
    chat_open = [w for w, path in by_wamid(webhooks).items() if "read" in path and "delivered" not in path]

    assert len(chat_open) == truth.read_without_delivered
    assert within(len(chat_open), CONFIG.messages, CONFIG.read_without_delivered_ratio)


def test_completions_are_nfm_replies_to_delivered_flow_messages() -> None:
    webhooks, truth = generated()
    paths = by_wamid(webhooks)
    replies = list(completions(webhooks))
    distinct = {message["id"] for _, message, _ in replies}

    assert len(distinct) == truth.completions > 0
    for _, message, value in replies:
        assert set(value) == {"messaging_product", "metadata", "contacts", "messages"}
        assert message["id"].startswith("wamid.")
        assert message["type"] == "interactive"
        assert message["interactive"]["type"] == "nfm_reply"
        reply = message["interactive"]["nfm_reply"]
        assert reply["name"] == "flow"
        assert isinstance(reply["response_json"], str)
        response = json.loads(reply["response_json"])
        assert isinstance(response, dict) and len(response) >= 3
        flow_path = paths[message["context"]["id"]]
        assert flow_path.keys() & {"delivered", "read"}
        assert response["flow_token"] == flow_path["sent"]["biz_opaque_callback_data"].split(";tok=")[1]
        assert message["from_user_id"] == flow_path["sent"]["recipient_user_id"]
        (contact,) = value["contacts"]
        assert contact.get("wa_id") == message.get("from") and contact["profile"]["name"]
        assert contact["user_id"] == message["from_user_id"]
        assert contact.get("parent_user_id") == flow_path["sent"].get("recipient_parent_user_id")
        assert message["context"]["from"] == value["metadata"]["display_phone_number"]
    personal = {
        key for _, message, _ in replies for key in json.loads(message["interactive"]["nfm_reply"]["response_json"])
    }
    assert personal & {"email", "full_name", "phone"}


def test_failures_use_real_codes_weighted_towards_131049() -> None:
    webhooks, truth = generated()
    flow_only = {"132068", "132069"}
    paths = by_wamid(webhooks)

    assert max(truth.failed_by_error_code, key=truth.failed_by_error_code.__getitem__) == "131049"
    assert within(truth.statuses["failed"], CONFIG.messages, CONFIG.failure_ratio)
    for path in paths.values():
        if "failed" in path and str(path["failed"]["errors"][0]["code"]) in flow_only:
            assert path["failed"]["biz_opaque_callback_data"].startswith("flow_id=")


def test_posts_batch_several_statuses_and_sometimes_several_numbers() -> None:
    webhooks, _ = generated()
    sizes = [w.status_updates for w in webhooks]
    changes = [sum(len(e["changes"]) for e in w.body["entry"]) for w in webhooks]
    pnid_of: dict[str, set[str]] = {}
    for occ in statuses(webhooks):
        pnid_of.setdefault(occ.status["id"], set()).add(occ.pnid)

    assert max(sizes) <= CONFIG.max_batch
    assert sum(1 for s in sizes if s > 1) > len(sizes) / 2
    assert any(c > 1 for c in changes)
    assert any(len(w.body["entry"]) > 1 for w in webhooks)
    assert all(len(pnids) == 1 for pnids in pnid_of.values())


def test_no_duplicates_or_reordering_when_the_ratios_are_zero() -> None:
    config = replace(CONFIG, messages=500, duplicate_ratio=0.0, status_duplicate_ratio=0.0, reorder_ratio=0.0)
    webhooks, truth = generate(config)
    occurrences = Counter((occ.status["id"], occ.status["status"]) for occ in statuses(webhooks))

    assert truth.generated == {"reordered_messages": 0, "duplicated_posts": 0, "duplicated_status_updates": 0}
    assert not any(w.duplicate for w in webhooks)
    assert set(occurrences.values()) == {1}


def test_endless_schedule_is_lazy() -> None:
    config = replace(CONFIG, messages=0)
    first = list(itertools.islice(iter_webhooks(config), 3000))

    assert len(first) == 3000
    assert [w.raw for w in first[:50]] == [w.raw for w in itertools.islice(iter_webhooks(config), 50)]


@pytest.mark.parametrize(
    "overrides",
    [{"rate": 0.0}, {"messages": -1}, {"duplicate_ratio": 1.5}, {"max_batch": 0}, {"concurrency": 0}],
)
def test_config_rejects_bad_values(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SimulationConfig(**overrides)


def test_generate_refuses_an_endless_run() -> None:
    with pytest.raises(ValueError, match="finite"):
        generate(SimulationConfig(messages=0))


# --- sending ----------------------------------------------------------------------------------------


@dataclass
class Receiver:
    """A tiny threaded HTTP receiver: verifies signatures, answers what ``policy`` says."""

    secret: str
    policy: Callable[[bytes, int], int]  # (body, attempt number for this body) → status code
    attempts: Counter[bytes] = field(default_factory=Counter)
    acked: Counter[bytes] = field(default_factory=Counter)
    answers: Counter[int] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def handle(self, body: bytes, signature: str | None) -> int:
        expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        if not signature or not hmac.compare_digest(signature, expected):
            code = 401
        else:
            with self.lock:
                attempt = self.attempts[body]
                self.attempts[body] += 1
            code = self.policy(body, attempt)
        with self.lock:
            self.answers[code] += 1
            if code == 200:
                self.acked[body] += 1
        return code

    def total(self, counter: Counter[bytes]) -> int:
        """One of the counters' total, read under the lock (the server threads write them)."""
        with self.lock:
            return sum(counter.values())


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the simulator opens up to `concurrency` connections at once

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away (a cancelled run) is expected here


@pytest.fixture
def receiver_factory() -> Iterator[Callable[..., Receiver]]:
    servers: list[QuietServer] = []

    def factory(policy: Callable[[bytes, int], int], *, secret: str = DEV_APP_SECRET) -> Receiver:
        receiver = Receiver(secret=secret, policy=policy)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as two writes

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                code = receiver.handle(body, self.headers.get("X-Hub-Signature-256"))
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        server = QuietServer(("127.0.0.1", 0), Handler)
        servers.append(server)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        receiver.url = f"http://127.0.0.1:{server.server_address[1]}/webhooks/whatsapp"
        return receiver

    yield factory
    for server in servers:
        server.shutdown()
        server.server_close()


async def poll_until(condition: Callable[[], bool], *, deadline_s: float = 10.0, interval_s: float = 0.01) -> None:
    """Return as soon as ``condition()`` holds; fail the test if it does not within ``deadline_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    while not condition():
        if loop.time() > deadline:
            pytest.fail(f"condition not met within {deadline_s} s")
        await asyncio.sleep(interval_s)


def fail_first_attempt_of_some(body: bytes, attempt: int) -> int:
    return 503 if attempt == 0 and hashlib.sha256(body).digest()[0] % 3 == 0 else 200


def test_run_retries_until_every_post_is_acked_and_counted_once(
    receiver_factory: Callable[..., Receiver],
) -> None:
    receiver = receiver_factory(fail_first_attempt_of_some)
    config = replace(CONFIG, messages=400, rate=2000.0, retry_initial_s=0.01)
    webhooks, expected = generate(config)
    stream = io.StringIO()

    result = asyncio.run(run(receiver.url, config=config, app_secret=DEV_APP_SECRET, progress_stream=stream))

    rejected_first = {w.raw for w in webhooks if hashlib.sha256(w.raw).digest()[0] % 3 == 0}
    assert rejected_first  # the policy did bite
    assert receiver.answers == {503: len(rejected_first), 200: len(webhooks)}
    assert receiver.acked == Counter(w.raw for w in webhooks)  # every POST, re-sends included, once
    assert result.retries == len(rejected_first)
    assert result.answers == {"503": len(rejected_first)}
    assert (result.acked, result.failures, result.abandoned, result.stopped) == (len(webhooks), 0, 0, False)
    assert result.status_updates_acked == expected.status_updates_sent_including_duplicates
    assert len(result.latencies) == len(webhooks)
    assert result.truth is not None
    assert result.truth.to_dict() == {**expected.to_dict(), "posts": {**expected.posts, "retries": result.retries}}
    assert f"posts {len(webhooks):,} acked" in stream.getvalue()


def test_run_counts_posts_it_could_not_deliver(receiver_factory: Callable[..., Receiver]) -> None:
    receiver = receiver_factory(lambda body, attempt: 503)
    # A deadline far beyond one round trip, even on a loaded CI machine: every POST is retried before it fails
    # (0.1 s once let a slow first answer leave no time for a retry).
    config = replace(CONFIG, messages=30, rate=2000.0, deadline_s=1.0, retry_initial_s=0.02)
    webhooks, _ = generate(config)

    result = asyncio.run(run(receiver.url, config=config, app_secret=DEV_APP_SECRET, progress=False))

    assert result.acked == 0
    assert result.failures == len(webhooks)
    assert result.retries > 0
    assert result.truth is not None
    assert result.truth.complete is False
    assert result.truth.messages == 0
    assert result.truth.statuses == {"sent": 0, "delivered": 0, "read": 0, "failed": 0}
    assert result.truth.posts["undelivered"] == len(webhooks)


def test_run_retries_connection_errors_until_the_deadline() -> None:
    with socket.socket() as sock:  # a port the OS just handed out, closed again: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = replace(CONFIG, messages=5, rate=2000.0, deadline_s=0.1, retry_initial_s=0.02)
    webhooks, _ = generate(config)

    result = asyncio.run(
        run(f"http://127.0.0.1:{port}/webhooks/whatsapp", config=config, app_secret="x", progress=False)
    )

    assert result.failures == len(webhooks)
    assert result.acked == 0
    assert result.retries >= len(webhooks)
    assert set(result.answers) == {"ConnectError"}


@pytest.mark.parametrize("url", ["127.0.0.1:8000/webhooks", "ftp://example.com/x", "http://"])
def test_run_rejects_a_url_it_cannot_post_to(url: str) -> None:
    with pytest.raises(ValueError, match="invalid URL"):
        asyncio.run(run(url, config=CONFIG, app_secret="x", progress=False))


def test_endless_run_stops_cleanly_when_asked(receiver_factory: Callable[..., Receiver]) -> None:
    receiver = receiver_factory(lambda body, attempt: 200)
    config = replace(CONFIG, messages=0, rate=400.0)

    async def scenario() -> Any:
        stop = asyncio.Event()
        task = asyncio.create_task(
            run(receiver.url, config=config, app_secret=DEV_APP_SECRET, progress=False, stop=stop)
        )
        await poll_until(lambda: task.done() or receiver.total(receiver.acked) > 50)  # well under way
        stop.set()
        return await task

    result = asyncio.run(scenario())

    assert result.stopped is True
    assert result.truth is None
    assert result.acked == sum(receiver.acked.values()) > 50
    assert (result.failures, result.abandoned) == (0, 0)


def test_cancelling_a_run_abandons_what_is_in_flight(receiver_factory: Callable[..., Receiver]) -> None:
    release = threading.Event()
    receiver = receiver_factory(lambda body, attempt: 200 if release.wait(5) else 500)
    config = replace(CONFIG, messages=0, rate=1000.0, concurrency=4)

    async def scenario() -> None:
        task = asyncio.create_task(run(receiver.url, config=config, app_secret=DEV_APP_SECRET, progress=False))
        # Until every slot is held by a POST the receiver has not answered.
        await poll_until(lambda: task.done() or receiver.total(receiver.attempts) >= config.concurrency)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    try:
        asyncio.run(scenario())
        assert sum(receiver.attempts.values()) == 4
        assert receiver.answers == {}
    finally:
        release.set()


def test_main_sends_signed_posts_and_writes_the_truth(
    receiver_factory: Callable[..., Receiver],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    secret = "test-secret-value"
    monkeypatch.setenv("FLOWSCOPE_APP_SECRET", secret)
    receiver = receiver_factory(lambda body, attempt: 200, secret=secret)
    truth_file = tmp_path / "truth.json"

    code = main(
        [
            "--url",
            receiver.url,
            "--messages",
            "150",
            "--rate",
            "2000",
            "--seed",
            "3",
            "--start-time",
            str(START),
            "--truth",
            str(truth_file),
            "--no-progress",
        ]
    )

    _, expected = generate(SimulationConfig(messages=150, rate=2000.0, seed=3, start_time=START),
                           rate_card=RateCard.from_file(SAMPLE_PATH))
    assert code == 0
    assert receiver.answers == {200: expected.posts["sent_including_duplicates"]}
    assert Truth.from_json(truth_file.read_text()) == expected  # priced by the sample card, a 48 h window
    assert expected.spend is not None and expected.opt_outs["window_s"] == 48 * 3600
    assert secret not in capsys.readouterr().err


def test_main_prices_the_truth_by_the_rate_card_and_window_given(
    receiver_factory: Callable[..., Receiver], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWSCOPE_APP_SECRET", DEV_APP_SECRET)
    receiver = receiver_factory(lambda body, attempt: 200)
    card = tmp_path / "card.csv"
    card.write_text("market,category,pricing_type,currency,price,effective_from\n" + "".join(
        f"*,{c},*,EUR,1,2020-01-01\n" for c in ("marketing", "utility", "authentication",
                                                 "authentication_international", "service")))
    out = tmp_path / "truth.json"
    argv = ["--url", receiver.url, "--messages", "120", "--rate", "2000", "--start-time", str(START), "--truth",
            str(out), "--no-progress"]

    assert main([*argv, "--rate-card", str(card), "--opt-out-window-hours", "12"]) == 0
    truth = Truth.from_json(out.read_text())
    assert truth.opt_outs["window_s"] == 12 * 3600
    assert truth.spend is not None and truth.spend_by_country is not None
    assert Decimal(truth.spend) == truth.billable_messages > 0  # 1 a charged message, free ones 0
    assert sum(Decimal(v) for v in truth.spend_by_country.values()) == truth.billable_messages
    assert main([*argv, "--rate-card", str(tmp_path / "missing.csv")]) == 2
    assert main([*argv, "--opt-out-window-hours", "0"]) == 2
    marketing_only = tmp_path / "marketing.csv"
    marketing_only.write_text("market,category,pricing_type,currency,price,effective_from\n"
                              "*,marketing,*,EUR,1,2020-01-01\n")
    out.unlink()
    assert main([*argv, "--rate-card", str(marketing_only)]) == 2  # no rate for a delivered utility message
    assert not out.exists()


def test_main_exits_non_zero_when_posts_stay_undelivered(
    receiver_factory: Callable[..., Receiver],
    tmp_path: Path,
) -> None:
    receiver = receiver_factory(lambda body, attempt: 503)
    truth_file = tmp_path / "truth.json"

    code = main(
        [
            "--url",
            receiver.url,
            "--messages",
            "10",
            "--rate",
            "2000",
            "--deadline",
            "0.1",
            "--truth",
            str(truth_file),
            "--no-progress",
        ]
    )

    truth = Truth.from_json(truth_file.read_text())
    _, expected = generate(SimulationConfig(messages=10, rate=2000.0, start_time=START))
    posts = expected.posts["sent_including_duplicates"]
    assert code == 1
    assert receiver.answers == {503: posts}  # one attempt each: the first backoff already passes the deadline
    assert truth.complete is False
    assert truth.posts["undelivered"] == posts
    assert truth.messages == 0


def test_main_refuses_truth_for_an_endless_run(tmp_path: Path) -> None:
    assert main(["--messages", "0", "--truth", str(tmp_path / "t.json"), "--no-progress"]) == 2


def test_probe_and_sentinel_bodies_come_from_the_one_builder_in_meta_shape() -> None:
    status = payloads.status(wamid="wamid.x", status="sent", timestamp=1_767_000_000, recipient_id="1")
    body = json.loads(payloads.status_post(waba_id="chaos", phone_number_id="900000000000000", statuses=[status]))

    assert body == {
        "object": "whatsapp_business_account",
        "entry": [{"id": "chaos", "changes": [{"value": {
            "messaging_product": "whatsapp",
            "metadata": {"phone_number_id": "900000000000000"},
            "statuses": [{"id": "wamid.x", "status": "sent", "timestamp": "1767000000", "recipient_id": "1"}],
        }, "field": "messages"}]}],
    }
