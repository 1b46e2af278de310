"""KafkaRecordStream: a confluent-kafka consumer group member as a RecordStream port."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from pipeline.adapters.kafka.batch_decode import JsonFields, events_frame
from pipeline.adapters.kafka.common import client_config, translate
from pipeline.config import KafkaSettings
from pipeline.domain.chunks import RecordBatch
from pipeline.domain.model import RawRecord, Reason, SourcePosition

logger = logging.getLogger(__name__)

REDRIVE_HEADER = "x-redrive-count"
UNREADABLE_ROW = "x-unreadable-row"  # see pipeline.adapters.event_files
MAX_REPLAYS = 1_000_000  # far above any redrive limit; a larger header is clamped to it
_MAX_KEY_CHARS = 1000


class KafkaRecordStream:
    """Consumes a topic in a group; offsets are committed explicitly, synchronously, per batch.

    `enable.auto.commit` is off: `commit()` is called by the stream loop only after the batch
    is durable in PostgreSQL, so a crash replays at most the batches in hand (two: one being
    written, the next being prepared).
    """

    def __init__(self, settings: KafkaSettings, **overrides: Any) -> None:
        config = client_config(
            settings,
            **{
                "group.id": settings.group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "partition.assignment.strategy": "cooperative-sticky",
                "session.timeout.ms": 10000,
                "max.poll.interval.ms": 300000,
                **overrides,
            },
        )
        self.topic = settings.topic
        self.consumer = Consumer(config)
        self.owned: set[int] = set()
        self._committed: dict[int, int] = {}
        self._paused = False
        self.consumer.subscribe(
            [self.topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )

    def poll(self, max_records: int, timeout_s: float) -> list[RawRecord]:
        """Up to `max_records` records; broker-side errors are logged, never raised here.

        What arrived while the last batch was processed is returned at once; only when nothing
        is waiting does it wait up to `timeout_s` to gather a batch (waiting again on top of a
        batch's processing time would add `timeout_s` to every event's latency).
        """
        try:
            messages = self.consumer.consume(max_records, 0)
            if not messages:
                messages = self.consumer.consume(max_records, timeout_s)
        except KafkaException as exc:
            raise translate(exc, "consume") from exc
        consumed = []
        for message in messages:
            error = message.error()
            if error is not None:
                logger.warning(
                    "consume error on %s[%s]: %s", message.topic(), message.partition(), error
                )
                continue
            consumed.append(message)
        return to_records(consumed)

    def commit(self, records: Sequence[RawRecord]) -> None:
        """Commit, per partition, the offset after the highest one in `records`."""
        highest: dict[int, int] = {}
        for record in records:
            partition, offset = record.position.partition, record.position.offset
            if partition is not None and offset is not None:
                highest[partition] = max(offset, highest.get(partition, -1))
        offsets = [TopicPartition(self.topic, p, o + 1) for p, o in highest.items()]
        if not offsets:
            return
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            raise translate(exc, "commit") from exc
        self._committed.update((tp.partition, tp.offset) for tp in offsets)

    def owns(self, record: RawRecord) -> bool:
        return record.position.partition in self.owned

    def pause(self) -> None:
        self._paused = True
        self.consumer.pause(self.consumer.assignment())

    def resume(self) -> None:
        self._paused = False
        self.consumer.resume(self.consumer.assignment())

    def idle(self, seconds: float) -> None:
        """Keep polling (paused: returns nothing) so the group keeps us and rebalances run."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            message = self.consumer.poll(min(left, 0.5))
            if message is not None and message.error() is None:
                # Fetched before the pause took effect: not processed, not committed, so the
                # partition's committed offset still covers it; rewind so it is fetched again.
                partition, offset = message.partition() or 0, message.offset() or 0
                self.consumer.seek(TopicPartition(self.topic, partition, offset))

    def lag(self) -> dict[int, int]:
        """Per owned partition: high watermark minus committed offset, from local state only."""
        result: dict[int, int] = {}
        for partition in sorted(self.owned):
            try:
                low, high = self.consumer.get_watermark_offsets(
                    TopicPartition(self.topic, partition), cached=True
                )
            except KafkaException:
                continue
            if high < 0:  # no fetch response yet
                continue
            result[partition] = max(high - self._committed.get(partition, max(low, 0)), 0)
        return result

    def close(self) -> None:
        """Leave the group cleanly (triggers a rebalance for the others at once)."""
        self.consumer.close()

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.owned.update(tp.partition for tp in partitions)
        # Only for the lag gauge: never let it break the rebalance. Not asked for nothing: a
        # cooperative rebalance may assign no partition, and while the consumer leaves its
        # group (close() during a rebalance) that question waits out its whole timeout.
        try:
            for tp in consumer.committed(partitions, timeout=10) if partitions else []:
                if tp.offset >= 0:
                    self._committed[tp.partition] = tp.offset
        except KafkaException as exc:
            logger.warning("committed offsets unavailable on assign: %s", exc)
        # librdkafka keeps a partition's pause flag across rebalances: one paused, revoked
        # while paused (resume() only covers the assignment of the moment) and assigned back
        # would stay paused for good. Every partition given to us takes the stream's state.
        if self._paused:
            consumer.pause(partitions)
        else:
            consumer.resume(partitions)
        logger.info("assigned partitions %s", sorted(tp.partition for tp in partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Offsets are committed in the poll thread only, and only for partitions still owned
        # (owns()): a batch of a revoked partition that is being written, or written and not
        # yet committed, is replayed by the new owner, and finds itself stored (a no-op).
        self.owned.difference_update(tp.partition for tp in partitions)
        logger.info("revoked partitions %s", sorted(tp.partition for tp in partitions))


def to_records(messages: list[Message]) -> list[RawRecord]:
    """A consumed batch as raw records: parsed together when every event is in the
    producer's canonical form (a RecordBatch with their frame), else one by one."""
    frame = events_frame([message.value() for message in messages])
    if frame is None:
        return [to_record(message) for message in messages]
    return RecordBatch((to_record(message, parsed=True) for message in messages), frame)


def to_record(message: Message, parsed: bool = False) -> RawRecord:
    """A Kafka message as a raw record: JSON object fields, or a parse error saying why not.

    `parsed`: the batch was parsed together and this event is a canonical JSON object, so its
    fields are decoded only if asked for (a rejected event's dead letter). Called for every
    consumed message: positional arguments and no header dict unless the message has headers
    (NamedTuple keywords and partials cost more than the JSON parse).
    """
    position = SourcePosition(message.topic() or "", None, message.partition(), message.offset())
    value = message.value()
    headers = message.headers()
    replays = _replays(dict(headers).get(REDRIVE_HEADER), position) if headers else 0
    stamp_type, stamp = message.timestamp()
    key = _key(message.key())
    event_time = stamp / 1000 if stamp_type else None

    def rejected(raw: str, error: str, reason: Reason) -> RawRecord:
        return RawRecord(position, raw, None, error, reason, key, replays, event_time)

    if not value:
        return rejected("", "empty message body", Reason.EMPTY_MESSAGE)
    raw = value.decode("utf-8", "surrogateescape")
    if parsed:
        return RawRecord(
            position, raw, JsonFields(value), None, Reason.MALFORMED_ROW, key, replays, event_time
        )
    try:
        fields = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return rejected(raw, f"not JSON: {exc}", Reason.UNDECODABLE)
    if fields.__class__ is not dict:
        return rejected(raw, f"JSON {type(fields).__name__}, not an object", Reason.INVALID_SHAPE)
    unreadable = fields.get(UNREADABLE_ROW) if len(fields) == 1 else None
    if isinstance(unreadable, dict):  # a row the producer could not read, and why
        return rejected(
            str(unreadable.get("raw", raw)),
            str(unreadable.get("error") or "unreadable row")[:2000],
            _parse_reason(unreadable.get("reason")),
        )
    return RawRecord(position, raw, fields, None, Reason.MALFORMED_ROW, key, replays, event_time)


def _parse_reason(value: object) -> Reason:
    try:
        return Reason(str(value))
    except ValueError:
        return Reason.MALFORMED_ROW


def _replays(header: str | bytes | None, position: SourcePosition) -> int:
    """The redrive count header, parsed with bounds: ASCII digits only, clamped to MAX_REPLAYS.

    Anyone can set a header: a malformed or huge one must not jam the partition.
    """
    text = header.decode("ascii", "replace") if isinstance(header, bytes) else header or "0"
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 20:
        logger.warning("ignoring malformed %s header %r at %s", REDRIVE_HEADER, text[:40], position)
        return 0
    return min(int(text), MAX_REPLAYS)


def _key(key: bytes | None) -> str | None:
    """The message key as text (undecodable bytes escaped), bounded in length."""
    if key is None:
        return None
    return key[: _MAX_KEY_CHARS * 4].decode("utf-8", "backslashreplace")[:_MAX_KEY_CHARS]
