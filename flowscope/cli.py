"""``flowscope <subcommand>``: one entry point for every process and tool."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from config.settings import Settings, describe
from flowscope.exceptions import USER_ERRORS


def _logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _warn_dev_secrets(settings: Settings, process: str) -> None:
    """Warn about the development secrets this process holds (it is handed only the secrets it uses)."""
    from embedded.specs import PROCESS_SECRETS

    held = {f"FLOWSCOPE_{name.upper()}" for name in PROCESS_SECRETS[process]}
    for key in settings.dev_secrets_in_use:
        if key in held:
            logging.getLogger("flowscope").warning("%s is the development default; set it in production", key)


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    from flowscope.up import run_up

    return run_up(settings)


def cmd_ingest(settings: Settings, args: argparse.Namespace) -> int:
    from ingest.app import serve

    _warn_dev_secrets(settings, "receiver")
    serve(settings)
    return 0


def cmd_stream(settings: Settings, args: argparse.Namespace) -> int:
    from stream.app import run_worker

    _warn_dev_secrets(settings, "stream")
    run_worker(settings)
    return 0


def cmd_warehouse(settings: Settings, args: argparse.Namespace) -> int:
    if args.warehouse_command == "serve":
        from chserver.access import AccessConfig, Role, User
        from chserver.app import serve
        from warehouse.client import database_of

        _warn_dev_secrets(settings, "warehouse")
        roles = {"admin": Role.ADMIN, "writer": Role.WRITER, "analyst": Role.ANALYST}
        access = AccessConfig(
            users=tuple(User(*settings.warehouse_user(name), role) for name, role in roles.items()),
            databases=(database_of(settings.warehouse_url),),
            audit_retention_days=settings.warehouse_audit_retention_days,
        )
        serve(
            host=settings.warehouse_host,
            port=settings.warehouse_port,
            data_dir=settings.data_dir / "warehouse",
            log_level=settings.log_level.lower(),
            access=access,
        )
        return 0
    if args.warehouse_command == "rebuild":
        return _rebuild(settings, args)
    if args.warehouse_command == "rollup":
        from stream.rollup import main as rollup_main

        _logging(settings)
        _warn_dev_secrets(settings, "rollup")
        return rollup_main(settings)
    from warehouse.migrate import migrate

    applied = migrate(settings.warehouse_url_for("admin"), retention_days=settings.warehouse_retention_days)
    names = ", ".join(m.name for m in applied) or "none (schema up to date)"
    print(f"applied migrations: {names}")  # noqa: T201
    kept = f"{settings.warehouse_retention_days} days" if settings.warehouse_retention_days else "forever"
    print(f"retention: raw events kept {kept}, derived tables at least as long")  # noqa: T201
    return 0


def _rebuild(settings: Settings, args: argparse.Namespace) -> int:
    from warehouse.client import connect, database_of
    from warehouse.rebuild import rebuild

    url = settings.warehouse_url_for("admin")
    client = connect(url)
    started = time.monotonic()
    try:
        count = rebuild(client, database_of(url), since=args.since, until=args.until,
                        say=lambda line: print(f"[{time.monotonic() - started:6.1f} s] {line}", flush=True))  # noqa: T201
    finally:
        client.close()
    print(f"rebuilt in {time.monotonic() - started:.1f} s ({count} statements)")  # noqa: T201
    return 0


def _moment(text: str) -> datetime:
    """An ISO date or date-time, as naive UTC (a time zone, if given, is converted)."""
    moment = datetime.fromisoformat(text)
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo is not None else moment


def cmd_dashboards(settings: Settings, args: argparse.Namespace) -> int:
    from dashboards.launch import run

    _warn_dev_secrets(settings, "dashboards")
    return run(settings)


def cmd_broker(settings: Settings, args: argparse.Namespace) -> int:
    if args.broker_command == "retention":
        from embedded.retention import main as retention_main
        from embedded.specs import S3_BUCKET, filer_endpoint, s3_endpoint

        _logging(settings)
        return retention_main(settings, endpoint=s3_endpoint(settings), bucket_name=S3_BUCKET,
                              filer=filer_endpoint(settings))
    from flowscope.up import main_broker

    return main_broker(settings)


def cmd_flows(settings: Settings, args: argparse.Namespace) -> int:
    from flowtools.registration import register_flow_json

    raw = args.file.read_bytes()
    screens = register_flow_json(settings, flow_id=args.flow_id, version=args.version, flow_json=raw,
                                 name=args.name, base_url=args.url)
    order = " → ".join(screens)
    named = f" ({args.name})" if args.name else ""
    print(f"registered flow {args.flow_id}{named} version {args.version}: {order}")  # noqa: T201
    return 0


def cmd_ratecard(settings: Settings, args: argparse.Namespace) -> int:
    from config.ratecard import SAMPLE_PATH, RateCard
    from warehouse import costs
    from warehouse.client import connect

    if args.ratecard_command == "load":
        path = args.file or SAMPLE_PATH
        card = RateCard.from_file(path)
        costs.store_rate_card(connect(settings.warehouse_url_for("writer")), card, source=path.name)
        print(f"rate card {path} loaded: {len(card.rates)} rates in {card.currency or 'no currency'}")  # noqa: T201
        return 0
    loaded = costs.rate_card(connect(settings.warehouse_url_for("analyst")))
    if loaded is None:
        print("no rate card loaded: costs are shown as unpriced (flowscope ratecard load FILE)")  # noqa: T201
        return 0
    print(f"rate card {loaded.source}, loaded {loaded.loaded_at:%Y-%m-%d %H:%M:%S} UTC")  # noqa: T201
    for r in loaded.card.rates:
        print(f"{r.market},{r.category},{r.pricing_type},{r.currency},{r.price},{r.effective_from}")  # noqa: T201
    return 0


def cmd_settings(settings: Settings, args: argparse.Namespace) -> int:
    for key, default, doc in describe():
        print(f"{key}={default}\n    {doc}")  # noqa: T201
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowscope", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="run the whole embedded pipeline with simulated traffic").set_defaults(func=cmd_up)
    sub.add_parser("ingest", help="run the webhook receiver").set_defaults(func=cmd_ingest)
    sub.add_parser("stream", help="run one stream worker").set_defaults(func=cmd_stream)
    wh = sub.add_parser("warehouse", help="the warehouse: serve the embedded one, migrate a schema, run its rollup")
    wh.add_argument("warehouse_command", choices=["serve", "migrate", "rollup", "rebuild"],
                    help="serve: the embedded warehouse; migrate: apply the schema; rollup: keep the sealed "
                         "delivery counts (one process per warehouse); rebuild: recompute every derived table "
                         "from the raw tables (idempotent)")
    wh.add_argument("--since", type=_moment, default=None,
                    help="rebuild: only what raw events from this time (ISO, UTC unless a zone is given) feed")
    wh.add_argument("--until", type=_moment, default=None, help="rebuild: ... up to this time (excluded)")
    wh.set_defaults(func=cmd_warehouse)
    sub.add_parser("dashboards", help="run the Streamlit dashboards").set_defaults(func=cmd_dashboards)
    broker = sub.add_parser("broker", help="run the embedded broker (tansu) in the foreground")
    broker.add_argument("broker_command", nargs="?", choices=["serve", "retention"], default="serve",
                        help="serve: the broker and its storage (default); retention: only the durable broker's "
                             "retention sweeper")
    broker.set_defaults(func=cmd_broker)
    sub.add_parser("settings", help="list every setting with its default").set_defaults(func=cmd_settings)
    flows = sub.add_parser("flows", help="flow definitions (Flow JSON) per flow version")
    flows_sub = flows.add_subparsers(dest="flows_command", required=True)
    register = flows_sub.add_parser("register", help="register a version's Flow JSON (screens, routing)")
    register.add_argument("file", type=Path, help="the Flow JSON file")
    register.add_argument("--flow-id", required=True)
    register.add_argument("--version", required=True)
    register.add_argument("--name", default="", help="the flow's display name, shown on every page (default: none)")
    register.add_argument("--url", default=None,
                          help="the receiver's base URL (default: FLOWSCOPE_INGEST_HOST and FLOWSCOPE_INGEST_PORT)")
    register.set_defaults(func=cmd_flows)
    ratecard = sub.add_parser("ratecard", help="the rate card costs are priced from (CSV, see config/ratecard.py)")
    ratecard.add_argument("ratecard_command", choices=["load", "show"],
                          help="load: make FILE the card in force (default: the sample card); show: the card in force")
    ratecard.add_argument("file", nargs="?", type=Path, default=None, help="load: the CSV rate card")
    ratecard.set_defaults(func=cmd_ratecard)
    sub.add_parser("simulate", help="send simulated, signed webhooks (see: flowscope simulate --help)", add_help=False)
    sub.add_parser("simulate-flows", help="simulated Flow sessions: screen events, statuses, completions",
                   add_help=False)
    sub.add_parser("chaos", help="fault suite: kill components under load, judge against the truth (make chaos)",
                   add_help=False)
    sub.add_parser("bench", help="speed targets as ratios to ceilings measured in the same run (make bench)",
                   add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["simulate-flows"]:
        from flowtools.simulator.cli import flows_main

        return flows_main(argv[1:])
    if argv[:1] == ["chaos"]:
        from flowtools.chaos import main as chaos_main

        return chaos_main(argv[1:])
    if argv[:1] == ["bench"]:
        from flowtools.bench.run import main as bench_main

        return bench_main(argv[1:])
    if argv[:1] == ["simulate"]:
        from flowtools.simulator.cli import main as simulate_main

        return simulate_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        _logging(settings)
        return int(args.func(settings, args))
    except USER_ERRORS as exc:
        print(f"flowscope: error: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
