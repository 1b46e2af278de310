"""Progress reporting for long commands: a rich bar on a terminal, log lines otherwise."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

logger = logging.getLogger(__name__)


@contextmanager
def progress(description: str, total: int, interactive: bool) -> Iterator[Callable[[int], None]]:
    """Yield `advance(n)`; shows rows/s and ETA on a terminal, logs every 5 s otherwise."""
    started = time.monotonic()
    if interactive:
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>8.0f} rows/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=Console(stderr=True)) as bar:
            task = bar.add_task(description, total=total, rate=0.0)

            def advance(rows: int) -> None:
                bar.advance(task, rows)
                done = bar.tasks[0].completed
                bar.update(task, rate=done / max(time.monotonic() - started, 1e-9))

            yield advance
        return
    state = {"rows": 0, "logged": started}

    def log_line(rows: int) -> None:
        state["rows"] += rows
        now = time.monotonic()
        if now - state["logged"] >= 5:
            state["logged"] = now
            rate = state["rows"] / (now - started)
            logger.info("%s: %d/%d rows (%.0f rows/s)", description, state["rows"], total, rate)

    yield log_line
