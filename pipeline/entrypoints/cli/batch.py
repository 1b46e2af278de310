"""`python -m pipeline batch`: a file through the use case, in one process or one per window."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from rich.console import Console
from rich.table import Table

from pipeline import bootstrap
from pipeline.config import DatabaseSettings, MlApiSettings, ValidationSettings
from pipeline.domain.model import Outcome, RunKind
from pipeline.domain.plans import FilePlan, Window
from pipeline.entrypoints.cli.progress import progress
from pipeline.service_layer.files import categorise_file, categorise_window, plan_windows

Settings = tuple[DatabaseSettings, MlApiSettings, ValidationSettings]


def run_batch(
    app: bootstrap.BatchApp,
    path: Path,
    chunk_size: int,
    workers: int,
    interactive: bool,
    total: Outcome,
    settings: Settings,
) -> None:
    """Categorise the file into `total`, recorded as a run (the reject-share gate applies).

    With `workers` > 1, one process per planned window: each window is idempotent, reads only
    its own bytes and gets the file's repeated ids from the plan, so the result is exactly the
    single-process one; a window that fails fails the run, and a rerun skips what is stored.
    """
    file = bootstrap.open_file(path)
    facts = file.facts()  # a missing or headerless file fails before a run is recorded
    params = {"chunk_size": chunk_size, "workers": workers}
    rows = file.estimate_rows()
    with (
        app.runs.recorded(RunKind.BATCH, facts.path, params) as recorded,
        progress(path.name, rows, interactive) as advance,
    ):

        def on_chunk(outcome: Outcome) -> None:
            recorded.add(outcome)
            total.add(outcome)
            advance(outcome.read)

        if workers == 1:
            categorise_file(app.use_case, file, chunk_size, on_chunk)
            return
        plan = plan_windows(file, max(-(-rows // workers), 1))
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            futures = [
                pool.submit(_window_process, path, plan, window, settings, chunk_size)
                for window in plan.windows
            ]
            for future in as_completed(futures):
                on_chunk(future.result())


def _window_process(
    path: Path, plan: FilePlan, window: Window, settings: Settings, chunk_size: int
) -> Outcome:
    with bootstrap.batch_app(*settings) as app:
        file = bootstrap.open_file(path)
        return categorise_window(app.use_case, file, plan, window, chunk_size)


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
                table.add_row(str(key), str(value))
            console.print(table)
