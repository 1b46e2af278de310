"""The batch pipeline: a CSV file through the use case, with progress and a recorded run."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from pipeline.adapters.csv_source import CsvTransactionSource, estimate_rows
from pipeline.adapters.postgres import PostgresStore
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
    first_line: int = 0,
    last_line: int | None = None,
    show_progress: bool | None = None,
) -> Outcome:
    """Categorise a file (or a window of its lines) and record the run; raises if it failed."""
    if not path.is_file():
        raise ConfigurationError(f"input file not found: {path}")
    source = CsvTransactionSource(path, first_line, last_line)
    if first_line > 2:  # a window of the file: ids on earlier lines count for duplicates
        use_case.remember_ids(CsvTransactionSource(path, 0, first_line - 1).records())
    params = {"chunk_size": chunk_size, "first_line": first_line, "last_line": last_line}
    run_id = store.start_run("batch", str(path), params)
    total = Outcome()
    started = time.monotonic()
    interactive = sys.stderr.isatty() if show_progress is None else show_progress
    try:
        with progress(path.name, estimate_rows(path), interactive) as advance:

            def on_chunk(outcome: Outcome) -> None:
                total.add(outcome)
                advance(outcome.read)

            run_chunked(source.records(), use_case, chunk_size, on_chunk)
    except BaseException as exc:
        store.finish_run(run_id, "failed", total, f"{type(exc).__name__}: {exc}")
        raise
    store.finish_run(run_id, "succeeded", total)
    elapsed = time.monotonic() - started
    logger.info(
        "batch run %s done: %d rows in %.1fs (%.0f rows/s)",
        run_id,
        total.read,
        elapsed,
        total.read / elapsed if elapsed else 0.0,
    )
    return total


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
