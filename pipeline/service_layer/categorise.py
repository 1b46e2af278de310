"""The use case every pipeline shares: categorise these records, chunk by chunk."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from uuid import UUID

from pipeline.domain.errors import (
    CategoriserMisconfigured,
    CategoriserRejected,
    CategoriserUnavailable,
    InvalidRecord,
    PermanentError,
    StoreMisconfigured,
    StoreRejected,
)
from pipeline.domain.ids import transaction_uuid
from pipeline.domain.model import (
    Categorisation,
    Outcome,
    RawRecord,
    Reason,
    Rejection,
    Stage,
    Transaction,
    content_fingerprint,
    source_id_of,
)
from pipeline.domain.ports import Categoriser, DeadLetterSink, TransactionStore
from pipeline.domain.validation import Validated, Validator
from pipeline.service_layer.chunks import batched
from pipeline.service_layer.rejections import DEFAULT_MAX_PAYLOAD_BYTES, reject

logger = logging.getLogger(__name__)

Pairs = list[tuple[Transaction, Categorisation]]


@dataclass(frozen=True)
class UseCaseOptions:
    """How records are grouped and how repeated ids are treated."""

    ml_batch_size: int = 1000
    ml_concurrency: int = 2
    # A file must not repeat an id (the later row is `duplicate_id`). A stream has no file: an
    # event whose id was met already (stored, or earlier in its micro-batch) is a replay when
    # its content is the same (a no-op) and `conflicting_duplicate` when it differs.
    reject_duplicate_ids: bool = True
    max_dead_letter_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    # No new ML call starts this long after a chunk began (None: no limit). The stream sets it
    # well under max.poll.interval.ms, so a slow model pauses the stream instead of getting
    # the consumer evicted from its group again and again.
    deadline_s: float | None = None


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
            source_id = checked.transaction.source_id
            raise InvalidRecord(Reason.DUPLICATE_ID, f"id {source_id!r} appeared on an earlier row")
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
    """Validate → skip what is stored → categorise in sub-batches → upsert → dead-letter rejects.

    Every record comes out stored, already stored, or dead-lettered with its reason and stage.
    A fault that follows one record (its content, the model's refusal of it, a value the
    database cannot hold) is isolated by bisection; one that hits every record alike is
    systemic and raised, and nothing of the chunk is dead-lettered for it. One instance spans
    one run: with `reject_duplicate_ids` it remembers the ids met across the chunks of a file.
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
        """Validate a chunk and set aside what is already stored or repeated."""
        chunk = PreparedChunk()
        for record in records:
            chunk.outcome.read += 1
            try:
                checked = self._check(record)
            except InvalidRecord as exc:
                stage = Stage.PARSE if record.fields is None else Stage.VALIDATE
                chunk.rejections.append(self._reject(record, exc.reason, exc.detail, stage))
                continue
            self._observe(checked, chunk.outcome)
            transaction = checked.transaction
            earlier = chunk.valid.get(transaction.id)
            if earlier is None:
                chunk.valid[transaction.id] = (transaction, record)
            else:  # stream mode only: the file rule rejected it in _check
                self._reseen(chunk, transaction, record, content_fingerprint(earlier[0]))
        stored = self.store.stored_fingerprints(list(chunk.valid)) if chunk.valid else {}
        for transaction_id, fingerprint in stored.items():
            transaction, record = chunk.valid.pop(transaction_id)
            self._reseen(chunk, transaction, record, fingerprint)
        chunk.todo = [transaction for transaction, _ in chunk.valid.values()]
        chunk.outcome.valid = len(chunk.todo) + chunk.outcome.already_stored
        return chunk

    def complete(self, chunk: PreparedChunk) -> Outcome:
        """Categorise, store and dead-letter a prepared chunk; safe to run off the main thread."""
        limit = self.options.deadline_s
        deadline = None if limit is None else time.monotonic() + limit
        pairs, refused = self._categorise_all(chunk.todo, chunk.valid, deadline)
        saved, refused_by_store = self._save_isolating(pairs, chunk.valid)
        rejections = chunk.rejections + refused + refused_by_store
        if rejections:
            self.dead_letters.send(rejections)
        outcome = chunk.outcome
        outcome.categorised = len(saved)
        outcome.categories.update(c.category for _, c in saved)
        outcome.rejected.update(r.reason for r in rejections)
        return outcome

    def dead_letter_unexpected(self, record: RawRecord, error: BaseException) -> Outcome:
        """Dead-letter a record that keeps failing alone with an error no rule classifies."""
        detail = f"{type(error).__name__}: {error}"
        rejection = self._reject(
            record, Reason.UNEXPECTED_ERROR, detail, Stage.PROCESS, type(error).__name__
        )
        self.dead_letters.send([rejection])
        outcome = Outcome(read=1)
        outcome.rejected[Reason.UNEXPECTED_ERROR] = 1
        return outcome

    def _check(self, record: RawRecord) -> Validated:
        if not self.options.reject_duplicate_ids:
            return self.validator.validate(record)
        return self.repeated_ids.validate(self.validator, record)

    def _reseen(
        self, chunk: PreparedChunk, transaction: Transaction, record: RawRecord, known: str | None
    ) -> None:
        """An id met before: the same content is a no-op, other content a conflict."""
        if known is None or known == content_fingerprint(transaction):
            chunk.outcome.already_stored += 1
            return
        detail = f"id {transaction.source_id!r} is already stored with other content"
        chunk.rejections.append(
            self._reject(record, Reason.CONFLICTING_DUPLICATE, detail, Stage.VALIDATE)
        )

    @staticmethod
    def _observe(checked: Validated, outcome: Outcome) -> None:
        outcome.warnings.update(checked.warnings)
        if checked.new_operation_type:
            outcome.new_operation_types[checked.new_operation_type] += 1

    def _categorise_all(
        self,
        todo: list[Transaction],
        valid: dict[UUID, tuple[Transaction, RawRecord]],
        deadline: float | None,
    ) -> tuple[Pairs, list[Rejection]]:
        batches = list(batched(todo, self.options.ml_batch_size))
        work = partial(self._categorise_bisecting, valid=valid, deadline=deadline)
        if len(batches) > 1 and self.options.ml_concurrency > 1:
            with ThreadPoolExecutor(self.options.ml_concurrency, "categorise") as pool:
                results = list(pool.map(work, batches))
        else:
            results = [work(batch) for batch in batches]
        pairs = [pair for done, _ in results for pair in done]
        refused = [rejection for _, failed in results for rejection in failed]
        if refused and not pairs and len(refused) > 1:
            raise CategoriserMisconfigured(
                f"the ML API refused every one of {len(refused)} records alike "
                f"({refused[0].detail[:300]}): not dead-lettered, check the ML API"
            )
        return pairs, refused

    def _categorise_bisecting(
        self,
        batch: Sequence[Transaction],
        valid: dict[UUID, tuple[Transaction, RawRecord]],
        deadline: float | None = None,
    ) -> tuple[Pairs, list[Rejection]]:
        """Categorise a batch; when the model refuses it, split it to isolate the bad records."""
        if deadline is not None and time.monotonic() > deadline:
            raise CategoriserUnavailable(
                f"chunk deadline of {self.options.deadline_s:.0f}s passed: the ML API is too slow"
            )
        try:
            categorisations = self.categoriser.categorise(batch)
        except PermanentError as exc:
            if len(batch) == 1:
                reason = (
                    Reason.REJECTED_BY_MODEL
                    if isinstance(exc, CategoriserRejected)
                    else Reason.BAD_MODEL_ANSWER
                )
                record = valid[batch[0].id][1]
                stage, error = Stage.CATEGORISE, type(exc).__name__
                return [], [self._reject(record, reason, str(exc), stage, error)]
            logger.warning("ML API refused a batch of %d, bisecting: %s", len(batch), exc)
            middle = len(batch) // 2
            left = self._categorise_bisecting(batch[:middle], valid, deadline)
            right = self._categorise_bisecting(batch[middle:], valid, deadline)
            return left[0] + right[0], left[1] + right[1]
        return list(zip(batch, categorisations, strict=True)), []

    def _save_isolating(
        self, pairs: Pairs, valid: dict[UUID, tuple[Transaction, RawRecord]]
    ) -> tuple[Pairs, list[Rejection]]:
        """Store the pairs; rows the database refuses for their content are isolated."""
        saved, refused = self._save_bisecting(pairs, valid)
        if refused and not saved and len(refused) > 1:
            raise StoreMisconfigured(
                f"the database refused every one of {len(refused)} rows alike "
                f"({refused[0].detail[:300]}): not dead-lettered, check the database"
            )
        return saved, refused

    def _save_bisecting(
        self, pairs: Pairs, valid: dict[UUID, tuple[Transaction, RawRecord]]
    ) -> tuple[Pairs, list[Rejection]]:
        if not pairs:
            return [], []
        try:
            self.store.save(pairs)
        except StoreRejected as exc:
            if len(pairs) == 1:
                record = valid[pairs[0][0].id][1]
                reason, error = Reason.REJECTED_BY_STORE, type(exc).__name__
                return [], [self._reject(record, reason, str(exc), Stage.STORE, error)]
            logger.warning("database refused %d rows, bisecting: %s", len(pairs), exc)
            middle = len(pairs) // 2
            left = self._save_bisecting(pairs[:middle], valid)
            right = self._save_bisecting(pairs[middle:], valid)
            return left[0] + right[0], left[1] + right[1]
        return pairs, []

    def _reject(
        self, record: RawRecord, reason: Reason, detail: str, stage: Stage, error: str = ""
    ) -> Rejection:
        cap = self.options.max_dead_letter_payload_bytes
        return reject(record, reason, detail, stage, error or "InvalidRecord", cap)
