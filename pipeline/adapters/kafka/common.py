"""Shared Kafka plumbing: client configuration from settings, errors turned into domain errors."""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError, KafkaException

from pipeline.config import KafkaSettings
from pipeline.domain.errors import BrokerUnavailable, PipelineError


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
    if error is None or error.retriable() or error.code() in _TRANSIENT_CODES:
        return BrokerUnavailable(f"{action}: {exc}")
    return PipelineError(f"{action}: {exc}")


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
}
