"""Ports: one Protocol per outside system, taking and returning domain types."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

import polars as pl

from pipeline.domain.chunks import RawChunk
from pipeline.domain.model import (
    DeadLetterStatus,
    FileFacts,
    Outcome,
    ParkedRecord,
    RawRecord,
    Reason,
    Rejection,
    RunKind,
    RunStatus,
)
from pipeline.domain.plans import FilePlan, Window


class TransactionSource(Protocol):
    """Where raw records come from (a CSV file, a Kafka topic...)."""

    def records(self) -> Iterator[RawRecord]:
        """Yield raw records in source order."""
        ...


class TransactionFile(Protocol):
    """A file of records, planned once into windows that are then read alone, chunk by chunk."""

    def facts(self) -> FileFacts:
        """Cheap checks (exists, readable, header): raise ConfigurationError if unusable."""
        ...

    def plan(self, rows_per_window: int) -> FilePlan:
        """Windows of about `rows_per_window` records at record boundaries, in one pass."""
        ...

    def chunks(self, plan: FilePlan, window: Window, chunk_rows: int) -> Iterator[RawChunk]:
        """The window's records as chunks; raise FileChanged if the file is not as planned."""
        ...

    def estimate_rows(self) -> int:
        """A quick row count for progress bars (physical lines minus the header)."""
        ...


class Categoriser(Protocol):
    """The ML service that gives each transaction a category."""

    def prepare(self, rows: pl.DataFrame) -> pl.DataFrame:
        """`rows` with what the categoriser computes once per chunk rather than once per call
        (the HTTP adapter: each row's JSON item); `categorise_batch` then gets slices of it."""
        ...

    def categorise_batch(self, batch: pl.DataFrame) -> pl.DataFrame:
        """`category` and `model_version` for each row of `batch` (valid transactions, as
        `validation.VALID_COLUMNS`), in the same order; or raise.

        Raises TransientError when the service is unavailable (after its own retries) and
        PermanentError when it refuses this batch for its content.
        """
        ...


class TransactionStore(Protocol):
    """Durable storage of categorised transactions."""

    def stored(self, ids: pl.Series) -> pl.DataFrame:
        """(`id`, `content_sha256`) of each of `ids` (canonical UUID text) already stored and
        categorised; the fingerprint is null for rows stored before fingerprints existed."""
        ...

    def upsert(self, rows: pl.DataFrame) -> None:
        """Upsert categorised transactions (`validation.VALID_COLUMNS` + `content_sha256`,
        `category`, `model_version`) in one database transaction (idempotent)."""
        ...

    def insert_new(self, rows: pl.DataFrame) -> bool:
        """Insert categorised transactions (as `upsert`) in one database transaction if none
        of their ids is stored; False, with nothing written, if one is."""
        ...


class DeadLetterSink(Protocol):
    """Where records that cannot be categorised are parked with their reason."""

    def send(self, rejections: Iterable[Rejection]) -> None:
        """Park the rejections durably (idempotent for the same record and position)."""
        ...


class RecordStream(Protocol):
    """A partitioned log of raw records consumed by a group (Kafka), committed explicitly."""

    def poll(self, max_records: int, timeout_s: float) -> list[RawRecord]:
        """Up to `max_records` records, waiting at most `timeout_s` for the first (a
        RecordBatch when the source parsed them together)."""
        ...

    def commit(self, records: Sequence[RawRecord]) -> None:
        """Durably mark these records (and everything before them in their partitions) done."""
        ...

    def owns(self, record: RawRecord) -> bool:
        """Whether this consumer still owns the record's partition (false after a revoke)."""
        ...

    def pause(self) -> None:
        """Stop fetching while a dependency is down, but stay in the group."""
        ...

    def resume(self) -> None:
        """Fetch again."""
        ...

    def idle(self, seconds: float) -> None:
        """Wait while serving group membership (heartbeats, rebalances)."""
        ...

    def lag(self) -> dict[int, int]:
        """Records not yet committed, per owned partition (from local state, cheap)."""
        ...


class DeadLetterStore(Protocol):
    """The dead letters parked in the database, for redrive."""

    def exclusive(self) -> AbstractContextManager[None]:
        """Hold the redrive lock for the block; raise if another redrive holds it."""
        ...

    def pending(
        self, reason: Reason | None, since: datetime | None, after_id: int, limit: int
    ) -> list[ParkedRecord]:
        """Up to `limit` pending dead letters from the stream with an id above `after_id`,
        oldest first."""
        ...

    def mark(self, ids: Sequence[int], status: DeadLetterStatus) -> None:
        """Set the status (redriven, quarantined) of these dead letters."""
        ...


class Republisher(Protocol):
    """Sends records back onto the main stream."""

    def republish(self, records: Sequence[ParkedRecord]) -> list[int]:
        """Publish every record with its replay count + 1; return the ids of those the broker
        acknowledged (all of them, unless it is unavailable)."""
        ...


class RunLog(Protocol):
    """Where runs of a file are recorded (the pipeline_runs table)."""

    def start_run(self, kind: RunKind, source: str, params: dict[str, Any]) -> UUID:
        """Record a run as running and return its id."""
        ...

    def finish_run(
        self, run_id: UUID, status: RunStatus, outcome: Outcome, error: str | None = None
    ) -> None:
        """Record how the run ended, with its counts."""
        ...


class EventSink(Protocol):
    """Publishes events (key, serialised value) onto the main topic, counting deliveries."""

    sent: int
    failed: int

    def publish(self, key: str | None, value: bytes) -> None:
        """Queue one event for delivery (blocks while the local queue is full)."""
        ...

    def flush(self) -> int:
        """Wait for outstanding deliveries; return how many are still unacknowledged."""
        ...
