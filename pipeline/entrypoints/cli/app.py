"""The command line `python -m pipeline`: parse, call the bootstrap and a use case, report."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from pipeline.config import (
    BatchSettings,
    DatabaseSettings,
    KafkaSettings,
    MlApiSettings,
    ValidationSettings,
)
from pipeline.domain.errors import PipelineError, RunFailed
from pipeline.domain.model import Outcome, Reason
from pipeline.entrypoints.cli.logs import configure_logging

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Transaction categorisation pipeline: batch (CSV) and streaming (Kafka) into PostgreSQL.",
    # A traceback must never print local variables: settings and URLs hold secrets.
    pretty_exceptions_show_locals=False,
)
db_app = typer.Typer(no_args_is_help=True, help="Database schema (alembic migrations).")
topics_app = typer.Typer(no_args_is_help=True, help="Kafka topics.")
app.add_typer(db_app, name="db")
app.add_typer(topics_app, name="topics")
console = Console()
logger = logging.getLogger("pipeline")

DatabaseUrl = Annotated[
    Optional[str],  # noqa: UP045 - typer needs Optional here
    typer.Option(envvar="DATABASE_URL", help="PostgreSQL URL.", show_envvar=True),
]
MlApiUrl = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(envvar="ML_API_URL", help="Base URL of the ML API.", show_envvar=True),
]


def _db(url: str | None) -> DatabaseSettings:
    settings = DatabaseSettings()
    if url:
        return settings.model_copy(update={"database_url": SecretStr(url)})
    return settings


@app.callback()
def _setup(
    log_format: Annotated[str, typer.Option(envvar="LOG_FORMAT", help="text or json")] = "text",
    log_level: Annotated[str, typer.Option(envvar="LOG_LEVEL")] = "INFO",
) -> None:
    configure_logging(log_level, log_format)


@app.command()
def batch(
    path: Annotated[Path, typer.Argument(help="CSV file to categorise.")],
    database_url: DatabaseUrl = None,
    ml_api_url: MlApiUrl = None,
    chunk_size: Annotated[Optional[int], typer.Option(help="Rows per chunk.")] = None,  # noqa: UP045
    ml_concurrency: Annotated[Optional[int], typer.Option(help="Concurrent ML calls.")] = None,  # noqa: UP045
    ml_batch_size: Annotated[Optional[int], typer.Option(help="Transactions per ML call.")] = None,  # noqa: UP045
    progress: Annotated[Optional[bool], typer.Option(help="Force the progress bar on/off.")] = None,  # noqa: UP045
    workers: Annotated[int, typer.Option(min=1, help="Processes, one line window each.")] = 1,
    max_reject_share: Annotated[
        float,
        typer.Option(
            min=0.0, max=1.0, help="Fail the run (exit 1) above this share of rejected rows."
        ),
    ] = 1.0,
) -> None:
    """Categorise a CSV file into PostgreSQL; exit 0 when the run completed (rejects included)."""
    from pipeline import bootstrap
    from pipeline.entrypoints.cli.batch import render_summary, run_batch

    ml = MlApiSettings()
    overrides = {"api_url": ml_api_url, "concurrency": ml_concurrency, "batch_size": ml_batch_size}
    ml = ml.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    size = chunk_size or BatchSettings().chunk_size
    validation = ValidationSettings()
    interactive = sys.stderr.isatty() if progress is None else progress
    total = Outcome()
    with (
        _fail_cleanly(),
        bootstrap.batch_app(
            _db(database_url), ml, validation, max_reject_share, embedded_allowed=True
        ) as built,
    ):
        # Worker processes reuse this database (embedded or not) through its resolved URL.
        settings = (_db(built.database_url), ml, validation)
        try:
            run_batch(built, path, size, workers, interactive, total, settings)
        except RunFailed:
            render_summary(total, console)
            raise
    render_summary(total, console)


@db_app.command("upgrade")
def db_upgrade(database_url: DatabaseUrl = None) -> None:
    """Apply the alembic migrations up to the latest."""
    from pipeline import bootstrap

    with _fail_cleanly():
        revision = bootstrap.migrate(_db(database_url), embedded_allowed=True)
    console.print(f"database schema at revision {revision}")


@db_app.command("current")
def db_current(database_url: DatabaseUrl = None) -> None:
    """Print the schema revision of the database and of the code."""
    from pipeline import bootstrap

    with _fail_cleanly():
        current, head = bootstrap.revisions(_db(database_url), embedded_allowed=True)
    console.print(f"database: {current}  code: {head}")


Bootstrap = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        envvar="KAFKA_BOOTSTRAP_SERVERS", help="Kafka bootstrap servers.", show_envvar=True
    ),
]
Topic = Annotated[Optional[str], typer.Option(help="Topic (default KAFKA_TOPIC).")]  # noqa: UP045


def _kafka(bootstrap: str | None, topic: str | None = None) -> KafkaSettings:
    settings = KafkaSettings()
    updates = {"bootstrap_servers": bootstrap, "topic": topic}
    return settings.model_copy(update={k: v for k, v in updates.items() if v})


@app.command()
def stream(
    database_url: DatabaseUrl = None,
    ml_api_url: MlApiUrl = None,
    bootstrap_servers: Bootstrap = None,
    metrics_port: Annotated[int, typer.Option(envvar="METRICS_PORT", help="0 disables.")] = 9108,
) -> None:
    """Consume the topic in a consumer group until SIGTERM/SIGINT."""
    # polars reads this once, when it is first imported (below). A stream batch is small: waking
    # polars' thread pool for each of its queries costs more than it saves (a 50-event batch:
    # 16.8 -> 9.2 ms of CPU, the same per event at 5,000). A consumer scales by partitions and
    # processes instead; an operator's own POLARS_MAX_THREADS still wins.
    os.environ.setdefault("POLARS_MAX_THREADS", "1")
    from pipeline.entrypoints.cli.stream import run_stream

    ml = MlApiSettings()
    if ml_api_url:
        ml = ml.model_copy(update={"api_url": ml_api_url})
    with _fail_cleanly():
        run_stream(
            _kafka(bootstrap_servers), _db(database_url), ml, ValidationSettings(), metrics_port
        )


@app.command()
def produce(
    path: Annotated[Path, typer.Argument(help="CSV (either format) or JSON-lines file.")],
    rate: Annotated[Optional[float], typer.Option(help="Events per second (default: max).")] = None,  # noqa: UP045
    limit: Annotated[Optional[int], typer.Option(help="Stop after N events.")] = None,  # noqa: UP045
    topic: Topic = None,
    bootstrap_servers: Bootstrap = None,
    progress: Annotated[Optional[bool], typer.Option(help="Force the progress bar on/off.")] = None,  # noqa: UP045
) -> None:
    """Replay a file onto the topic as events, at a chosen rate; exit 1 if a delivery failed."""
    from pipeline import bootstrap
    from pipeline.adapters.csv_source import estimate_rows
    from pipeline.adapters.event_files import file_events
    from pipeline.entrypoints.cli.progress import progress as progress_bar
    from pipeline.service_layer.replay import replay

    interactive = sys.stderr.isatty() if progress is None else progress
    with _fail_cleanly():
        sink = bootstrap.event_sink(_kafka(bootstrap_servers, topic))
        rows = estimate_rows(path) if path.is_file() else 0
        with progress_bar(f"producing {path.name}", min(rows, limit or rows), interactive) as bar:
            sink.on_sent = lambda: bar(1)
            result = replay(file_events(path), sink, rate, limit)
    console.print(
        f"read {result.read}, sent {result.sent}, failed {result.failed} "
        f"in {result.seconds:.1f}s ({result.sent / max(result.seconds, 1e-9):.0f} events/s)"
    )
    if result.failed:
        raise typer.Exit(1)


@topics_app.command("create")
def topics_create(
    bootstrap_servers: Bootstrap = None,
    partitions: Annotated[Optional[int], typer.Option(envvar="KAFKA_PARTITIONS")] = None,  # noqa: UP045
) -> None:
    """Create the main and dead-letter topics (idempotent)."""
    from pipeline import bootstrap

    with _fail_cleanly():
        for name, state in bootstrap.create_topics(_kafka(bootstrap_servers), partitions).items():
            console.print(f"{name}: {state}")


@app.command("redrive")
def redrive_command(
    reason: Annotated[
        Reason | None, typer.Option(help="Only dead letters with this reason.")
    ] = None,
    since: Annotated[str | None, typer.Option(help="Only those failed since (ISO time).")] = None,
    max_replays: Annotated[int, typer.Option(envvar="REDRIVE_MAX_REPLAYS")] = 3,
    dry_run: Annotated[
        bool, typer.Option(help="Only print what is pending, by reason; change nothing.")
    ] = False,
    database_url: DatabaseUrl = None,
    bootstrap_servers: Bootstrap = None,
) -> None:
    """Send pending dead letters back to the main topic; quarantine those replayed too often."""
    from datetime import datetime

    from pipeline import bootstrap
    from pipeline.service_layer.redrive import redrive_dead_letters

    moment = datetime.fromisoformat(since) if since else None
    with (
        _fail_cleanly(),
        bootstrap.redrive_app(_kafka(bootstrap_servers), _db(database_url)) as built,
    ):
        result = redrive_dead_letters(
            built.store, built.republisher, reason, moment, max_replays, dry_run=dry_run
        )
    if dry_run:
        table = Table(title="Pending dead letters (dry run: nothing changed)")
        table.add_column("reason")
        table.add_column("pending", justify="right")
        for name, pending in result.by_reason.most_common():
            table.add_row(name, str(pending))
        console.print(table)
        console.print(f"would redrive {result.redriven}, would quarantine {result.quarantined}")
        return
    console.print(f"redriven {result.redriven}, quarantined {result.quarantined}")


@contextmanager
def _fail_cleanly() -> Iterator[None]:
    """Turn pipeline errors into one clear line on stderr and exit code 1."""
    try:
        yield
    except PipelineError as exc:
        logger.debug("failure", exc_info=exc)
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(1) from exc


def main() -> None:
    """Run the command line."""
    app()
