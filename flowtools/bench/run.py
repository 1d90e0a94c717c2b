"""``flowscope bench``: run the benchmarks, print one table, write ``bench-report.json``.

Exit code 0 when every figure meets its target, 1 when one does not (the table says which), 2 on
a usage error. ``--quick`` runs small sizes (a smoke run: its figures are not the targets' measure).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TextIO

import orjson

from flowtools.bench import Result, Say

BENCHMARKS = ("receiver", "stream", "freshness", "soak", "dashboard")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowscope bench", description=__doc__)
    parser.add_argument("--only", action="append", choices=BENCHMARKS,
                        help="run only these benchmarks (repeatable; default: all)")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run, not the measure")
    parser.add_argument("--events", type=int, default=None,
                        help="events in the warehouse for the dashboard benchmark (default 100,000,000)")
    parser.add_argument("--soak-steps", type=_steps, default=None, metavar="RATE:MINUTES,...",
                        help="the soak's steps, status events/s and minutes each "
                             "(default 750:10,1500:10,3000:30,4500:10; --quick 300:0.5,600:0.5)")
    parser.add_argument("--report", type=Path, default=Path("bench-report.json"))
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="where the benchmarks' temporary pipelines live (default: the system temp dir)")
    return parser


def _steps(text: str) -> tuple[tuple[int, float], ...]:
    from flowtools.bench.soak import parse_steps

    try:
        return parse_steps(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run_benchmarks(names: tuple[str, ...], *, quick: bool, events: int | None, data_dir: Path | None,
                   say: Say = print, soak_steps: tuple[tuple[int, float], ...] | None = None) -> list[Result]:
    emit = say
    results: list[Result] = []
    for name in names:
        started = time.monotonic()
        emit(f"== {name}")
        try:
            results += _run_one(name, quick=quick, events=events, data_dir=data_dir, say=emit, soak_steps=soak_steps)
        except Exception as exc:  # one benchmark failing must not hide the others' figures
            emit(f"== {name} failed: {exc}")
            results.append(Result(name, "ran without error", 0.0, 1.0, True, "",
                                  {"error": f"{type(exc).__name__}: {exc}"}))
        emit(f"== {name} done in {time.monotonic() - started:.0f} s")
    return results


def _run_one(name: str, *, quick: bool, events: int | None, data_dir: Path | None, say: Say,
             soak_steps: tuple[tuple[int, float], ...] | None = None) -> list[Result]:
    from flowtools.harness import isolated_settings

    results: list[Result] = []
    if name == "receiver":
        from flowtools.bench import receiver

        results += receiver.run(isolated_settings, say, quick=quick)
    elif name == "stream":
        from flowtools.bench import stream

        results += stream.run(isolated_settings, say, quick=quick)
    elif name == "freshness":
        from flowtools.bench import freshness

        results += freshness.run(say, quick=quick, data_dir=data_dir)
    elif name == "soak":
        from flowtools.bench import soak

        results += soak.run(say, quick=quick, data_dir=data_dir, steps=soak_steps)
    else:
        from flowtools.bench import dashboard

        results += dashboard.run(isolated_settings, say, quick=quick, events=events, data_dir=data_dir)
    return results


def table(results: list[Result], out: TextIO) -> None:
    header = f"{'benchmark':<10} {'figure':<40} {'value':>12} {'target':>12}  met"
    out.write(header + "\n" + "-" * len(header) + "\n")
    for r in results:
        sign = ">=" if r.higher_is_better else "<="
        out.write(f"{r.benchmark:<10} {r.name:<40} {r.value:>12,.2f} {sign + format(r.target, ',.2f'):>12}  "
                  f"{'yes' if r.met else 'NO'}\n")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    names = tuple(args.only) if args.only else BENCHMARKS
    if args.data_dir is not None:
        args.data_dir.mkdir(parents=True, exist_ok=True)

    def say(message: str) -> None:
        print(message, flush=True)

    results = run_benchmarks(names, quick=args.quick, events=args.events, data_dir=args.data_dir, say=say,
                             soak_steps=args.soak_steps)
    table(results, sys.stdout)
    args.report.write_bytes(orjson.dumps([r.to_dict() for r in results], option=orjson.OPT_INDENT_2))
    print(f"report written to {args.report}")
    return 0 if all(r.met for r in results) else 1
