"""The Kafka adapters against the real broker: record mapping, DLQ headers, topics, commits."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import orjson
import polars as pl
import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from polars.testing import assert_frame_equal

from pipeline.adapters.event_files import file_events
from pipeline.adapters.kafka.consumer import REDRIVE_HEADER, KafkaRecordStream, to_record
from pipeline.adapters.kafka.producer import (
    KafkaDeadLetterQueue,
    KafkaRepublisher,
    create_topics,
    make_producer,
)
from pipeline.config import KafkaSettings
from pipeline.domain.chunks import RecordBatch, chunk_of_records, records_frame
from pipeline.domain.model import (
    ParkedRecord,
    RawRecord,
    Reason,
    Rejection,
    SourcePosition,
    Stage,
    source_id_of,
)

pytestmark = pytest.mark.kafka

Headers = list[tuple[str, str | bytes | None]]


def settings_for(bootstrap: str, partitions: int = 1) -> KafkaSettings:
    topic = f"adapters-{uuid4().hex[:10]}"
    return KafkaSettings(
        bootstrap_servers=bootstrap,
        topic=topic,
        dlq_topic=f"{topic}.dlq",
        group_id=f"group-{topic}",
        partitions=partitions,
    )


def produce(
    bootstrap: str,
    topic: str,
    messages: list[tuple[bytes | None, bytes | None, Headers | None]],
    partition: int = 0,
) -> None:
    delivered: list[KafkaError | None] = []
    producer = Producer({"bootstrap.servers": bootstrap})
    for key, value, headers in messages:
        producer.produce(
            topic,
            key=key,
            value=value,
            headers=headers,
            partition=partition,
            on_delivery=lambda error, _msg: delivered.append(error),
        )
    assert producer.flush(30) == 0
    assert delivered == [None] * len(messages)


def read_all(bootstrap: str, topic: str, count: int, partitions: int = 1) -> list[Message]:
    """The first `count` messages of the topic, by assignment (no group offsets involved)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    messages: list[Message] = []
    deadline = time.monotonic() + 30
    try:
        while len(messages) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None, message.error()
            messages.append(message)
    finally:
        consumer.close()
    assert len(messages) == count, f"read {len(messages)} of {count} messages from {topic}"
    return messages


def headers_of(message: Message) -> dict[str, str]:
    decoded: dict[str, str] = {}
    headers = message.headers() or []
    assert isinstance(headers, list)  # confluent-kafka hands headers back as (name, value) pairs
    for name, value in headers:
        assert isinstance(value, bytes), (name, value)
        decoded[name] = value.decode()
    return decoded


def poll_until(stream: KafkaRecordStream, count: int, timeout: float = 30) -> list[RawRecord]:
    records: list[RawRecord] = []
    deadline = time.monotonic() + timeout
    while len(records) < count and time.monotonic() < deadline:
        records.extend(stream.poll(100, 0.5))
    assert len(records) == count, f"polled {len(records)} of {count} records"
    return records


def committed(settings: KafkaSettings, partitions: int) -> dict[int, int]:
    consumer = Consumer(
        {"bootstrap.servers": settings.bootstrap_servers, "group.id": settings.group_id}
    )
    try:
        parts = [TopicPartition(settings.topic, p) for p in range(partitions)]
        return {tp.partition: tp.offset for tp in consumer.committed(parts, timeout=10)}
    finally:
        consumer.close()


@pytest.fixture
def kafka(kafka_bootstrap: str) -> KafkaSettings:
    """Settings with a topic pair and group of their own, topics created (1 partition)."""
    settings = settings_for(kafka_bootstrap)
    create_topics(settings)
    return settings


@pytest.fixture
def stream_factory() -> Iterator[Callable[[KafkaSettings], KafkaRecordStream]]:
    opened: list[KafkaRecordStream] = []

    def open_stream(settings: KafkaSettings) -> KafkaRecordStream:
        stream = KafkaRecordStream(settings)
        opened.append(stream)
        return stream

    yield open_stream
    for stream in opened:
        stream.close()


# --- to_record on real consumed messages ---------------------------------------------------


MAPPING_CASES: list[tuple[bytes | None, bytes | None, Headers | None]] = [
    (b"k-object", b'{"source_id": "abc-1", "amount": "1.00"}', None),
    (b"k-not-json", b"this is not json", None),
    (b"k-array", b'[{"source_id": "abc-2"}]', None),
    (b"k-empty", b"", None),
    (b"k-redriven", b'{"id": "abc-3"}', [(REDRIVE_HEADER, b"2")]),
    (b"k-bad-utf8", b'{"id": "\xff"}', None),
    (None, b'{"id": "abc-4"}', None),
]


@pytest.fixture(scope="module")
def mapped(kafka_bootstrap: str) -> dict[str | None, RawRecord]:
    """Each MAPPING_CASES message produced, consumed back, and passed through to_record."""
    settings = settings_for(kafka_bootstrap)
    create_topics(settings)
    produce(kafka_bootstrap, settings.topic, MAPPING_CASES)
    messages = read_all(kafka_bootstrap, settings.topic, len(MAPPING_CASES))
    return {record.key: record for record in map(to_record, messages)}


def test_json_object_becomes_fields_and_its_source_id_is_the_record_source_id(
    mapped: dict[str | None, RawRecord],
) -> None:
    record = mapped["k-object"]
    assert record.fields == {"source_id": "abc-1", "amount": "1.00"}
    assert source_id_of(record) == "abc-1"
    assert record.parse_error is None
    assert record.raw == '{"source_id": "abc-1", "amount": "1.00"}'
    assert record.replays == 0


def test_position_is_topic_partition_and_offset_in_produce_order(
    mapped: dict[str | None, RawRecord],
) -> None:
    positions = [record.position for record in mapped.values()]
    topic = positions[0].source
    assert topic.startswith("adapters-")
    expected = [SourcePosition(topic, partition=0, offset=o) for o in range(len(positions))]
    assert positions == expected


def test_non_json_value_is_undecodable_with_the_raw_text_kept(
    mapped: dict[str | None, RawRecord],
) -> None:
    record = mapped["k-not-json"]
    assert (record.fields, record.parse_reason) == (None, "undecodable")
    assert record.raw == "this is not json"
    assert record.parse_error is not None and record.parse_error.startswith("not JSON")


def test_invalid_utf8_value_is_undecodable_not_a_crash(
    mapped: dict[str | None, RawRecord],
) -> None:
    record = mapped["k-bad-utf8"]
    assert (record.fields, record.parse_reason) == (None, "undecodable")
    assert record.raw.encode("utf-8", "surrogateescape") == b'{"id": "\xff"}'


def test_json_array_is_invalid_shape(mapped: dict[str | None, RawRecord]) -> None:
    record = mapped["k-array"]
    assert (record.fields, record.parse_reason) == (None, "invalid_shape")
    assert record.parse_error == "JSON list, not an object"


def test_empty_value_is_an_empty_message(mapped: dict[str | None, RawRecord]) -> None:
    record = mapped["k-empty"]
    assert (record.fields, record.parse_reason, record.raw) == (None, "empty_message", "")


def test_redrive_count_header_becomes_replays(mapped: dict[str | None, RawRecord]) -> None:
    assert mapped["k-redriven"].replays == 2
    assert mapped["k-redriven"].fields == {"id": "abc-3"}


def test_key_is_decoded_and_a_missing_key_is_none(mapped: dict[str | None, RawRecord]) -> None:
    assert set(mapped) == {key.decode() if key else None for key, _, _ in MAPPING_CASES}
    assert mapped[None].fields == {"id": "abc-4"}


def test_event_time_is_the_produce_timestamp_in_epoch_seconds(
    mapped: dict[str | None, RawRecord],
) -> None:
    now = time.time()
    for record in mapped.values():
        assert record.event_time is not None
        assert now - 600 < record.event_time <= now + 1


# --- KafkaDeadLetterQueue ------------------------------------------------------------------


def test_dead_letter_carries_original_key_value_and_error_headers(kafka: KafkaSettings) -> None:
    rejected_at = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    rejection = Rejection(
        position=SourcePosition(kafka.topic, partition=3, offset=41),
        payload='{"id": "x-1", "amount": "abc"}',
        reason=Reason.INVALID_AMOUNT,
        detail="amount 'abc' is not a number",
        stage=Stage.VALIDATE,
        error="InvalidRecord",
        attempts=2,
        key="x-1",
        replays=1,
        rejected_at=rejected_at,
    )
    queue = KafkaDeadLetterQueue(make_producer(kafka), kafka.dlq_topic)

    queue.send([rejection])

    [message] = read_all(kafka.bootstrap_servers, kafka.dlq_topic, 1)
    assert message.key() == b"x-1"
    assert message.value() == b'{"id": "x-1", "amount": "abc"}'
    assert headers_of(message) == {
        "x-error-class": "InvalidRecord",
        "x-error-reason": "invalid_amount",
        "x-error-message": "amount 'abc' is not a number",
        "x-error-stage": "validate",
        "x-source-topic": kafka.topic,
        "x-source-partition": "3",
        "x-source-offset": "41",
        "x-source-line": "",
        "x-attempts": "2",
        REDRIVE_HEADER: "1",
        "x-failed-at": "2024-05-01T12:30:00+00:00",
    }


def test_dead_letter_of_an_undecodable_payload_keeps_its_bytes(kafka: KafkaSettings) -> None:
    original = b"\xff\xfe not utf-8"
    produce(kafka.bootstrap_servers, kafka.topic, [(b"bin", original, None)])
    [source] = read_all(kafka.bootstrap_servers, kafka.topic, 1)
    record = to_record(source)
    rejection = Rejection(
        record.position,
        record.raw,
        record.parse_reason,
        record.parse_error or "",
        Stage.PARSE,
        key=record.key,
    )

    KafkaDeadLetterQueue(make_producer(kafka), kafka.dlq_topic).send([rejection])

    [message] = read_all(kafka.bootstrap_servers, kafka.dlq_topic, 1)
    assert message.value() == original
    headers = headers_of(message)
    assert headers["x-error-reason"] == "undecodable"
    assert headers["x-source-offset"] == "0"


# --- create_topics -------------------------------------------------------------------------


def test_create_topics_is_idempotent_with_the_configured_partition_count(
    kafka_bootstrap: str,
) -> None:
    settings = settings_for(kafka_bootstrap, partitions=4)

    first = create_topics(settings)
    second = create_topics(settings)

    assert first == {settings.topic: "created", settings.dlq_topic: "created"}
    assert second == {settings.topic: "exists", settings.dlq_topic: "exists"}
    topics = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=30).topics
    assert len(topics[settings.topic].partitions) == 4
    assert len(topics[settings.dlq_topic].partitions) == 4


# --- KafkaRepublisher ----------------------------------------------------------------------


def test_republisher_sends_key_and_payload_with_redrive_count_one_higher(
    kafka: KafkaSettings,
) -> None:
    records = [
        ParkedRecord(1, "k-1", '{"id": "r-1"}', "rejected_by_model", replays=0),
        ParkedRecord(2, None, '{"id": "r-2"}', "rejected_by_model", replays=2),
    ]

    KafkaRepublisher(make_producer(kafka), kafka.topic).republish(records)

    messages = read_all(kafka.bootstrap_servers, kafka.topic, 2)
    assert [(m.key(), m.value()) for m in messages] == [
        (b"k-1", b'{"id": "r-1"}'),
        (None, b'{"id": "r-2"}'),
    ]
    assert [m.headers() for m in messages] == [[(REDRIVE_HEADER, b"1")], [(REDRIVE_HEADER, b"3")]]
    assert [to_record(m).replays for m in messages] == [1, 3]


# --- KafkaRecordStream ---------------------------------------------------------------------


def test_stream_commits_offset_after_the_highest_record_per_partition(
    kafka_bootstrap: str, stream_factory: Callable[[KafkaSettings], KafkaRecordStream]
) -> None:
    settings = settings_for(kafka_bootstrap, partitions=3)
    create_topics(settings)
    sizes = {0: 4, 1: 2, 2: 3}
    for partition, size in sizes.items():
        values = [orjson.dumps({"id": f"{partition}-{i}"}) for i in range(size)]
        produce(kafka_bootstrap, settings.topic, [(None, v, None) for v in values], partition)
    stream = stream_factory(settings)

    records = poll_until(stream, sum(sizes.values()))
    assert all(stream.owns(record) for record in records)
    partition_0 = [r for r in records if r.position.partition == 0]
    stream.commit(list(reversed(partition_0[:2])))  # order must not matter

    assert committed(settings, 3) == {0: 2, 1: -1001, 2: -1001}  # -1001: nothing committed

    stream.commit(records)

    assert committed(settings, 3) == {0: 4, 1: 2, 2: 3}


def test_stream_lag_is_the_records_not_yet_committed(
    kafka: KafkaSettings, stream_factory: Callable[[KafkaSettings], KafkaRecordStream]
) -> None:
    values = [orjson.dumps({"id": f"l-{i}"}) for i in range(6)]
    produce(kafka.bootstrap_servers, kafka.topic, [(None, v, None) for v in values])
    stream = stream_factory(kafka)
    records = poll_until(stream, 6)

    assert stream.lag() == {0: 6}
    stream.commit(records[:4])
    assert stream.lag() == {0: 2}
    stream.commit(records)
    assert stream.lag() == {0: 0}


def test_stream_resumes_after_pause_without_losing_messages_fetched_meanwhile(
    kafka: KafkaSettings, stream_factory: Callable[[KafkaSettings], KafkaRecordStream]
) -> None:
    first = [orjson.dumps({"id": f"a-{i}"}) for i in range(3)]
    produce(kafka.bootstrap_servers, kafka.topic, [(None, v, None) for v in first])
    stream = stream_factory(kafka)
    batch = poll_until(stream, 3)

    stream.pause()
    later = [orjson.dumps({"id": f"b-{i}"}) for i in range(5)]
    produce(kafka.bootstrap_servers, kafka.topic, [(None, v, None) for v in later])
    stream.idle(2.0)
    assert stream.poll(100, 0.5) == []  # still paused: nothing handed out
    stream.resume()
    rest = poll_until(stream, 5)

    assert [r.position.offset for r in batch + rest] == list(range(8))
    stream.commit(batch + rest)
    assert committed(kafka, 1) == {0: 8}


def test_malformed_redrive_header_does_not_crash_the_consumer(kafka: KafkaSettings) -> None:
    produce(
        kafka.bootstrap_servers, kafka.topic, [(b"k", b'{"id": "h-1"}', [(REDRIVE_HEADER, b"two")])]
    )
    [message] = read_all(kafka.bootstrap_servers, kafka.topic, 1)

    record = to_record(message)

    assert record.replays == 0
    assert record.fields is not None and record.fields["id"] == "h-1"


def test_a_partition_revoked_while_paused_is_consumed_once_assigned_back(
    kafka_bootstrap: str, stream_factory: Callable[[KafkaSettings], KafkaRecordStream]
) -> None:
    """The broker-restart chaos scenario: paused on a transient fault, a rebalance takes
    partitions away, the stream resumes, they come back; they must not stay paused."""
    settings = settings_for(kafka_bootstrap, partitions=2)
    create_topics(settings)
    first = stream_factory(settings)
    first.poll(10, 1.0)
    wait_for(lambda: len(first.owned) == 2, first)

    first.pause()
    second = KafkaRecordStream(settings)
    wait_for(lambda: len(first.owned) == 1 and len(second.owned) == 1, first, second)
    first.resume()  # covers only the partition it still owns
    second.close()  # the other partition comes back
    wait_for(lambda: len(first.owned) == 2, first)

    for partition in (0, 1):
        values = [orjson.dumps({"id": f"p{partition}-{i}"}) for i in range(3)]
        produce(kafka_bootstrap, settings.topic, [(None, v, None) for v in values], partition)
    records = poll_until(first, 6)

    assert {r.position.partition for r in records} == {0, 1}


def wait_for(
    condition: Callable[[], bool], *polling: KafkaRecordStream, timeout: float = 60
) -> None:
    """Poll the streams (rebalances run inside poll) until ``condition`` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "rebalance did not happen in time"
        for stream in polling:
            assert stream.poll(10, 0.2) == []


def test_the_producers_events_are_polled_as_one_batch_parsed_together(
    kafka: KafkaSettings,
    stream_factory: Callable[[KafkaSettings], KafkaRecordStream],
    tmp_path: Path,
) -> None:
    csv = tmp_path / "t.csv"
    rows = [
        f'{i};"Carte n°{i} ""EDF""";-{i},50;2023-11-28 06:35:12;EDF;card;debit' for i in range(20)
    ]
    csv.write_text(
        "id;description;amount;timestamp;merchant;operation_type;side\n" + "\n".join(rows)
    )
    events = list(file_events(csv))
    produce(kafka.bootstrap_servers, kafka.topic, [(k.encode(), v, None) for k, v in events if k])
    stream = stream_factory(kafka)

    batches = poll_batches(stream, len(events))

    assert all(isinstance(batch, RecordBatch) for batch in batches)
    records = [record for batch in batches for record in batch]
    messages = read_all(kafka.bootstrap_servers, kafka.topic, len(events))
    alone = [to_record(message) for message in messages]
    assert [r._replace(fields=dict(r.fields or {})) for r in records] == alone
    frames = pl.concat([chunk_of_records(batch).frame for batch in batches])
    assert_frame_equal(frames, records_frame(alone))


def test_a_batch_with_an_undecodable_event_is_decoded_one_by_one(
    kafka: KafkaSettings, stream_factory: Callable[[KafkaSettings], KafkaRecordStream]
) -> None:
    good = [orjson.dumps({"id": f"u-{i}", "description": "d"}) for i in range(5)]
    values = [*good[:2], b"{not json", *good[2:]]
    produce(kafka.bootstrap_servers, kafka.topic, [(None, v, None) for v in values])
    stream = stream_factory(kafka)

    records = poll_until(stream, len(values))

    assert [r.parse_reason for r in records if r.fields is None] == [Reason.UNDECODABLE]
    assert [r.fields["id"] for r in records if r.fields is not None] == [f"u-{i}" for i in range(5)]


def poll_batches(
    stream: KafkaRecordStream, count: int, timeout: float = 30
) -> list[list[RawRecord]]:
    batches: list[list[RawRecord]] = []
    deadline = time.monotonic() + timeout
    while sum(map(len, batches)) < count and time.monotonic() < deadline:
        if batch := stream.poll(100, 0.5):
            batches.append(batch)
    assert sum(map(len, batches)) == count
    return batches
