"""Kafka errors as the pipeline's families: what a broker outage raises must pause, never kill."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from pipeline.adapters.kafka.common import translate
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
