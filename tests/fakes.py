"""Hand-written fakes of the ports, for unit tests of the core."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import polars as pl

from pipeline.domain.chunks import RawChunk, chunk_of_records
from pipeline.domain.errors import (
    BrokerUnavailable,
    CategoriserRejected,
    CategoriserUnavailable,
    ConfigurationError,
    StoreMisconfigured,
    StoreRejected,
)
from pipeline.domain.frames import transactions
from pipeline.domain.ids import transaction_uuid
from pipeline.domain.model import (
    CATEGORIES,
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
    content_fingerprint,
    source_id_of,
)
from pipeline.domain.plans import FilePlan, Window

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def valid_fields(source_id: str, **changes: object) -> dict[str, object]:
    """The fields of a valid raw record, with `changes` applied."""
    return {
        "id": source_id,
        "description": "Purchase",
        "amount": "-10.00",
        "timestamp": "2023-01-01 10:00:00",
        "merchant": "Lidl",
        "operation_type": "payment",
        "side": "debit",
        **changes,
    }


def rule(transaction_id: UUID) -> str:
    """The ML API's rule, recomputed independently."""
    return CATEGORIES[hash(transaction_id) % len(CATEGORIES)]


class FakeCategoriser:
    """Applies the rule; can refuse given source ids (like a 422), be down for the first N
    calls, or be down for the calls numbered in `fail_calls` (1-based)."""

    def __init__(
        self, refuse: Iterable[str] = (), fail_first: int = 0, fail_calls: Iterable[int] = ()
    ) -> None:
        self.refuse = set(refuse)
        self.fail_first = fail_first
        self.fail_calls = set(fail_calls)
        self.calls: list[int] = []

    def prepare(self, rows: pl.DataFrame) -> pl.DataFrame:
        return rows

    def categorise_batch(self, batch: pl.DataFrame) -> pl.DataFrame:
        self.calls.append(batch.height)
        if len(self.calls) in self.fail_calls:
            raise CategoriserUnavailable(f"fake outage on call {len(self.calls)}")
        if self.fail_first > 0:
            self.fail_first -= 1
            raise CategoriserUnavailable("fake outage")
        bad = [s for s in batch["source_id"].to_list() if s in self.refuse]
        if bad:
            raise CategoriserRejected(422, f"invalid items {bad}")
        categories = [rule(UUID(i)) for i in batch["id"].to_list()]
        return pl.DataFrame({"id": batch["id"], "category": categories, "model_version": "fake-v1"})


class InMemoryStore:
    """TransactionStore and DeadLetterSink in dictionaries, idempotent like the real one.

    Like PostgreSQL, it refuses a whole save when one row holds `refuse_text` (StoreRejected),
    or every save with `refuse_all` (a read-only database: StoreMisconfigured).
    """

    def __init__(self, refuse_text: str | None = None, refuse_all: bool = False) -> None:
        self.transactions: dict[UUID, Transaction] = {}
        self.categorisations: dict[UUID, Categorisation] = {}
        self.dead_letters: dict[tuple[str, str, str], Rejection] = {}
        self.resolved: set[UUID] = set()
        self.saves = 0
        self.inserts = 0  # insert_new calls, whether they wrote or not
        self.refuse_text = refuse_text
        self.refuse_all = refuse_all

    def stored(self, ids: pl.Series) -> pl.DataFrame:
        found = [UUID(i) for i in ids.to_list() if UUID(i) in self.categorisations]
        return pl.DataFrame(
            {
                "id": [str(i) for i in found],
                "content_sha256": [content_fingerprint(self.transactions[i]) for i in found],
            },
            schema={"id": pl.String, "content_sha256": pl.String},
        )

    def upsert(self, rows: pl.DataFrame) -> None:
        if self.refuse_all:
            raise StoreMisconfigured("cannot execute INSERT in a read-only transaction")
        if self.refuse_text and any(self.refuse_text in d for d in rows["description"].to_list()):
            raise StoreRejected("invalid byte sequence for encoding UTF8")
        self.saves += 1
        for transaction, (category, version) in zip(
            transactions(rows), rows.select("category", "model_version").iter_rows(), strict=True
        ):
            self.transactions[transaction.id] = transaction
            self.categorisations[transaction.id] = Categorisation(transaction.id, category, version)
        self.resolved.update(
            r.transaction_id
            for r in self.dead_letters.values()
            if r.transaction_id in self.categorisations
            and r.reason not in (Reason.DUPLICATE_ID, Reason.CONFLICTING_DUPLICATE)
        )

    def insert_new(self, rows: pl.DataFrame) -> bool:
        self.inserts += 1
        if any(UUID(i) in self.transactions for i in rows["id"].to_list()):
            return False
        if rows.height:
            self.upsert(rows)
        return True

    def send(self, rejections: Iterable[Rejection]) -> None:
        for rejection in rejections:
            key = (str(rejection.position), rejection.reason, rejection.payload)
            self.dead_letters.setdefault(key, rejection)


class FakeDeadLetterStore:
    """DeadLetterStore in a dictionary: status per id, with the reason and time of each."""

    def __init__(self) -> None:
        self.records: dict[int, ParkedRecord] = {}
        self.status: dict[int, str] = {}
        self.parked_at: dict[int, datetime] = {}
        self.marks: list[tuple[list[int], str]] = []
        self.pages: list[int] = []  # the size of each page read
        self.locked = False

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        if self.locked:
            raise ConfigurationError("another redrive is running")
        self.locked = True
        try:
            yield
        finally:
            self.locked = False

    def park(self, record: ParkedRecord, at: datetime = T0) -> None:
        self.records[record.id] = record
        self.status[record.id] = "pending"
        self.parked_at[record.id] = at

    def pending(
        self, reason: Reason | None, since: datetime | None, after_id: int = 0, limit: int = 1000
    ) -> list[ParkedRecord]:
        page = [
            self.records[record_id]
            for record_id in sorted(self.records)
            if record_id > after_id
            and self.status[record_id] == "pending"
            and (reason is None or self.records[record_id].reason == reason)
            and (since is None or self.parked_at[record_id] >= since)
        ][:limit]
        self.pages.append(len(page))
        return page

    def mark(self, ids: Sequence[int], status: DeadLetterStatus) -> None:
        self.marks.append((list(ids), status))
        for record_id in ids:
            self.status[record_id] = status


class FakeRepublisher:
    """Republisher that keeps what the broker acknowledged; for the next `fail_first` calls the
    broker acknowledges only the first `acknowledge` records of the call."""

    def __init__(self, fail_first: int = 0, acknowledge: int = 0) -> None:
        self.fail_first = fail_first
        self.acknowledge = acknowledge
        self.sent: list[ParkedRecord] = []

    def republish(self, records: Sequence[ParkedRecord]) -> list[int]:
        delivered = list(records)
        if self.fail_first > 0:
            self.fail_first -= 1
            delivered = delivered[: self.acknowledge]
        self.sent.extend(delivered)
        return [record.id for record in delivered]


class FakeRecordStream:
    """RecordStream over in-memory partitions; records commits, pauses and sleeps, never sleeps.

    `on_idle(n)` runs at the n-th `idle` call (1-based) to simulate what happens during an
    outage (a revoke, a stop signal); `on_drained` runs when a poll finds nothing left. The
    commits numbered in `fail_commits` (1-based) fail as if the broker were down.
    """

    def __init__(self, partitions: dict[int, list[RawRecord]]) -> None:
        self.partitions = {p: list(records) for p, records in partitions.items()}
        self.position = dict.fromkeys(self.partitions, 0)
        self.owned = set(self.partitions)
        self.committed: dict[int, int] = {}
        self.commits: list[list[RawRecord]] = []
        self.sleeps: list[float] = []
        self.pauses = 0
        self.resumes = 0
        self.paused = False
        self.polls = 0
        self.on_idle: Callable[[int], None] = lambda _n: None
        self.on_drained: Callable[[], None] = lambda: None
        self.fail_commits: set[int] = set()
        self.commit_calls = 0

    def poll(self, max_records: int, timeout_s: float) -> list[RawRecord]:
        self.polls += 1
        assert self.polls < 1000, "the loop never stopped"
        assert not self.paused, "polled while paused"
        batch: list[RawRecord] = []
        for partition in sorted(self.owned):
            start = self.position[partition]
            taken = self.partitions[partition][start : start + max_records - len(batch)]
            self.position[partition] += len(taken)
            batch.extend(taken)
        if not batch:
            self.on_drained()
        return batch

    def commit(self, records: Sequence[RawRecord]) -> None:
        self.commit_calls += 1
        if self.commit_calls in self.fail_commits:
            raise BrokerUnavailable(f"fake outage on commit {self.commit_calls}")
        self.commits.append(list(records))
        for record in records:
            partition, offset = record.position.partition, record.position.offset
            assert partition is not None and offset is not None
            self.committed[partition] = max(offset + 1, self.committed.get(partition, 0))

    def owns(self, record: RawRecord) -> bool:
        return record.position.partition in self.owned

    def pause(self) -> None:
        self.pauses += 1
        self.paused = True

    def resume(self) -> None:
        self.resumes += 1
        self.paused = False

    def idle(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.on_idle(len(self.sleeps))

    def lag(self) -> dict[int, int]:
        return {p: len(self.partitions[p]) - self.committed.get(p, 0) for p in sorted(self.owned)}

    def revoke(self, partition: int) -> None:
        self.owned.discard(partition)


class RecordingObserver:
    """StreamObserver that keeps every call in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []
        self.lags: list[dict[int, int]] = []

    def batch_done(self, records: Sequence[RawRecord], outcome: Outcome, seconds: float) -> None:
        assert seconds >= 0
        self.events.append(("batch_done", len(records)))

    def retrying(self, error: BaseException) -> None:
        self.events.append(("retrying", type(error).__name__))

    def paused(self, paused: bool) -> None:
        self.events.append(("paused", paused))

    def lag(self, lag: dict[int, int]) -> None:
        self.lags.append(lag)


class InMemoryRunLog:
    """RunLog in a dictionary: each run's kind, source, status, outcome and error."""

    def __init__(self) -> None:
        self.runs: dict[UUID, dict[str, Any]] = {}

    def start_run(self, kind: RunKind, source: str, params: dict[str, Any]) -> UUID:
        run_id = uuid4()
        self.runs[run_id] = {"kind": kind, "source": source, "status": RunStatus.RUNNING}
        return run_id

    def finish_run(
        self, run_id: UUID, status: RunStatus, outcome: Outcome, error: str | None = None
    ) -> None:
        self.runs[run_id].update(status=status, outcome=outcome, error=error)


class InMemoryFile:
    """TransactionFile over raw records numbered by line (the header is line 1); its plan is
    windows of lines (offsets are record indexes) with the repeated ids found in memory."""

    def __init__(self, records: Sequence[RawRecord], path: str = "mem.csv") -> None:
        self._records = list(records)
        self.path = path
        self.reads: list[tuple[int, int]] = []

    def facts(self) -> FileFacts:
        return FileFacts(self.path, 0, ("id",))

    def plan(self, rows_per_window: int) -> FilePlan:
        repeated, seen = [], set()
        for record in self._records:
            source_id = source_id_of(record)
            if not source_id:
                continue
            key = transaction_uuid(source_id)
            if key in seen:
                repeated.append(record.position.line or 0)
            seen.add(key)
        windows = []
        for start in range(0, len(self._records), rows_per_window):
            part = self._records[start : start + rows_per_window]
            first, last = part[0].position.line or 0, part[-1].position.line or 0
            mine = tuple(line for line in repeated if first <= line <= last)
            windows.append(Window(start, start + len(part), first, last, len(part), "", mine))
        return FilePlan(self.path, len(self._records), "", tuple(windows))

    def chunks(self, plan: FilePlan, window: Window, chunk_rows: int) -> Iterator[RawChunk]:
        self.reads.append((window.start, window.end))
        part = self._records[window.start : window.end]
        for start in range(0, len(part), chunk_rows):
            batch = part[start : start + chunk_rows]
            flags = [(r.position.line or 0) in window.repeated for r in batch]
            chunk = chunk_of_records(batch)
            yield RawChunk(chunk.frame, chunk.record, pl.Series(flags, dtype=pl.Boolean))

    def estimate_rows(self) -> int:
        return len(self._records)
