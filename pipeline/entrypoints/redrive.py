"""`python -m pipeline redrive`: wire the dead-letter store and the Kafka republisher."""

from __future__ import annotations

from datetime import datetime

from pipeline.adapters.kafka_producer import KafkaRepublisher, make_producer
from pipeline.adapters.postgres_dead_letters import PostgresDeadLetterStore
from pipeline.config import DatabaseSettings, KafkaSettings
from pipeline.entrypoints.bootstrap import database
from pipeline.redrive import RedriveResult
from pipeline.redrive import redrive as redrive_dead_letters


def redrive(
    kafka: KafkaSettings,
    db: DatabaseSettings,
    reason: str | None,
    since: datetime | None,
    max_replays: int,
) -> RedriveResult:
    """Redrive pending dead letters of the stream back to the main topic."""
    producer = make_producer(kafka)
    with database(db) as engine:
        return redrive_dead_letters(
            PostgresDeadLetterStore(engine),
            KafkaRepublisher(producer, kafka.topic),
            reason,
            since,
            max_replays,
        )
