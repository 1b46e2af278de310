"""Ports: one Protocol per outside system, taking and returning domain types."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol
from uuid import UUID

from pipeline.domain.model import Categorisation, RawRecord, Rejection, Transaction


class TransactionSource(Protocol):
    """Where raw records come from (a CSV file, a Kafka topic...)."""

    def records(self) -> Iterator[RawRecord]:
        """Yield raw records in source order."""
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

    def categorised_ids(self, ids: Sequence[UUID]) -> set[UUID]:
        """Return the subset of `ids` that already has a stored categorisation."""
        ...

    def save(self, pairs: Sequence[tuple[Transaction, Categorisation]]) -> None:
        """Upsert transactions and categorisations in one database transaction (idempotent)."""
        ...


class DeadLetterSink(Protocol):
    """Where records that cannot be categorised are parked with their reason."""

    def send(self, rejections: Iterable[Rejection]) -> None:
        """Park the rejections durably (idempotent for the same record and position)."""
        ...
