"""Run a file, or one planned window of it, through the categorise use case."""

from __future__ import annotations

from collections.abc import Callable

from pipeline.domain.model import Outcome
from pipeline.domain.plans import FilePlan, Window
from pipeline.domain.ports import TransactionFile
from pipeline.service_layer.categorise import CategoriseRecords
from pipeline.service_layer.chunks import run_chunks

WHOLE_FILE = 2**62  # rows per window when a file runs as one window


def plan_windows(file: TransactionFile, rows_per_window: int) -> FilePlan:
    """Windows of about `rows_per_window` rows covering every row once, planned in one pass:
    byte offsets (each window then reads only its own bytes), a digest per window (a file
    replaced since is refused) and the rows repeating an earlier id (decided for the file)."""
    return file.plan(rows_per_window)


def categorise_window(
    use_case: CategoriseRecords,
    file: TransactionFile,
    plan: FilePlan,
    window: Window,
    chunk_size: int,
    on_chunk: Callable[[Outcome], None] | None = None,
) -> Outcome:
    """The rows of one window; reads nothing outside it.

    Idempotent: stored rows are skipped and dead letters are upserted, so a retry or a rerun
    on the same file changes nothing. A repeated id is rejected in the same place whatever
    the windows, because the plan found the repeats for the whole file.
    """
    return run_chunks(file.chunks(plan, window, chunk_size), use_case, on_chunk)


def categorise_file(
    use_case: CategoriseRecords,
    file: TransactionFile,
    chunk_size: int,
    on_chunk: Callable[[Outcome], None] | None = None,
) -> Outcome:
    """Every row of the file: planned as one window, then read chunk by chunk."""
    plan = file.plan(WHOLE_FILE)
    total = Outcome()
    for window in plan.windows:
        total.add(categorise_window(use_case, file, plan, window, chunk_size, on_chunk))
    return total
