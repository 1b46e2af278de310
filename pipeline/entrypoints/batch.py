"""The batch pipeline: a CSV file through the use case, with progress and a recorded run."""

from __future__ import annotations

import logging
import multiprocessing
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from pipeline.adapters.csv_source import CsvTransactionSource, estimate_rows
from pipeline.adapters.postgres import PostgresStore
from pipeline.config import DatabaseSettings, MlApiSettings, ValidationSettings
from pipeline.domain.errors import ConfigurationError
from pipeline.domain.model import Outcome
from pipeline.entrypoints.progress import progress
from pipeline.service import CategoriseRecords, run_chunked

logger = logging.getLogger(__name__)


def run_batch(
    path: Path,
    store: PostgresStore,
    use_case: CategoriseRecords,
    chunk_size: int,
    show_progress: bool | None = None,
) -> Outcome:
    """Categorise a file in this process and record the run; raises if it failed."""
    params = {"chunk_size": chunk_size, "workers": 1}
    with (
        _recorded_run(path, store, params) as total,
        progress(path.name, estimate_rows(path), _interactive(show_progress)) as advance,
    ):

        def on_chunk(outcome: Outcome) -> None:
            total.add(outcome)
            advance(outcome.read)

        categorise_window(use_case, path, 0, None, chunk_size, on_chunk)
    return total


def run_batch_parallel(
    path: Path,
    store: PostgresStore,
    settings: tuple[DatabaseSettings, MlApiSettings, ValidationSettings],
    chunk_size: int,
    workers: int,
    show_progress: bool | None = None,
) -> Outcome:
    """Categorise a file with one process per line window (CPU-bound validation scales).

    Each window is idempotent and sees the ids of earlier lines, so the result is exactly the
    single-process one; a window that fails fails the run, and a rerun skips what is stored.
    """
    params = {"chunk_size": chunk_size, "workers": workers}
    with _recorded_run(path, store, params) as total:
        rows = estimate_rows(path)
        windows = plan_windows(path, max(-(-rows // workers), 1))
        context = multiprocessing.get_context("spawn")
        with (
            progress(path.name, rows, _interactive(show_progress)) as advance,
            ProcessPoolExecutor(workers, mp_context=context) as pool,
        ):
            futures = [
                pool.submit(_window_process, path, first, last, settings, chunk_size)
                for first, last in windows
            ]
            for future in as_completed(futures):
                outcome = future.result()
                total.add(outcome)
                advance(outcome.read)
    return total


def categorise_window(
    use_case: CategoriseRecords,
    path: Path,
    first_line: int,
    last_line: int | None,
    chunk_size: int,
    on_chunk: Callable[[Outcome], None] | None = None,
) -> Outcome:
    """The rows starting on lines [first_line, last_line]; ids on earlier lines count too."""
    if first_line > 2:  # line 1 is the header
        use_case.remember_ids(CsvTransactionSource(path, 0, first_line - 1).records())
    window = CsvTransactionSource(path, first_line, last_line)
    return run_chunked(window.records(), use_case, chunk_size, on_chunk)


def plan_windows(path: Path, rows_per_window: int) -> list[tuple[int, int]]:
    """(first_line, last_line) windows of at most `rows_per_window` rows, covering every row."""
    windows: list[tuple[int, int]] = []
    first = last = count = 0
    for record in CsvTransactionSource(path).records():
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


def _window_process(
    path: Path,
    first_line: int,
    last_line: int,
    settings: tuple[DatabaseSettings, MlApiSettings, ValidationSettings],
    chunk_size: int,
) -> Outcome:
    from pipeline.entrypoints.bootstrap import core

    with core(*settings) as built:
        return categorise_window(built.use_case, path, first_line, last_line, chunk_size)


@contextmanager
def _recorded_run(path: Path, store: PostgresStore, params: dict[str, Any]) -> Iterator[Outcome]:
    """Record the run in pipeline_runs: succeeded with its counts, or failed with the error."""
    if not path.is_file():
        raise ConfigurationError(f"input file not found: {path}")
    run_id = store.start_run("batch", str(path), params)
    total = Outcome()
    started = time.monotonic()
    try:
        yield total
    except BaseException as exc:
        store.finish_run(run_id, "failed", total, f"{type(exc).__name__}: {exc}")
        raise
    store.finish_run(run_id, "succeeded", total)
    elapsed = time.monotonic() - started
    logger.info(
        "batch run %s done: %d rows in %.1fs (%.0f rows/s)",
        run_id, total.read, elapsed, total.read / elapsed if elapsed else 0.0,
    )  # fmt: skip


def _interactive(show_progress: bool | None) -> bool:
    return sys.stderr.isatty() if show_progress is None else show_progress


def render_summary(outcome: Outcome, console: Console) -> None:
    """Print the end-of-run summary: counts, rejects by reason, rows per category."""
    counts = Table(title="Batch summary", show_header=False)
    for label, value in (
        ("rows read", outcome.read),
        ("valid", outcome.valid),
        ("categorised now", outcome.categorised),
        ("already stored (skipped)", outcome.already_stored),
        ("rejected", outcome.rejected_total),
    ):
        counts.add_row(label, str(value))
    console.print(counts)
    for title, counter in (
        ("Rejected by reason", outcome.rejected),
        ("Categorised per category", outcome.categories),
        ("Warnings", outcome.warnings),
        ("Operation types never seen before", outcome.new_operation_types),
    ):
        if counter:
            table = Table(title=title)
            table.add_column("value")
            table.add_column("rows", justify="right")
            for key, value in counter.most_common():
                table.add_row(key, str(value))
            console.print(table)
