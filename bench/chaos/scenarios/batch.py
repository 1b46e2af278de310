"""Batch faults: the batch process killed mid-file, PostgreSQL restarted mid-file; then a rerun."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Callable

from bench.chaos.probe import Database, wait_until
from bench.chaos.report import Row
from bench.chaos.runs import Child, pipeline
from bench.chaos.services import ChaosServices
from bench.chaos.verify import check_tables, source_ids
from devstack.generate import generate


class BatchRun:
    """A generated file and a database of its own; batch runs of the product's command line."""

    def __init__(self, services: ChaosServices, name: str, rows: int, seed: int = 21) -> None:
        self.rows = rows
        self.folder = services.root / name
        self.folder.mkdir(parents=True, exist_ok=True)
        self.file = self.folder / "rows.csv"
        generate(self.file, rows, seed)
        self.database = services.new_database("chaos")
        self.db = Database(services.postgres.url(self.database))
        self.env = {**os.environ, **services.pipeline_env(self.database)}
        self.runs = 0

    def start(self) -> Child:
        self.runs += 1
        # Chunks of 5,000 rows (the default is 10,000): the file is stored chunk by chunk, so
        # the fault lands in the middle of it.
        argv = pipeline("batch", str(self.file), "--no-progress", "--chunk-size", "5000")
        return Child(f"batch-{self.runs}", argv, self.env, self.folder / f"batch-{self.runs}.log")

    def statuses(self) -> list[str]:
        rows = self.db.rows("SELECT status FROM pipeline_runs ORDER BY started_at")
        return [str(row.status) for row in rows]


def _interrupted_then_rerun(
    services: ChaosServices, row: Row, rows: int, fault: Callable[[Child], None]
) -> BatchRun:
    """Start a batch, apply ``fault`` once 40 % is stored, rerun it; check the exact state."""
    run = BatchRun(services, row.scenario, rows)
    try:
        first = run.start()
        wait_until(lambda: run.db.stored() >= rows * 0.4, 180, "40 % of the file stored")
        began = time.monotonic()
        if not first.alive:
            row.problems.append("the batch had ended before the fault: nothing was interrupted")
        fault(first)
        row.replayed = run.db.stored()  # re-read by the rerun and skipped without an ML call
        rerun = run.start()
        code = rerun.wait(600)
        row.recover_s.append(time.monotonic() - began)
        if code != 0:
            row.problems.append(f"the rerun exited {code}: {rerun.tail()}")
        check_tables(run.db, source_ids(rows), Counter(), row)
        row.notes.append(f"runs recorded: {run.statuses()}")
        return run
    finally:
        run.db.close()


def batch_kill9(services: ChaosServices, row: Row, rows: int = 50_000) -> None:
    """`python -m pipeline batch` SIGKILLed at 40 % of a file, then run again."""

    def kill(first: Child) -> None:
        first.signal(signal.SIGKILL)
        first.wait(10)

    _interrupted_then_rerun(services, row, rows, kill)


def pg_restart_batch(services: ChaosServices, row: Row, rows: int = 50_000) -> None:
    """PostgreSQL restarted (fast shutdown, back 3 s later) at 40 % of a batch file: the run
    fails cleanly in one line (exit 1) or rides it out; a rerun finishes the file."""

    def restart(first: Child) -> None:
        services.postgres.stop("fast")
        time.sleep(3)
        services.postgres.start()
        code = first.wait(300)
        output = first.log.read_text(errors="replace")
        if code not in (0, 1) or "Traceback" in output:
            row.problems.append(f"the interrupted run exited {code}: {first.tail()}")
        else:
            row.notes.append(f"interrupted run: exit {code}: {first.tail(1)}")

    _interrupted_then_rerun(services, row, rows, restart)
