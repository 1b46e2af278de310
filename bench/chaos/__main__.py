"""`python -m bench.chaos`: run the fault matrix, print the table, write it as JSON.

Exit status 1 when any scenario fails (an expected failure, marked with the gap it waits for,
does not count). `--smoke` runs the short subset `make test` runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.chaos.report import Row, render, write_json
from bench.chaos.scenarios import MATRIX, SMOKE, Scenario
from bench.chaos.services import ChaosServices

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "bench" / "out"
logger = logging.getLogger("bench.chaos")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("bench.chaos").setLevel(logging.INFO)
    chosen = _choose(args.smoke, args.only)
    if args.list:
        for scenario in chosen:
            print(f"{scenario.name:20} {scenario.fault}")
        return 0
    began = datetime.now(UTC)
    # SIGTERM (a CI timeout, someone's kill) unwinds like Ctrl-C: the services are stopped.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    services = ChaosServices(keep=args.keep)
    rows: list[Row] = []
    try:
        services.start()
        for scenario in chosen:
            rows.append(_run(services, scenario))
    finally:
        if any(row.counts_as_failure for row in rows):
            services.keep = True
        services.stop()
    print()
    print(render(rows))
    out = args.out or OUT / ("chaos-smoke.json" if args.smoke else "chaos.json")
    write_json(rows, out, _context(began))
    print(f"\nwritten to {out}" + (f"; logs kept in {services.root}" if services.keep else ""))
    return 1 if any(row.counts_as_failure for row in rows) else 0


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _run(services: ChaosServices, scenario: Scenario) -> Row:
    row = Row(scenario.name, scenario.fault, expected_to_fail=scenario.expected_to_fail)
    logger.info("scenario %s: %s", scenario.name, scenario.fault)
    began = time.monotonic()
    try:
        scenario.run(services, row)
    except Exception as exc:  # noqa: BLE001 - a failed scenario is a row, the matrix goes on
        logger.exception("scenario %s failed", scenario.name)
        row.problems.append(f"{type(exc).__name__}: {exc}")
    finally:
        services.heal()
    row.seconds = time.monotonic() - began
    logger.info("scenario %s: %s in %.0fs", scenario.name, row.verdict, row.seconds)
    return row


def _choose(smoke: bool, only: list[str] | None) -> list[Scenario]:
    pool = SMOKE if smoke else MATRIX
    if not only:
        return pool
    by_name = {scenario.name: scenario for scenario in [*MATRIX, *SMOKE]}
    unknown = [name for name in only if name not in by_name]
    if unknown:
        raise SystemExit(f"unknown scenario(s) {unknown}; known: {sorted(by_name)}")
    return [by_name[name] for name in only]


def _context(began: datetime) -> dict[str, object]:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "started_at": began.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "commit": commit,
        "cpus": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="the short subset of make test")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="these scenarios only")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--out", type=Path, help="JSON file (default bench/out/chaos*.json)")
    parser.add_argument("--keep", action="store_true", help="keep the data and logs folder")
    return parser


if __name__ == "__main__":
    sys.exit(main())
