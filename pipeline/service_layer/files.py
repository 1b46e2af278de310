"""Run a file, or one window of its lines, through the categorise use case."""

from __future__ import annotations

from collections.abc import Callable

from pipeline.domain.model import Outcome
from pipeline.domain.ports import TransactionFile
from pipeline.service_layer.categorise import CategoriseRecords
from pipeline.service_layer.chunks import run_chunked

Window = tuple[int, int]


def categorise_window(
    use_case: CategoriseRecords,
    file: TransactionFile,
    first_line: int,
    last_line: int | None,
    chunk_size: int,
    on_chunk: Callable[[Outcome], None] | None = None,
) -> Outcome:
    """The rows starting on lines [first_line, last_line]; ids on earlier lines count too.

    Idempotent: stored rows are skipped and dead letters are upserted, so a retry or a rerun
    on the same file changes nothing. A repeated id is rejected in the same place whatever
    the windows, because the ids of earlier lines are remembered first.
    """
    if first_line > 2:  # line 1 is the header
        use_case.remember_ids(file.records(0, first_line - 1))
    return run_chunked(file.records(first_line, last_line), use_case, chunk_size, on_chunk)


def categorise_file(
    use_case: CategoriseRecords,
    file: TransactionFile,
    chunk_size: int,
    on_chunk: Callable[[Outcome], None] | None = None,
) -> Outcome:
    """Every row of the file."""
    return categorise_window(use_case, file, 0, None, chunk_size, on_chunk)


def plan_windows(file: TransactionFile, rows_per_window: int) -> list[Window]:
    """(first_line, last_line) windows of at most `rows_per_window` rows, covering every row."""
    windows: list[Window] = []
    first = last = count = 0
    for record in file.records():
        line = record.position.line or 0
        if count == 0:
            first = line
        last, count = line, count + 1
        if count == rows_per_window:
            windows.append((first, last))
            count = 0
    if count:
        windows.append((first, last))
    return windows
