"""The command line: `python -m pipeline batch|db|generate|dev|…`. Thin: parse, bootstrap, run."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from pydantic import SecretStr
from rich.console import Console

from pipeline.config import (
    BatchSettings,
    DatabaseSettings,
    KafkaSettings,
    MlApiSettings,
    ValidationSettings,
)
from pipeline.domain.errors import PipelineError
from pipeline.entrypoints.logs import configure_logging

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Transaction categorisation pipeline: batch (CSV) and streaming (Kafka) into PostgreSQL.",
)
db_app = typer.Typer(no_args_is_help=True, help="Database schema (alembic migrations).")
dev_app = typer.Typer(no_args_is_help=True, help="Local services for development and tests.")
topics_app = typer.Typer(no_args_is_help=True, help="Kafka topics.")
kafka_app = typer.Typer(no_args_is_help=True, help="The local Kafka broker.")
app.add_typer(db_app, name="db")
app.add_typer(dev_app, name="dev")
app.add_typer(topics_app, name="topics")
dev_app.add_typer(kafka_app, name="kafka")
KAFKA_STATE_DIR = Path(".data/kafka")
console = Console()
logger = logging.getLogger("pipeline")

DatabaseUrl = Annotated[
    Optional[str],  # noqa: UP045 - typer needs Optional here
    typer.Option(
        envvar="DATABASE_URL", help="PostgreSQL URL; embedded server when unset.", show_envvar=True
    ),
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
) -> None:
    """Categorise a CSV file into PostgreSQL; exit 0 when the run completed (rejects included)."""
    from pipeline.entrypoints.batch import render_summary, run_batch, run_batch_parallel
    from pipeline.entrypoints.bootstrap import core

    ml = MlApiSettings()
    overrides = {"api_url": ml_api_url, "concurrency": ml_concurrency, "batch_size": ml_batch_size}
    ml = ml.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    size = chunk_size or BatchSettings().chunk_size
    validation = ValidationSettings()
    with _fail_cleanly(), core(_db(database_url), ml, validation) as built:
        if workers > 1:
            resolved = _db(built.database_url)  # the children reuse this server, embedded or not
            settings = (resolved, ml, validation)
            outcome = run_batch_parallel(path, built.store, settings, size, workers, progress)
        else:
            outcome = run_batch(path, built.store, built.use_case, size, show_progress=progress)
    render_summary(outcome, console)


@app.command()
def generate(
    path: Annotated[Path, typer.Argument(help="File to write.")],
    rows: Annotated[int, typer.Option(help="Number of rows.")] = 1_000_000,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same file).")] = 42,
) -> None:
    """Write a synthetic file in the challenge's format (deterministic)."""
    from pipeline.dev.generate import generate as write

    write(path, rows, seed)
    console.print(f"wrote {rows} rows to {path}")


@db_app.command("upgrade")
def db_upgrade(database_url: DatabaseUrl = None) -> None:
    """Apply the alembic migrations up to the latest."""
    from pipeline.adapters.postgres import make_engine
    from pipeline.adapters.postgres_schema import current_revision, upgrade
    from pipeline.entrypoints.bootstrap import database_url as resolve

    with _fail_cleanly():
        engine = make_engine(resolve(_db(database_url)))
        try:
            upgrade(engine)
            console.print(f"database schema at revision {current_revision(engine)}")
        finally:
            engine.dispose()


@db_app.command("current")
def db_current(database_url: DatabaseUrl = None) -> None:
    """Print the schema revision of the database and of the code."""
    from pipeline.adapters.postgres import make_engine
    from pipeline.adapters.postgres_schema import current_revision, head_revision
    from pipeline.entrypoints.bootstrap import database_url as resolve

    with _fail_cleanly():
        engine = make_engine(resolve(_db(database_url)))
        try:
            console.print(f"database: {current_revision(engine)}  code: {head_revision()}")
        finally:
            engine.dispose()


@dev_app.command("postgres")
def dev_postgres(action: Annotated[str, typer.Argument(help="up, down or url")]) -> None:
    """Start/stop the embedded PostgreSQL under .data/postgres (data kept)."""
    from pipeline.adapters import embedded_pg

    datadir = DatabaseSettings().embedded_data_dir
    with _fail_cleanly():
        if action == "up":
            print(embedded_pg.up(datadir))
        elif action == "down":
            print("stopped" if embedded_pg.down(datadir) else "not running")
        elif action == "url":
            url = embedded_pg.running_url(datadir)
            if url is None:
                raise typer.Exit(1)
            print(url)
        else:
            raise typer.BadParameter("expected up, down or url")


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
    from pipeline.entrypoints.stream import run_stream

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
    from pipeline.entrypoints.produce import produce as publish

    interactive = sys.stderr.isatty() if progress is None else progress
    with _fail_cleanly():
        result = publish(path, _kafka(bootstrap_servers, topic), rate, limit, interactive)
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
    from pipeline.adapters.kafka_producer import create_topics

    with _fail_cleanly():
        for name, state in create_topics(_kafka(bootstrap_servers), partitions).items():
            console.print(f"{name}: {state}")


@app.command()
def redrive(
    reason: Annotated[str | None, typer.Option(help="Only dead letters with this reason.")] = None,  # noqa: UP045
    since: Annotated[str | None, typer.Option(help="Only those failed since (ISO time).")] = None,  # noqa: UP045
    max_replays: Annotated[int, typer.Option(envvar="REDRIVE_MAX_REPLAYS")] = 3,
    database_url: DatabaseUrl = None,
    bootstrap_servers: Bootstrap = None,
) -> None:
    """Send pending dead letters back to the main topic; quarantine those replayed too often."""
    from datetime import datetime

    from pipeline.entrypoints.redrive import redrive as send_back

    moment = datetime.fromisoformat(since) if since else None
    with _fail_cleanly():
        result = send_back(
            _kafka(bootstrap_servers), _db(database_url), reason, moment, max_replays
        )
    console.print(f"redriven {result.redriven}, quarantined {result.quarantined}")


@kafka_app.command("up")
def kafka_up(
    port: Annotated[int, typer.Option(help="Loopback port (the default bootstrap's).")] = 9092,
) -> None:
    """Start the local Kafka broker (jars from Maven Central); prints the bootstrap address."""
    from pipeline.dev import kafka_broker

    try:
        print(kafka_broker.up(KAFKA_STATE_DIR, port))
    except kafka_broker.BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(1) from exc


@kafka_app.command("down")
def kafka_down() -> None:
    """Stop the local Kafka broker (data kept)."""
    from pipeline.dev import kafka_broker

    print("stopped" if kafka_broker.down(KAFKA_STATE_DIR) else "not running")


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
