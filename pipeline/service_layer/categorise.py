"""The use case every pipeline shares: categorise these records, chunk by chunk."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from itertools import islice
from typing import TypeVar
from uuid import UUID

from pipeline.domain.errors import CategoriserRejected, InvalidRecord, PermanentError
from pipeline.domain.ids import transaction_uuid
from pipeline.domain.model import (
    Categorisation,
    Outcome,
    RawRecord,
    Reason,
    Rejection,
    Stage,
    Transaction,
    source_id_of,
)
from pipeline.domain.ports import Categoriser, DeadLetterSink, TransactionStore
from pipeline.domain.validation import Validated, Validator

logger = logging.getLogger(__name__)

T = TypeVar("T")
Pairs = list[tuple[Transaction, Categorisation]]


@dataclass(frozen=True)
class UseCaseOptions:
    """How records are grouped and how repeated ids are treated."""

    ml_batch_size: int = 1000
    ml_concurrency: int = 2
    # A file must not repeat an id (the later row is rejected); a stream may replay an event,
    # which is then an idempotent upsert, so within one micro-batch the last occurrence wins.
    reject_duplicate_ids: bool = True


class RepeatedIds:
    """Within one run, an id met on an earlier row (valid or not) makes a later row a duplicate."""

    def __init__(self) -> None:
        self.seen: set[int] = set()  # UUID ints: half the memory of UUID objects

    def remember(self, records: Iterable[RawRecord]) -> None:
        """Count these rows' ids as met."""
        for record in records:
            source_id = source_id_of(record)
            if source_id:
                self.seen.add(transaction_uuid(source_id).int)

    def validate(self, validator: Validator, record: RawRecord) -> Validated:
        """Validate the record, then reject it as `duplicate_id` if its id was met before."""
        try:
            checked = validator.validate(record)
        except InvalidRecord:
            self.remember((record,))
            raise
        key = checked.transaction.id.int
        if key in self.seen:
            raise InvalidRecord(
                Reason.DUPLICATE_ID,
                f"id {checked.transaction.source_id!r} appeared on an earlier row",
            )
        self.seen.add(key)
        return checked


@dataclass
class PreparedChunk:
    """A validated chunk waiting to be categorised and stored."""

    outcome: Outcome = field(default_factory=Outcome)
    valid: dict[UUID, tuple[Transaction, RawRecord]] = field(default_factory=dict)
    rejections: list[Rejection] = field(default_factory=list)
    todo: list[Transaction] = field(default_factory=list)


class CategoriseRecords:
    """Validate → skip already stored → categorise in sub-batches → upsert → dead-letter rejects.

    One instance spans one run: with `reject_duplicate_ids` it remembers the ids already seen
    so that a repeated id is rejected across chunks of the same file.
    """

    def __init__(
        self,
        categoriser: Categoriser,
        store: TransactionStore,
        dead_letters: DeadLetterSink,
        validator: Validator | None = None,
        options: UseCaseOptions | None = None,
    ) -> None:
        self.categoriser = categoriser
        self.store = store
        self.dead_letters = dead_letters
        self.validator = validator or Validator()
        self.options = options or UseCaseOptions()
        self.repeated_ids = RepeatedIds()

    def remember_ids(self, records: Iterable[RawRecord]) -> None:
        """Mark the ids of earlier rows as seen, when a run starts in the middle of a file."""
        self.repeated_ids.remember(records)

    def __call__(self, records: Iterable[RawRecord]) -> Outcome:
        """Process one chunk; transient errors propagate and nothing of the chunk is lost."""
        return self.complete(self.prepare(records))

    def prepare(self, records: Iterable[RawRecord]) -> PreparedChunk:
        """Validate a chunk and drop what is already stored (in source order: duplicates)."""
        chunk = PreparedChunk()
        for record in records:
            chunk.outcome.read += 1
            try:
                checked = self._check(record)
            except InvalidRecord as exc:
                stage = Stage.PARSE if record.fields is None else Stage.VALIDATE
                chunk.rejections.append(_reject(record, exc.reason, exc.detail, stage))
                continue
            self._observe(checked, chunk.outcome)
            chunk.valid[checked.transaction.id] = (checked.transaction, record)
        chunk.outcome.valid = len(chunk.valid)
        stored = self.store.categorised_ids(list(chunk.valid)) if chunk.valid else set()
        chunk.todo = [t for t, _ in chunk.valid.values() if t.id not in stored]
        chunk.outcome.already_stored = len(chunk.valid) - len(chunk.todo)
        return chunk

    def complete(self, chunk: PreparedChunk) -> Outcome:
        """Categorise, store and dead-letter a prepared chunk; safe to run off the main thread."""
        pairs, refused = self._categorise_all(chunk.todo, chunk.valid)
        rejections = chunk.rejections + refused
        if pairs:
            self.store.save(pairs)
        if rejections:
            self.dead_letters.send(rejections)
        outcome = chunk.outcome
        outcome.categorised = len(pairs)
        outcome.categories.update(c.category for _, c in pairs)
        outcome.rejected.update(r.reason for r in rejections)
        return outcome

    def _check(self, record: RawRecord) -> Validated:
        if not self.options.reject_duplicate_ids:
            return self.validator.validate(record)
        return self.repeated_ids.validate(self.validator, record)

    @staticmethod
    def _observe(checked: Validated, outcome: Outcome) -> None:
        outcome.warnings.update(checked.warnings)
        if checked.new_operation_type:
            outcome.new_operation_types[checked.new_operation_type] += 1

    def _categorise_all(
        self, todo: list[Transaction], valid: dict[UUID, tuple[Transaction, RawRecord]]
    ) -> tuple[Pairs, list[Rejection]]:
        batches = list(batched(todo, self.options.ml_batch_size))
        work = partial(self._categorise_bisecting, valid=valid)
        if len(batches) > 1 and self.options.ml_concurrency > 1:
            with ThreadPoolExecutor(self.options.ml_concurrency, "categorise") as pool:
                results = list(pool.map(work, batches))
        else:
            results = [work(batch) for batch in batches]
        pairs = [pair for done, _ in results for pair in done]
        refused = [rejection for _, failed in results for rejection in failed]
        return pairs, refused

    def _categorise_bisecting(
        self, batch: Sequence[Transaction], valid: dict[UUID, tuple[Transaction, RawRecord]]
    ) -> tuple[Pairs, list[Rejection]]:
        """Categorise a batch; when the model refuses it, split it to isolate the bad records."""
        try:
            categorisations = self.categoriser.categorise(batch)
        except PermanentError as exc:
            if len(batch) == 1:
                record = valid[batch[0].id][1]
                reason = (
                    Reason.REJECTED_BY_MODEL
                    if isinstance(exc, CategoriserRejected)
                    else Reason.BAD_MODEL_ANSWER
                )
                rejection = _reject(record, reason, str(exc), Stage.CATEGORISE, type(exc).__name__)
                return [], [replace(rejection, transaction_id=batch[0].id)]
            logger.warning("ML API refused a batch of %d, bisecting: %s", len(batch), exc)
            middle = len(batch) // 2
            left = self._categorise_bisecting(batch[:middle], valid)
            right = self._categorise_bisecting(batch[middle:], valid)
            return left[0] + right[0], left[1] + right[1]
        return list(zip(batch, categorisations, strict=True)), []


def run_chunked(
    records: Iterable[RawRecord],
    use_case: CategoriseRecords,
    chunk_size: int,
    on_chunk: Callable[[Outcome], None] | None = None,
) -> Outcome:
    """Feed a record stream to the use case chunk by chunk and add up the outcomes.

    Validation of chunk N+1 (this thread) overlaps with categorising and storing chunk N
    (one worker thread), so the ML API, PostgreSQL and this process work at the same time.
    Chunks complete in order; on an error the chunks in flight finish or fail, none is skipped.
    """
    total = Outcome()
    with ThreadPoolExecutor(1, "complete") as worker:
        in_flight: Future[Outcome] | None = None
        for chunk in batched(records, chunk_size):
            prepared = use_case.prepare(chunk)
            if in_flight is not None:
                _done(in_flight.result(), total, on_chunk)
            in_flight = worker.submit(use_case.complete, prepared)
        if in_flight is not None:
            _done(in_flight.result(), total, on_chunk)
    return total


def _done(outcome: Outcome, total: Outcome, on_chunk: Callable[[Outcome], None] | None) -> None:
    total.add(outcome)
    if on_chunk:
        on_chunk(outcome)


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def _reject(
    record: RawRecord, reason: Reason, detail: str, stage: Stage, error: str = "InvalidRecord"
) -> Rejection:
    return Rejection(
        position=record.position,
        payload=record.raw,
        reason=reason,
        detail=detail,
        stage=stage,
        error=error,
        attempts=record.replays + 1,
        key=record.key,
        replays=record.replays,
    )
