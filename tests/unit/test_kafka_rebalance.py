"""The consumer's rebalance callbacks, handed a fake of the consumer they are given."""

from __future__ import annotations

from confluent_kafka import TopicPartition

from pipeline.adapters.kafka.consumer import KafkaRecordStream
from pipeline.config import KafkaSettings


class AssigningConsumer:
    """What a rebalance callback is handed: records the committed-offset questions asked."""

    def __init__(self) -> None:
        self.asked: list[list[TopicPartition]] = []

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        self.asked.append(partitions)
        return [TopicPartition(tp.topic, tp.partition, 7) for tp in partitions]

    def resume(self, partitions: list[TopicPartition]) -> None:
        return None


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
