"""Shared Kafka plumbing: client configuration from settings, errors turned into domain errors."""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError, KafkaException

from pipeline.config import KafkaSettings
from pipeline.domain.errors import BrokerMisconfigured, BrokerUnavailable, PipelineError


def client_config(settings: KafkaSettings, **extra: Any) -> dict[str, Any]:
    """librdkafka configuration common to every client, plus `extra`."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "security.protocol": settings.security_protocol,
    }
    if settings.sasl_username:
        config["sasl.mechanisms"] = "PLAIN"
        config["sasl.username"] = settings.sasl_username
    if settings.sasl_password is not None:
        config["sasl.password"] = settings.sasl_password.get_secret_value()
    config.update(extra)
    return config


def translate(exc: KafkaException, action: str) -> PipelineError:
    """A typed domain error for a Kafka failure: retriable ones are transient."""
    error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
    return classify(error, f"{action}: {exc}")


def classify(error: KafkaError | None, message: str) -> PipelineError:
    """Transient (retry), systemic (the topic or its limits are wrong: pause), or other."""
    if error is not None and error.code() in SYSTEMIC_CODES:
        return BrokerMisconfigured(message)
    if error is None or error.retriable() or error.code() in _TRANSIENT_CODES:
        return BrokerUnavailable(message)
    return PipelineError(message)


# The same answer for every message: a deleted topic, no access, a size limit too small.
SYSTEMIC_CODES = {
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._UNKNOWN_TOPIC,
    KafkaError._UNKNOWN_PARTITION,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    KafkaError.MSG_SIZE_TOO_LARGE,
    KafkaError.INVALID_MSG_SIZE,
    KafkaError.TOPIC_EXCEPTION,
    KafkaError.UNKNOWN_TOPIC_ID,
}


_TRANSIENT_CODES = {
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._TIMED_OUT,
    KafkaError._MSG_TIMED_OUT,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError._STATE,
    # What a commit meets while the broker is down or just back: the group coordinator not
    # known yet, the membership expired meanwhile. The consumer rejoins; never fatal.
    KafkaError._WAIT_COORD,
    KafkaError._ASSIGNMENT_LOST,
    KafkaError._MAX_POLL_EXCEEDED,
}
