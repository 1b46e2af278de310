"""Kafka producers: the dead-letter queue (a DeadLetterSink) and the CSV replay producer."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from pipeline.adapters.kafka.common import classify, client_config, translate
from pipeline.adapters.kafka.consumer import REDRIVE_HEADER
from pipeline.config import KafkaSettings
from pipeline.domain.errors import BrokerUnavailable
from pipeline.domain.model import ParkedRecord, Rejection

logger = logging.getLogger(__name__)

Headers = list[tuple[str, str | bytes | None]]

_RELIABLE = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 20,
    "compression.type": "lz4",
    "message.timeout.ms": 30000,
}


def make_producer(settings: KafkaSettings, **extra: Any) -> Producer:
    """An idempotent producer (no duplicates from its own retries, order kept per partition)."""
    limit = {"message.max.bytes": settings.max_message_bytes}
    return Producer(client_config(settings, **{**_RELIABLE, **limit, **extra}))


class KafkaDeadLetterQueue:
    """DeadLetterSink on the DLQ topic: original key and value, the error in headers.

    `send` returns only once the broker has acknowledged every message, so the caller may then
    commit the source offsets; a failure raises BrokerUnavailable (transient: retried).
    """

    def __init__(self, producer: Producer, topic: str, flush_timeout_s: float = 30.0) -> None:
        self.producer = producer
        self.topic = topic
        self.flush_timeout_s = flush_timeout_s

    def send(self, rejections: Iterable[Rejection]) -> None:
        failures: list[KafkaError] = []

        def report(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                failures.append(error)

        try:
            for rejection in rejections:
                position = rejection.position
                logger.warning(
                    "dead-lettered %s[%s]@%s: %s (%s)",
                    position.source,
                    position.partition,
                    position.offset,
                    rejection.reason,
                    rejection.detail[:200],
                    extra={
                        "topic": position.source,
                        "partition": position.partition,
                        "offset": position.offset,
                        "reason": rejection.reason,
                    },
                )
                self.producer.produce(
                    self.topic,
                    key=rejection.key.encode("utf-8", "surrogateescape") if rejection.key else None,
                    value=rejection.payload.encode("utf-8", "surrogateescape"),
                    headers=dlq_headers(rejection),
                    on_delivery=report,
                )
                self.producer.poll(0)
        except KafkaException as exc:
            raise translate(exc, "dead-letter produce") from exc
        except BufferError as exc:
            raise BrokerUnavailable(f"dead-letter queue full: {exc}") from exc
        left = self.producer.flush(self.flush_timeout_s)
        if left or failures:
            message = f"dead letters not acknowledged: {left} pending, {failures[:3]}"
            raise classify(failures[0] if failures else None, message)


def dlq_headers(rejection: Rejection) -> Headers:
    """The error class, message, stage and source position, as Kafka headers."""
    position = rejection.position
    values = {
        "x-error-class": rejection.error,
        "x-error-reason": rejection.reason,
        "x-error-message": rejection.detail[:1000],
        "x-error-stage": rejection.stage.value,
        "x-source-topic": position.source[:1000],
        "x-source-partition": "" if position.partition is None else str(position.partition),
        "x-source-offset": "" if position.offset is None else str(position.offset),
        "x-source-line": "" if position.line is None else str(position.line),
        "x-attempts": str(rejection.attempts),
        REDRIVE_HEADER: str(rejection.replays),
        "x-failed-at": rejection.rejected_at.astimezone(UTC).isoformat(),
    }
    if rejection.payload_bytes is not None:  # the value is the payload's first bytes only
        values["x-payload-bytes"] = str(rejection.payload_bytes)
        values["x-payload-sha256"] = rejection.payload_sha256 or ""
    return [(name, value.encode("utf-8", "backslashreplace")) for name, value in values.items()]


class EventPublisher:
    """Publishes events with delivery reports counted (sent / failed)."""

    def __init__(self, producer: Producer, topic: str) -> None:
        self.producer = producer
        self.topic = topic
        self.sent = 0
        self.failed = 0
        self.on_sent: Callable[[], None] | None = None

    def publish(self, key: str | None, value: bytes, headers: Headers | None = None) -> None:
        while True:
            try:
                self.producer.produce(
                    self.topic,
                    key=key.encode() if key else None,
                    value=value,
                    headers=headers,
                    on_delivery=self._report,
                )
                break
            except BufferError:
                self.producer.poll(0.1)  # local queue full: let deliveries drain, then retry
        self.producer.poll(0)

    def flush(self, timeout_s: float = 60.0) -> int:
        """Wait for outstanding deliveries; returns how many are still unacknowledged."""
        return int(self.producer.flush(timeout_s))

    def _report(self, error: KafkaError | None, _message: Message) -> None:
        if error is None:
            self.sent += 1
            if self.on_sent:
                self.on_sent()
        else:
            self.failed += 1
            logger.error("delivery failed: %s", error)


def create_topics(settings: KafkaSettings, partitions: int | None = None) -> dict[str, str]:
    """Create the main and DLQ topics if missing; returns what happened to each (idempotent)."""
    admin = AdminClient(client_config(settings))
    count = partitions or settings.partitions
    config = {"max.message.bytes": str(settings.max_message_bytes)}
    wanted = [
        NewTopic(name, count, 1, config=config) for name in (settings.topic, settings.dlq_topic)
    ]
    result: dict[str, str] = {}
    for name, future in admin.create_topics(wanted, request_timeout=30).items():
        try:
            future.result()
            result[name] = "created"
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise translate(exc, f"create topic {name}") from exc
            result[name] = "exists"
    return result


class KafkaRepublisher:
    """Republisher onto the main topic, counting replays in a header."""

    def __init__(self, producer: Producer, topic: str, flush_timeout_s: float = 60.0) -> None:
        self.producer = producer
        self.topic = topic
        self.flush_timeout_s = flush_timeout_s

    def republish(self, records: Sequence[ParkedRecord]) -> list[int]:
        """Publish the records; return the ids of those the broker acknowledged."""
        acknowledged: list[int] = []
        for record in records:
            headers: Headers = [(REDRIVE_HEADER, str(record.replays + 1).encode())]
            delivered = partial(_note_delivery, acknowledged, record.id)
            value = record.payload.encode("utf-8", "surrogateescape")
            key = record.key.encode("utf-8", "surrogateescape") if record.key else None
            while True:
                try:
                    self.producer.produce(
                        self.topic, key=key, value=value, headers=headers, on_delivery=delivered
                    )
                    break
                except BufferError:
                    self.producer.poll(0.1)  # local queue full: let deliveries drain
                except KafkaException as exc:
                    raise translate(exc, "redrive produce") from exc
            self.producer.poll(0)
        left = self.producer.flush(self.flush_timeout_s)
        if left:
            logger.warning("redrive: %d records not acknowledged in time", left)
        return acknowledged


def _note_delivery(
    acknowledged: list[int], record_id: int, error: KafkaError | None, _: Message
) -> None:
    if error is None:
        acknowledged.append(record_id)
    else:
        logger.error("redrive of dead letter %d failed: %s", record_id, error)
