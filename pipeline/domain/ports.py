"""Ports: one Protocol per outside system, taking and returning domain types."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from pipeline.domain.model import (
    Categorisation,
    DeadLetterStatus,
    FileFacts,
    Outcome,
    ParkedRecord,
    RawRecord,
    Reason,
    Rejection,
    RunKind,
    RunStatus,
    Transaction,
)


class TransactionSource(Protocol):
    """Where raw records come from (a CSV file, a Kafka topic...)."""

    def records(self) -> Iterator[RawRecord]:
        """Yield raw records in source order."""
        ...


class TransactionFile(Protocol):
    """A file of records that can be read whole or by a window of its lines."""

    def facts(self) -> FileFacts:
        """Cheap checks (exists, readable, header): raise ConfigurationError if unusable."""
        ...

    def records(self, first_line: int = 0, last_line: int | None = None) -> Iterator[RawRecord]:
        """Yield the records starting on lines [first_line, last_line], in file order."""
        ...

    def estimate_rows(self) -> int:
        """A quick row count for progress bars (physical lines minus the header)."""
        ...


class Categoriser(Protocol):
    """The ML service that gives each transaction a category."""

    def categorise(self, transactions: Sequence[Transaction]) -> list[Categorisation]:
        """Return one categorisation per transaction, or raise.

        Raises TransientError when the service is unavailable (after its own retries) and
        PermanentError when it refuses this batch for its content.
        """
        ...


class TransactionStore(Protocol):
    """Durable storage of transactions and their categories."""

    def stored_fingerprints(self, ids: Sequence[UUID]) -> dict[UUID, str | None]:
        """For each of `ids` already stored and categorised, its content fingerprint
        (None when it was stored before fingerprints were recorded)."""
        ...

    def save(self, pairs: Sequence[tuple[Transaction, Categorisation]]) -> None:
        """Upsert transactions and categorisations in one database transaction (idempotent)."""
        ...


class DeadLetterSink(Protocol):
    """Where records that cannot be categorised are parked with their reason."""

    def send(self, rejections: Iterable[Rejection]) -> None:
        """Park the rejections durably (idempotent for the same record and position)."""
        ...


class RecordStream(Protocol):
    """A partitioned log of raw records consumed by a group (Kafka), committed explicitly."""

    def poll(self, max_records: int, timeout_s: float) -> list[RawRecord]:
        """Up to `max_records` records, waiting at most `timeout_s` for the first."""
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
