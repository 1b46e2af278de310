"""Kafka errors as the pipeline's families: what a broker outage raises must pause, never kill."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from pipeline.adapters.kafka.common import translate
from pipeline.adapters.kafka.consumer import KafkaRecordStream
from pipeline.config import KafkaSettings
from pipeline.domain.errors import BrokerMisconfigured, BrokerUnavailable


# Seen by `make chaos` (broker-restart, kafka-cut): a commit right after the broker came back
# failed with _WAIT_COORD, which was not transient, and the consumer exited.
@pytest.mark.parametrize(
    "code",
    [
        KafkaError._WAIT_COORD,
        KafkaError._ASSIGNMENT_LOST,
        KafkaError._MAX_POLL_EXCEEDED,
        KafkaError._TRANSPORT,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.REBALANCE_IN_PROGRESS,
    ],
)
def test_a_commit_failing_during_a_broker_outage_is_transient(code: int) -> None:
    error = translate(KafkaException(KafkaError(code)), "commit")
    assert isinstance(error, BrokerUnavailable), error


def test_a_missing_topic_stays_systemic() -> None:
    error = translate(KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)), "produce")
    assert isinstance(error, BrokerMisconfigured)


class AssigningConsumer:
    """What a rebalance callback is handed: records the committed-offset questions asked."""

    def __init__(self) -> None:
        self.asked: list[list[TopicPartition]] = []
        self.resumed: list[list[TopicPartition]] = []

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        self.asked.append(partitions)
        return [TopicPartition(tp.topic, tp.partition, 7) for tp in partitions]

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.resumed.append(partitions)


# Seen by `make chaos` (rolling-restart): SIGTERM during a rebalance, close() assigned no
# partition and asked for their committed offsets, which waited 10 s before the exit.
def test_an_empty_assignment_asks_the_broker_nothing() -> None:
    stream = KafkaRecordStream(KafkaSettings(bootstrap_servers="127.0.0.1:9", topic="t"))
    try:
        callback = AssigningConsumer()
        stream._on_assign(callback, [])  # type: ignore[arg-type]
        stream._on_assign(callback, [TopicPartition("t", 2)])  # type: ignore[arg-type]
    finally:
        stream.close()
    assert callback.asked == [[TopicPartition("t", 2)]]
    assert stream.owned == {2}
    assert stream._committed == {2: 7}
