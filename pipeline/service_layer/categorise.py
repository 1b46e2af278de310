"""The use case every pipeline shares: categorise a chunk of records, as columns."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

import polars as pl

from pipeline.domain.chunks import RawChunk, chunk_of_records
from pipeline.domain.errors import (
    CategoriserMisconfigured,
    CategoriserRejected,
    CategoriserUnavailable,
    PermanentError,
    StoreMisconfigured,
    StoreRejected,
)
from pipeline.domain.fingerprints import content_sha256
from pipeline.domain.model import Outcome, RawRecord, Reason, RecordWarning, Rejection, Stage
from pipeline.domain.ports import Categoriser, DeadLetterSink, TransactionStore
from pipeline.domain.validation import Validator
from pipeline.service_layer.rejections import DEFAULT_MAX_PAYLOAD_BYTES, reject
from pipeline.service_layer.repeats import RepeatedIds, reseen_in_chunk

logger = logging.getLogger(__name__)

Refusals = list[tuple[int, Reason, str, Stage, str]]  # (row, reason, detail, stage, error)


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


@dataclass
class PreparedChunk:
    """A validated chunk waiting to be categorised and stored: `todo` holds the rows to send
    to the model (valid, not repeated, not stored), with their content fingerprints, and
    after `CategoriseRecords.categorise` the same rows with their category."""

    chunk: RawChunk
    outcome: Outcome = field(default_factory=Outcome)
    refusals: Refusals = field(default_factory=list)
    todo: pl.DataFrame = field(default_factory=pl.DataFrame)
    # False: the ids were not looked up before the model (see CategoriseRecords); a row the
    # model refuses is then looked up before its refusal counts.
    looked_up: bool = True


class CategoriseRecords:
    """Validate → skip what is stored → categorise in sub-batches → upsert → dead-letter rejects.

    A chunk travels as columns; Python objects are built only for rejected rows (their dead
    letters). Every record comes out stored, already stored, or dead-lettered with its reason
    and stage. A fault that follows one record (its content, the model's refusal of it, a value
    the database cannot hold) is isolated by bisection; one that hits every record alike is
    systemic and raised, and nothing of the chunk is dead-lettered for it. One instance spans
    one run: with `reject_duplicate_ids` and chunks that do not know their repeats (no file
    plan), it remembers the ids met across the chunks.

    Stored ids are looked up before the model while chunks meet them: on the first chunk of a
    run and after any chunk that met one (a rerun or a resumed file skips the model and the
    write for them). Once a chunk meets none, the next ones skip that look-up, which would
    find nothing and costs the database about as much as writing the row. Every chunk's rows
    are then inserted only if none of their ids is stored; when one is (not looked up, or
    stored since), the chunk is looked up at that point and treated exactly as if it had been
    looked up first. A re-seen id gets the same verdict either way; only the model may have
    been asked for it once more.
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
        self._look_up_first = True  # until a chunk meets no stored id

    def __call__(self, records: Iterable[RawRecord] | RawChunk) -> Outcome:
        """Process one chunk; transient errors propagate and nothing of the chunk is lost."""
        return self.complete(self.prepare(records))

    def prepare(self, records: Iterable[RawRecord] | RawChunk) -> PreparedChunk:
        """Validate a chunk and set aside what is repeated or already stored."""
        chunk = records if isinstance(records, RawChunk) else chunk_of_records(records)
        prepared = PreparedChunk(chunk)
        outcome = prepared.outcome
        outcome.read = chunk.height
        checked = self.validator.check(chunk.frame)
        for row, reason, detail, stage in checked.rejected.iter_rows():
            prepared.refusals.append((row, Reason(reason), detail, Stage(stage), "InvalidRecord"))
        valid = checked.valid
        disagreeing = int(valid["sign_disagrees"].sum())
        if disagreeing:
            outcome.warnings[RecordWarning.SIGN_DISAGREES_WITH_SIDE] += disagreeing
        if valid["new_operation_type"].any():
            new_types = valid.filter("new_operation_type")["operation_type"].value_counts()
            outcome.new_operation_types.update(dict(new_types.iter_rows()))
        valid = valid.with_columns(content_sha256())
        if self.options.reject_duplicate_ids:
            valid = self._drop_repeats(prepared, checked.rejected, valid)
        else:
            valid = self._reseen(prepared, valid)
        outcome.valid = valid.height + outcome.already_stored  # less the conflicts found below
        prepared.looked_up = self._look_up_first
        if prepared.looked_up:
            valid = self._without_stored(prepared, valid)
        prepared.todo = valid
        prepared.refusals.sort(key=lambda refusal: refusal[0])
        return prepared

    def front(self, records: Iterable[RawRecord] | RawChunk) -> PreparedChunk:
        """Everything before the write: validate, set aside, categorise (`save` follows)."""
        return self.categorise(self.prepare(records))

    def complete(self, prepared: PreparedChunk) -> Outcome:
        """Categorise, store and dead-letter a prepared chunk; safe to run off the main thread."""
        return self.save(self.categorise(prepared))

    def categorise(self, prepared: PreparedChunk) -> PreparedChunk:
        """Send the chunk's `todo` rows to the model: `todo` then holds them with their
        category, and the rows the model refused are added to the refusals."""
        limit = self.options.deadline_s
        deadline = None if limit is None else time.monotonic() + limit
        sent = prepared.todo
        prepared.todo, refused = self._categorise_all(sent, deadline)
        if refused and not prepared.looked_up:  # a stored id's verdict comes before the model's
            candidates = sent.filter(pl.col("row").is_in([refusal[0] for refusal in refused]))
            unknown = set(self._without_stored(prepared, candidates)["row"])
            refused = [refusal for refusal in refused if refusal[0] in unknown]
        prepared.refusals += refused
        return prepared

    def save(self, prepared: PreparedChunk) -> Outcome:
        """Store a categorised chunk and dead-letter its refusals; its outcome."""
        saved, refused_by_store = self._store(prepared)
        refusals = prepared.refusals + refused_by_store
        rejections = [self._rejection(prepared.chunk, *refusal) for refusal in refusals]
        if rejections:
            self.dead_letters.send(rejections)
        outcome = prepared.outcome
        outcome.categorised = saved.height
        if saved.height:
            outcome.categories.update(dict(saved["category"].value_counts().iter_rows()))
        outcome.rejected.update(Counter(str(refusal[1]) for refusal in refusals))
        return outcome

    def dead_letter_unexpected(self, record: RawRecord, error: BaseException) -> Outcome:
        """Dead-letter a record that keeps failing alone with an error no rule classifies."""
        detail = f"{type(error).__name__}: {error}"
        cap = self.options.max_dead_letter_payload_bytes
        rejection = reject(
            record, Reason.UNEXPECTED_ERROR, detail, Stage.PROCESS, type(error).__name__, cap
        )
        self.dead_letters.send([rejection])
        outcome = Outcome(read=1)
        outcome.rejected[Reason.UNEXPECTED_ERROR] = 1
        return outcome

    def _store(self, prepared: PreparedChunk) -> tuple[pl.DataFrame, Refusals]:
        """The rows stored and the rows the database refused. The rows are inserted only if
        none is stored (not looked up, or stored since the look-up); else, or if the database
        refuses one, they are looked up now and the others upserted, isolating refusals."""
        todo = prepared.todo
        try:
            if not todo.height or self.store.insert_new(todo):
                return todo, []
        except StoreRejected:
            pass  # a row the database refuses: isolated below, after the look-up
        return self._save_isolating(self._without_stored(prepared, todo))

    def _without_stored(self, prepared: PreparedChunk, rows: pl.DataFrame) -> pl.DataFrame:
        """`rows` without those whose id is stored, which get the re-seen-id verdict (and a
        conflict is no longer counted valid)."""
        stored = self.store.stored(rows["id"]) if rows.height else _NOTHING_STORED
        self._look_up_first = stored.height > 0
        if not stored.height:  # usually none: a fresh file skips both joins
            return rows
        known = rows.join(stored, on="id", how="inner", suffix="_stored")
        prepared.outcome.valid -= self._compare(prepared, known)
        return rows.join(stored, on="id", how="anti")

    def _drop_repeats(
        self, prepared: PreparedChunk, rejected: pl.DataFrame, valid: pl.DataFrame
    ) -> pl.DataFrame:
        """A file must not repeat an id: a valid row whose id appeared on an earlier row (valid
        or not) is `duplicate_id`; the first row wins."""
        chunk = prepared.chunk
        if chunk.repeated is None:
            repeated = self.repeated_ids.met_before(chunk.frame, rejected, valid)
        elif not chunk.repeated.any():
            return valid  # the plan found no earlier id for any row of this chunk
        else:
            flags = pl.DataFrame({"row": pl.Series(range(chunk.height), dtype=pl.UInt32),
                                  "repeated": chunk.repeated})  # fmt: skip
            repeated = valid.join(flags, on="row").filter("repeated")
        for row, source_id in repeated.select("row", "source_id").iter_rows():
            detail = f"id {source_id!r} appeared on an earlier row"
            prepared.refusals.append((row, Reason.DUPLICATE_ID, detail, Stage.VALIDATE, ""))
        return valid.join(repeated.select("row"), on="row", how="anti")

    def _reseen(self, prepared: PreparedChunk, valid: pl.DataFrame) -> pl.DataFrame:
        """In a stream batch, a later event with the id of an earlier one is compared to it."""
        if valid["id"].n_unique() == valid.height:  # the usual batch: no id twice
            return valid
        later = reseen_in_chunk(valid)
        self._compare(prepared, later)
        return valid.join(later.select("row"), on="row", how="anti")

    def _compare(self, prepared: PreparedChunk, known: pl.DataFrame) -> int:
        """Rows whose id is known (stored, or met earlier): the same content is a no-op
        (`already_stored`), other content a `conflicting_duplicate` (the known one stays).
        Returns how many conflict."""
        if not known.height:
            return 0
        same = known["content_sha256_stored"].is_null() | (
            known["content_sha256_stored"] == known["content_sha256"]
        )
        prepared.outcome.already_stored += int(same.sum())
        conflicting = known.filter(~same).select("row", "source_id")
        for row, source_id in conflicting.iter_rows():
            detail = f"id {source_id!r} is already stored with other content"
            refusal = (row, Reason.CONFLICTING_DUPLICATE, detail, Stage.VALIDATE, "")
            prepared.refusals.append(refusal)
        return conflicting.height

    def _categorise_all(
        self, todo: pl.DataFrame, deadline: float | None
    ) -> tuple[pl.DataFrame, Refusals]:
        size = self.options.ml_batch_size
        if todo.height:
            todo = self.categoriser.prepare(todo)
        batches = [todo.slice(start, size) for start in range(0, todo.height, size)]
        work = partial(self._categorise_bisecting, deadline=deadline)
        if len(batches) > 1 and self.options.ml_concurrency > 1:
            with ThreadPoolExecutor(self.options.ml_concurrency, "categorise") as pool:
                results = list(pool.map(work, batches))
        else:
            results = [work(batch) for batch in batches]
        done = [frame for frame, _ in results if frame.height]
        refused = [refusal for _, failed in results for refusal in failed]
        categorised = pl.concat(done) if done else todo.clear().with_columns(_NO_CATEGORY)
        categorised = categorised.select(pl.exclude(PREPARED_PREFIX + "*"))
        if refused and not categorised.height and len(refused) > 1:
            raise CategoriserMisconfigured(
                f"the ML API refused every one of {len(refused)} records alike "
                f"({refused[0][2][:300]}): not dead-lettered, check the ML API"
            )
        return categorised, refused

    def _categorise_bisecting(
        self, batch: pl.DataFrame, deadline: float | None = None
    ) -> tuple[pl.DataFrame, Refusals]:
        """Categorise a batch; when the model refuses it, split it to isolate the bad records."""

        def attempt(rows: pl.DataFrame) -> pl.DataFrame:
            if deadline is not None and time.monotonic() > deadline:
                raise CategoriserUnavailable(
                    f"chunk deadline of {self.options.deadline_s:.0f}s passed: "
                    "the ML API is too slow"
                )
            answer = self.categoriser.categorise_batch(rows)
            return rows.hstack([answer["category"], answer["model_version"]])

        def refusal(exc: Exception) -> tuple[Reason, Stage]:
            rejected = isinstance(exc, CategoriserRejected)
            return (
                Reason.REJECTED_BY_MODEL if rejected else Reason.BAD_MODEL_ANSWER,
                Stage.CATEGORISE,
            )

        return bisect(batch, attempt, PermanentError, refusal, "ML API")

    def _save_isolating(self, rows: pl.DataFrame) -> tuple[pl.DataFrame, Refusals]:
        """Store the rows; rows the database refuses for their content are isolated."""
        saved, refused = self._save_bisecting(rows)
        if refused and not saved.height and len(refused) > 1:
            raise StoreMisconfigured(
                f"the database refused every one of {len(refused)} rows alike "
                f"({refused[0][2][:300]}): not dead-lettered, check the database"
            )
        return saved, refused

    def _save_bisecting(self, rows: pl.DataFrame) -> tuple[pl.DataFrame, Refusals]:
        if not rows.height:
            return rows, []

        def attempt(part: pl.DataFrame) -> pl.DataFrame:
            self.store.upsert(part)
            return part

        def refusal(_exc: Exception) -> tuple[Reason, Stage]:
            return Reason.REJECTED_BY_STORE, Stage.STORE

        return bisect(rows, attempt, StoreRejected, refusal, "database")

    def _rejection(
        self, chunk: RawChunk, row: int, reason: Reason, detail: str, stage: Stage, error: str
    ) -> Rejection:
        cap = self.options.max_dead_letter_payload_bytes
        return reject(chunk.record(row), reason, detail, stage, error or "InvalidRecord", cap)


PREPARED_PREFIX = "prepared_"  # columns a categoriser adds in `prepare`, dropped after it
_NOTHING_STORED = pl.DataFrame(schema={"id": pl.String, "content_sha256": pl.String})
_NO_CATEGORY = (
    pl.lit(None, pl.String).alias("category"),
    pl.lit(None, pl.String).alias("model_version"),
)


def bisect(
    rows: pl.DataFrame,
    attempt: Callable[[pl.DataFrame], pl.DataFrame],
    faults: type[Exception],
    refusal: Callable[[Exception], tuple[Reason, Stage]],
    what: str,
) -> tuple[pl.DataFrame, Refusals]:
    """`attempt` on the rows; when it raises one of `faults` (a record's fault, not the
    service's), the rows are split in halves until each fault is pinned on one row."""
    try:
        return attempt(rows), []
    except faults as exc:
        if rows.height == 1:
            reason, stage = refusal(exc)
            return rows.clear(), [(rows["row"][0], reason, str(exc), stage, type(exc).__name__)]
        logger.warning("%s refused %d rows, bisecting: %s", what, rows.height, exc)
        middle = rows.height // 2
        left = bisect(rows.slice(0, middle), attempt, faults, refusal, what)
        right = bisect(rows.slice(middle), attempt, faults, refusal, what)
        return pl.concat([left[0], right[0]], how="diagonal"), left[1] + right[1]
