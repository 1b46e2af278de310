"""Value objects of the domain: raw records, transactions, categorisations, rejects, outcomes.

The per-row value objects are NamedTuples: immutable like frozen dataclasses, but built by
tuple.__new__ in C, which matters at a million rows (frozen dataclass __init__ was ~10% of
the batch's CPU).
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from hashlib import sha256
from typing import Any, NamedTuple
from uuid import UUID

CATEGORIES: tuple[str, ...] = (
    "Rent",
    "Salary Income",
    "Food",
    "Restaurant",
    "Client Expenses",
    "Transportation",
    "Utilities",
    "Entertainment",
    "Healthcare",
    "Shopping",
    "Travel",
    "Education",
    "Insurance",
    "Investment",
    "Subscriptions",
)


class Side(enum.StrEnum):
    """Direction of the money movement."""

    DEBIT = "debit"
    CREDIT = "credit"


class Stage(enum.StrEnum):
    """Where in the pipeline a record was rejected."""

    PARSE = "parse"
    VALIDATE = "validate"
    CATEGORISE = "categorise"
    STORE = "store"
    PROCESS = "process"  # an error no rule classifies, isolated to one record


class Reason(enum.StrEnum):
    """Why a record was dead-lettered: stable codes, stored and exported as text."""

    MALFORMED_ROW = "malformed_row"
    EMPTY_MESSAGE = "empty_message"
    UNDECODABLE = "undecodable"
    INVALID_SHAPE = "invalid_shape"
    MISSING_FIELD = "missing_field"
    INVALID_FIELD = "invalid_field"
    FIELD_TOO_LONG = "field_too_long"
    INVALID_AMOUNT = "invalid_amount"
    AMOUNT_OUT_OF_BOUNDS = "amount_out_of_bounds"
    INVALID_TIMESTAMP = "invalid_timestamp"
    INVALID_SIDE = "invalid_side"
    INVALID_TEXT = "invalid_text"
    DUPLICATE_ID = "duplicate_id"
    CONFLICTING_DUPLICATE = "conflicting_duplicate"
    REJECTED_BY_MODEL = "rejected_by_model"
    BAD_MODEL_ANSWER = "bad_model_answer"
    REJECTED_BY_STORE = "rejected_by_store"
    UNEXPECTED_ERROR = "unexpected_error"


class RecordWarning(enum.StrEnum):
    """Observations that do not block a record."""

    SIGN_DISAGREES_WITH_SIDE = "sign_disagrees_with_side"


class RunKind(enum.StrEnum):
    """Who ran a file: the command line or the Airflow DAG."""

    BATCH = "batch"
    AIRFLOW = "airflow"


class RunStatus(enum.StrEnum):
    """The life of a recorded run."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class DeadLetterStatus(enum.StrEnum):
    """The life of a dead letter."""

    PENDING = "pending"
    REDRIVEN = "redriven"
    RESOLVED = "resolved"
    QUARANTINED = "quarantined"


class SourcePosition(NamedTuple):
    """Where a record came from: file and line, or topic, partition and offset."""

    source: str
    line: int | None = None
    partition: int | None = None
    offset: int | None = None

    def __str__(self) -> str:
        if self.partition is not None:
            return f"{self.source}[{self.partition}]@{self.offset}"
        if self.line is not None:
            return f"{self.source}:{self.line}"
        return self.source


class RawRecord(NamedTuple):
    """A record as read from a source, before validation.

    `fields` is None when the record could not even be split into fields;
    `parse_error` then says why. `raw` is the original text, kept for the dead-letter queue.
    """

    position: SourcePosition
    raw: str
    fields: Mapping[str, object] | None
    parse_error: str | None = None
    parse_reason: Reason = Reason.MALFORMED_ROW
    key: str | None = None
    replays: int = 0  # how many times a redrive already sent this record back
    event_time: float | None = None  # epoch seconds the event was produced, when known


class Transaction(NamedTuple):
    """A validated transaction, identified by a deterministic UUID."""

    id: UUID
    source_id: str
    description: str
    amount: Decimal
    timestamp: datetime
    merchant: str | None
    operation_type: str
    side: Side


class Categorisation(NamedTuple):
    """The category the model gave a transaction."""

    transaction_id: UUID
    category: str
    model_version: str


@dataclass(frozen=True, slots=True)
class Rejection:
    """A record that cannot be categorised, with everything needed to redrive it."""

    position: SourcePosition
    payload: str
    reason: Reason
    detail: str
    stage: Stage
    error: str = "InvalidRecord"
    attempts: int = 1
    transaction_id: UUID | None = None
    key: str | None = None
    replays: int = 0
    rejected_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    payload_bytes: int | None = None  # the original size when `payload` was truncated
    payload_sha256: str | None = None  # the original's digest when `payload` was truncated


@dataclass(slots=True)
class Outcome:
    """Counts of one use-case call; outcomes of chunks add up into a run's outcome."""

    read: int = 0
    valid: int = 0
    categorised: int = 0
    already_stored: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    categories: Counter[str] = field(default_factory=Counter)
    warnings: Counter[str] = field(default_factory=Counter)
    new_operation_types: Counter[str] = field(default_factory=Counter)

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def add(self, other: Outcome) -> None:
        """Accumulate another outcome into this one."""
        self.read += other.read
        self.valid += other.valid
        self.categorised += other.categorised
        self.already_stored += other.already_stored
        self.rejected.update(other.rejected)
        self.categories.update(other.categories)
        self.warnings.update(other.warnings)
        self.new_operation_types.update(other.new_operation_types)

    def as_dict(self) -> dict[str, object]:
        """A JSON-friendly view, for logs, the runs table and Airflow task results."""
        return {
            "read": self.read,
            "valid": self.valid,
            "categorised": self.categorised,
            "already_stored": self.already_stored,
            "rejected": self.rejected_total,
            "rejected_by_reason": _plain(self.rejected),
            "categories": _plain(self.categories),
            "warnings": _plain(self.warnings),
            "new_operation_types": _plain(self.new_operation_types),
        }

    @classmethod
    def from_dict(cls, item: Mapping[str, Any]) -> Outcome:
        """Rebuild an Outcome from its `as_dict()` form (Airflow task results)."""
        outcome = cls(
            read=int(item["read"]),
            valid=int(item["valid"]),
            categorised=int(item["categorised"]),
            already_stored=int(item["already_stored"]),
        )
        outcome.rejected.update(item.get("rejected_by_reason") or {})
        outcome.categories.update(item.get("categories") or {})
        outcome.warnings.update(item.get("warnings") or {})
        outcome.new_operation_types.update(item.get("new_operation_types") or {})
        return outcome


def _plain(counter: Counter[str]) -> dict[str, int]:
    """Plain str keys (enum members serialise as their value everywhere)."""
    return {str(key): value for key, value in counter.items()}


def raw_source_id(fields: Mapping[str, object]) -> object:
    """The value naming a record at its source: an event's `source_id`, else its `id`.

    The producer ships the file's id as `source_id` (and the derived UUID as `id`), so both
    pipelines derive the same transaction UUID from the same source id.
    """
    value = fields.get("source_id")
    return fields.get("id") if value is None or value == "" else value


def source_id_of(record: RawRecord) -> str:
    """The source id of a raw record as text, or "" when it has no usable one."""
    if record.fields is None:
        return ""
    value = raw_source_id(record.fields)
    if isinstance(value, bool) or not isinstance(value, str | int):
        return ""
    return str(value).strip()


def content_fingerprint(transaction: Transaction) -> str:
    """A digest of what a transaction says, to tell a replay (same) from a conflict (other).

    Equal values give equal digests whatever their spelling: -10.5 and -10,50, or the same
    instant written in two offsets.
    """
    amount = transaction.amount.normalize()
    parts = (
        transaction.source_id,
        transaction.description,
        "0" if amount.is_zero() else format(amount, "f"),
        transaction.timestamp.astimezone(UTC).isoformat(),
        transaction.merchant or "",
        transaction.operation_type,
        transaction.side.value,
    )
    text = "\x1f".join(parts)  # unit separator: no valid field holds it
    return sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class FileFacts:
    """What a cheap look at an input file found: where it is, its size, its columns."""

    path: str
    size_bytes: int
    columns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ParkedRecord:
    """A dead letter as stored, ready to be redriven."""

    id: int
    key: str | None
    payload: str
    reason: str
    replays: int
