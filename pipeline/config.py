"""Settings, one pydantic-settings class per concern, loaded once by the entry points."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

_COMMON = {"frozen": True, "env_file": ".env", "extra": "ignore"}


class DatabaseSettings(BaseSettings):
    """PostgreSQL; with no DATABASE_URL the command line starts an embedded server."""

    model_config = SettingsConfigDict(**_COMMON)  # type: ignore[typeddict-item]

    database_url: SecretStr | None = None
    embedded_data_dir: Path = Field(default=Path(".data/postgres"), alias="EMBEDDED_PG_DIR")


class MlApiSettings(BaseSettings):
    """The ML categorisation API and how the client treats it."""

    model_config = SettingsConfigDict(env_prefix="ML_", **_COMMON)  # type: ignore[typeddict-item]

    api_url: str = "http://127.0.0.1:8000"
    timeout_s: float = 10.0
    batch_size: int = Field(default=1000, ge=1)
    concurrency: int = Field(default=2, ge=1)
    retry_attempts: int = Field(default=6, ge=1)
    retry_initial_s: float = 0.2
    retry_max_s: float = 5.0
    # One call is bounded in total (a trickling answer too), and no new retry starts after the
    # budget: with the stream's batch deadline, a batch stays well under max.poll.interval.ms.
    total_timeout_s: float = Field(default=30.0, gt=0)
    retry_budget_s: float = Field(default=60.0, gt=0)


class ValidationSettings(BaseSettings):
    """Bounds applied to every record."""

    model_config = SettingsConfigDict(env_prefix="VALIDATION_", **_COMMON)  # type: ignore[typeddict-item]

    min_amount: Decimal = Decimal("-10000000")
    max_amount: Decimal = Decimal("10000000")
    timezone: str = "UTC"
    max_text_length: int = 500
    # A dead letter keeps at most this many bytes of its record (with the original size and
    # SHA-256 when cut), so any payload can be parked, in the table and on the DLQ topic.
    max_dead_letter_payload_bytes: int = Field(default=64 * 1024, ge=1024, le=512 * 1024)


class BatchSettings(BaseSettings):
    """The batch pipeline."""

    model_config = SettingsConfigDict(env_prefix="BATCH_", **_COMMON)  # type: ignore[typeddict-item]

    # Rows per chunk: 10,000 keeps the per-chunk costs small and the peak RSS under 300 MB
    # (measured: 50,000 gave ~400 MB for the same speed; 5,000 costs more per row).
    chunk_size: int = Field(default=10_000, ge=1)
    # Files a scheduled run may read (the Airflow `path` param): nothing outside this folder,
    # symlinks resolved. Relative to the project folder when relative.
    data_root: Path = Path("data")


class KafkaSettings(BaseSettings):
    """The broker, topics and consumer group of the streaming pipeline."""

    model_config = SettingsConfigDict(env_prefix="KAFKA_", **_COMMON)  # type: ignore[typeddict-item]

    bootstrap_servers: str = "127.0.0.1:9092"
    topic: str = "transactions"
    dlq_topic: str = "transactions.dlq"
    partitions: int = 6
    group_id: str = "txcat-categoriser"
    # Largest event, on the topics (created with it) and for the producers: a row of the CSV
    # source may hold a 1 MiB field. Dead-letter copies are capped far below it.
    max_message_bytes: int = Field(default=4 * 1024 * 1024, ge=1024 * 1024)
    batch_max_records: int = 5000
    # No new ML call of a batch starts after this (the ML client's retry budget and total
    # timeout bound the one in flight): together well under max.poll.interval.ms (300 s).
    batch_deadline_s: float = Field(default=120.0, gt=0, le=200)
    batch_max_ms: int = 50
    security_protocol: str = "PLAINTEXT"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
