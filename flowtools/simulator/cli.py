"""The ``flowscope simulate`` and ``flowscope simulate-flows`` commands: arguments, signals, exit codes."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from config.exceptions import RateCardError, SettingsError
from config.ratecard import SAMPLE_PATH, RateCard
from config.settings import Settings
from flowtools.simulator.config import DEFAULT_URL, SimulationConfig
from flowtools.simulator.fixtures import OPT_OUT_WINDOW_S
from flowtools.simulator.flows import write_flow_jsons
from flowtools.simulator.runner import SimulationResult, run
from flowtools.simulator.sender import check_url
from flowtools.simulator.sessions import generate_sessions, live_batches, requests, send, truth
from ingest.paths import EVENTS_PATH, WEBHOOK_PATH

FLOWS_DESCRIPTION = """Simulated WhatsApp Flow sessions: three flows (one with conditional branches), two versions each,
written as Meta Flow JSON, walked by simulated users, sent as the real sources would send them —
``flow_sent`` and screen events to ``POST /events``, statuses and ``nfm_reply`` completions as signed
webhooks — with duplicates and shuffled order, plus the exact truth of funnels and screens.

Users are named as Meta names them since 2026 (BSUIDs, parent BSUIDs, a third without a phone number,
number changes), Flow messages carry per-message pricing, some users opt out of marketing messages
(``user_preferences``) and a few webhooks carry value-level errors; the truth counts persons, opt-outs
within ``--opt-out-window-hours`` of a send, spend by ``--rate-card``, completion times and errors.

Truth follows the definitions of ``warehouse/flows.py`` exactly (sessions = flow tokens; every
session of a finite run is older than the abandonment timeout when ``offset_s`` ≥ 1800).
"""


# --- flowscope simulate ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowscope simulate",
        description="Send simulated, signed WhatsApp Cloud API webhooks and write their ground truth. "
        "Recipients are named as Meta names them since 2026 (BSUIDs, parent BSUIDs, a third without a phone "
        "number, a few groups), every pricing type appears, some Flow recipients opt out of marketing messages "
        "and a few POSTs carry value-level errors; the truth counts persons, messages by country, billable and "
        "free messages, spend by --rate-card, opt-outs within --opt-out-window-hours and errors by code. "
        "The app secret is read from FLOWSCOPE_APP_SECRET.",
    )
    defaults = SimulationConfig()
    parser.add_argument("--url", default=DEFAULT_URL, help="receiver URL (default: %(default)s)")
    parser.add_argument("--rate", type=float, default=defaults.rate, help="POSTs per second (default: %(default)s)")
    parser.add_argument(
        "--messages",
        type=int,
        default=defaults.messages,
        help="outbound messages to simulate; 0 = until stopped (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed (default: %(default)s)")
    parser.add_argument(
        "--duplicates",
        type=float,
        default=defaults.duplicate_ratio,
        help="share of POSTs re-sent later (default: %(default)s)",
    )
    parser.add_argument(
        "--status-duplicates",
        type=float,
        default=defaults.status_duplicate_ratio,
        help="share of status updates repeated in a later POST (default: %(default)s)",
    )
    parser.add_argument(
        "--reorder",
        type=float,
        default=defaults.reorder_ratio,
        help="share of messages with two statuses posted out of order (default: %(default)s)",
    )
    parser.add_argument(
        "--flow-ratio", type=float, default=defaults.flow_ratio, help="share of Flow messages (default: %(default)s)"
    )
    parser.add_argument(
        "--completion-ratio",
        type=float,
        default=defaults.completion_ratio,
        help="share of delivered Flow messages completed (default: %(default)s)",
    )
    parser.add_argument(
        "--failure-ratio",
        type=float,
        default=defaults.failure_ratio,
        help="share of messages that fail (default: %(default)s)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=defaults.concurrency, help="POSTs in flight at most (default: %(default)s)"
    )
    parser.add_argument(
        "--deadline",
        type=float,
        default=defaults.deadline_s,
        help="seconds one POST is retried before it counts as undelivered (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout", type=float, default=defaults.timeout_s, help="seconds one attempt may take (default: %(default)s)"
    )
    parser.add_argument(
        "--start-time", type=float, default=None, help="Unix seconds of the first timestamp (default: now)"
    )
    parser.add_argument(
        "--live-clock",
        action="store_true",
        help="timestamps from the real clock even in a finite run (bytes not reproducible)",
    )
    parser.add_argument("--truth", type=Path, default=None, help="write the ground truth JSON here")
    parser.add_argument(
        "--rate-card",
        type=Path,
        default=SAMPLE_PATH,
        help="the rate card the truth's spend is priced by (default: the sample card)",
    )
    parser.add_argument(
        "--opt-out-window-hours",
        type=float,
        default=OPT_OUT_WINDOW_S / 3600,
        help="an opt-out counts for the Flow messages sent this long before it (default: %(default)s)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress output")
    return parser


async def _run_until_signalled(url: str, config: SimulationConfig, app_secret: str, progress: bool) -> SimulationResult:
    """``run`` with SIGINT/SIGTERM handled: the first stops cleanly, a second abandons what is in flight."""
    loop = asyncio.get_running_loop()
    stop, abort = asyncio.Event(), asyncio.Event()
    installed: list[signal.Signals] = []

    def on_signal() -> None:
        if stop.is_set():
            abort.set()
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_signal)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - not the main thread / Windows
            pass
    try:
        return await run(url, config=config, app_secret=app_secret, progress=progress, stop=stop, abort=abort)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def main(argv: list[str] | None = None) -> int:
    """``flowscope simulate``: the app secret comes from ``FLOWSCOPE_APP_SECRET`` (never printed).

    Exit status: 0 when every POST was acknowledged (or an endless run was stopped), 1 when a POST could
    not be delivered before its ``--deadline``, 130 when a finite run was interrupted, 2 on bad input (a rate
    card with no rate for a delivered message included: no truth is written then).
    """
    args = build_parser().parse_args(argv)
    window_s = round(args.opt_out_window_hours * 3600)
    try:
        app_secret = Settings.from_env().app_secret
        check_url(args.url)
        if window_s <= 0:
            raise ValueError(f"--opt-out-window-hours must be > 0, got {args.opt_out_window_hours}")
        rate_card = RateCard.from_file(args.rate_card) if args.truth is not None else None
        config = SimulationConfig(
            messages=args.messages,
            rate=args.rate,
            seed=args.seed,
            duplicate_ratio=args.duplicates,
            status_duplicate_ratio=args.status_duplicates,
            reorder_ratio=args.reorder,
            flow_ratio=args.flow_ratio,
            completion_ratio=args.completion_ratio,
            failure_ratio=args.failure_ratio,
            concurrency=args.concurrency,
            deadline_s=args.deadline,
            timeout_s=args.timeout,
            start_time=args.start_time,
            live_clock=args.live_clock,
        )
    except (SettingsError, RateCardError, ValueError) as exc:
        sys.stderr.write(f"flowscope simulate: error: {exc}\n")
        return 2
    if args.truth is not None and config.messages == 0:
        sys.stderr.write("flowscope simulate: error: --truth needs a finite run (--messages > 0)\n")
        return 2
    try:
        result = asyncio.run(_run_until_signalled(args.url, config, app_secret, not args.no_progress))
    except KeyboardInterrupt:  # pragma: no cover - no signal handler could be installed
        return 130
    if result.truth is not None and args.truth is not None:
        try:
            truth = result.truth.evaluated(rate_card=rate_card, opt_out_window_s=window_s)
        except RateCardError as exc:
            sys.stderr.write(f"flowscope simulate: error: {exc}\n")
            return 2
        args.truth.write_text(truth.to_json() + "\n")
    quantiles = result.latency_quantiles()
    latency = " ".join(f"{k} {v * 1000:.1f} ms" for k, v in quantiles.items()) or "none"
    answers = ", ".join(f"{k}: {v}" for k, v in result.answers.items()) or "none"
    sys.stderr.write(
        f"simulate: {result.acked:,} POSTs acknowledged in {result.elapsed_s:.1f} s, "
        f"{result.retries:,} retries, {result.failures:,} undelivered, {result.abandoned:,} abandoned; "
        f"latency {latency}; failed attempts: {answers}\n"
    )
    if result.failures:
        sys.stderr.write(f"flowscope simulate: {result.failures} POSTs were not delivered before the deadline\n")
        return 1
    if result.stopped and config.messages > 0:
        return 130
    return 0


# --- flowscope simulate-flows ----------------------------------------------------------------------


def flows_main(argv: list[str] | None = None) -> int:
    """``flowscope simulate-flows``: 0 when every POST landed, 1 when some never did, 130 when interrupted."""
    parser = argparse.ArgumentParser(prog="flowscope simulate-flows", description=FLOWS_DESCRIPTION)
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="receiver base URL")
    parser.add_argument("--sessions", type=int, default=2000, help="0 = endless, live sessions")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--offset", type=float, default=7200, help="finite runs: sessions start this long ago (s)")
    parser.add_argument("--truth", type=Path)
    parser.add_argument("--rate-card", type=Path, default=SAMPLE_PATH,
                        help="the rate card the truth's spend is priced by (default: the sample card)")
    parser.add_argument("--opt-out-window-hours", type=float, default=48,
                        help="an opt-out counts for the Flow messages sent this long before it (default: 48)")
    parser.add_argument("--write-flow-json", type=Path, help="write every version's Flow JSON here and exit")
    args = parser.parse_args(argv)
    if args.write_flow_json:
        for flow_id, version, path in write_flow_jsons(args.write_flow_json):
            print(f"{flow_id} v{version}: {path}")  # noqa: T201
        return 0
    window_s = round(args.opt_out_window_hours * 3600)
    try:
        if window_s <= 0:
            raise ValueError(f"--opt-out-window-hours must be > 0, got {args.opt_out_window_hours}")
        rate_card = RateCard.from_file(args.rate_card) if args.truth else None
    except (RateCardError, ValueError) as exc:
        sys.stderr.write(f"flowscope simulate-flows: error: {exc}\n")
        return 2
    settings = Settings.from_env()
    urls: dict[str, Any] = {"webhook_url": f"{args.url}{WEBHOOK_PATH}", "events_url": f"{args.url}{EVENTS_PATH}",
                            "app_secret": settings.app_secret, "events_token": settings.events_token}
    try:
        if args.sessions == 0:
            for posts in live_batches(args.seed):
                asyncio.run(send(posts, **urls))
                time.sleep(2)
        sessions = generate_sessions(args.sessions, seed=args.seed, start_ms=int((time.time() - args.offset) * 1000),
                                     opt_out_window_s=window_s)
        posts = requests(sessions, seed=args.seed)
        print(f"posting {len(posts)} requests for {len(sessions)} sessions …", file=sys.stderr)  # noqa: T201
        failed = asyncio.run(send(posts, **urls))
    except KeyboardInterrupt:
        return 130
    if args.truth:
        figures = truth(sessions, timeout_s=settings.session_timeout_s, now_s=time.time(), rate_card=rate_card,
                        opt_out_window_s=window_s)
        args.truth.write_bytes(orjson.dumps(figures, option=orjson.OPT_INDENT_2))
    print(f"done: {len(posts) - failed} requests acknowledged, {failed} undelivered", file=sys.stderr)  # noqa: T201
    return 1 if failed else 0
