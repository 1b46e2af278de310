"""The error model with fakes: record faults isolated at every stage, systemic ones raised."""

from __future__ import annotations

import time
from uuid import UUID

import polars as pl
import pytest

from pipeline.domain.errors import (
    CategoriserMisconfigured,
    CategoriserRejected,
    CategoriserUnavailable,
    StoreMisconfigured,
)
from pipeline.domain.ids import TRANSACTION_NAMESPACE, parse_uuid, transaction_uuid
from pipeline.domain.model import (
    RawRecord,
    Reason,
    SourcePosition,
    Stage,
)
from pipeline.service_layer.categorise import CategoriseRecords, UseCaseOptions
from pipeline.service_layer.rejections import bounded_payload
from tests.fakes import FakeCategoriser, InMemoryStore, valid_fields


def rows(*ids: str, **changes: object) -> list[RawRecord]:
    return [
        RawRecord(SourcePosition("t.csv", line=n), f"raw {i}", valid_fields(i, **changes))
        for n, i in enumerate(ids, start=2)
    ]


def use_case(
    store: InMemoryStore, categoriser: FakeCategoriser | None = None, **options: object
) -> CategoriseRecords:
    opts = UseCaseOptions(**options)  # type: ignore[arg-type]
    return CategoriseRecords(categoriser or FakeCategoriser(), store, store, options=opts)


def letters(store: InMemoryStore) -> set[tuple[str, str, Stage]]:
    return {(str(r.position), r.reason, r.stage) for r in store.dead_letters.values()}


def test_a_row_the_database_refuses_is_dead_lettered_alone_and_the_chunk_stored() -> None:
    store = InMemoryStore(refuse_text="☃")
    batch = rows("1", "2", "3", "4", "5")
    batch[2] = rows("3", description="snow ☃ man")[0]._replace(position=batch[2].position)
    outcome = use_case(store)(batch)
    assert {t.source_id for t in store.transactions.values()} == {"1", "2", "4", "5"}
    assert letters(store) == {("t.csv:4", "rejected_by_store", Stage.STORE)}
    assert (outcome.categorised, outcome.rejected_total) == (4, 1)


def test_a_database_refusing_every_row_is_systemic_and_dead_letters_nothing() -> None:
    store = InMemoryStore(refuse_all=True)
    with pytest.raises(StoreMisconfigured):
        use_case(store)(rows("1", "2"))
    assert store.dead_letters == {}


def test_a_model_refusing_every_record_alike_is_systemic_and_dead_letters_nothing() -> None:
    store = InMemoryStore()
    refuse_all = FakeCategoriser(refuse={"1", "2", "3"})
    with pytest.raises(CategoriserMisconfigured, match="every one of 3 records"):
        use_case(store, refuse_all)(rows("1", "2", "3"))
    assert store.dead_letters == {} and store.transactions == {}


def test_a_model_refusal_is_the_record_s_only_when_its_neighbours_pass() -> None:
    store = InMemoryStore()
    use_case(store, FakeCategoriser(refuse={"2"}))(rows("1", "2", "3"))
    assert letters(store) == {("t.csv:3", "rejected_by_model", Stage.CATEGORISE)}
    assert len(store.transactions) == 2


def test_control_bytes_are_rejected_before_any_ml_call() -> None:
    store = InMemoryStore()
    categoriser = FakeCategoriser()
    use_case(store, categoriser)(rows("1") + rows("2", merchant="a\x00b"))
    assert letters(store) == {("t.csv:2", "invalid_text", Stage.VALIDATE)}
    assert categoriser.calls == [1]


@pytest.mark.parametrize("stream", [False, True], ids=["batch", "stream"])
def test_a_re_seen_id_is_a_no_op_with_the_same_content_and_a_conflict_with_other(
    stream: bool,
) -> None:
    store = InMemoryStore()
    use_case(store, reject_duplicate_ids=not stream)(rows("1", "2"))
    day_two = rows("1") + rows("2", amount="-99,00")
    outcome = use_case(store, reject_duplicate_ids=not stream)(day_two)
    assert (outcome.already_stored, outcome.categorised) == (1, 0)
    assert outcome.rejected == {Reason.CONFLICTING_DUPLICATE: 1}
    assert store.transactions[transaction_uuid("2")].amount == -10  # the stored one stays


class CountingStore(InMemoryStore):
    """Counts the ids looked up."""

    def __init__(self) -> None:
        super().__init__()
        self.looked_up: list[int] = []

    def stored(self, ids: pl.Series) -> pl.DataFrame:
        self.looked_up.append(ids.len())
        return super().stored(ids)


def test_after_a_chunk_of_new_rows_the_next_is_inserted_without_a_look_up() -> None:
    store = CountingStore()
    run = use_case(store)
    run(rows("1", "2"))  # the first chunk of a run is looked up: nothing stored
    run(rows("3", "4"))
    assert store.looked_up == [2]
    assert (store.inserts, len(store.transactions)) == (2, 4)


@pytest.mark.parametrize("stream", [False, True], ids=["batch", "stream"])
def test_a_re_seen_id_gets_the_same_verdict_when_the_look_up_was_skipped(stream: bool) -> None:
    store = CountingStore()
    use_case(store, reject_duplicate_ids=not stream)(rows("1", "2"))
    categoriser = FakeCategoriser()
    run = use_case(store, categoriser, reject_duplicate_ids=not stream)
    run(rows("8"))  # new: turns the look-up off
    day_two = rows("1", "3", "2")
    day_two[2] = rows("2", amount="-99,00")[0]._replace(position=day_two[2].position)
    outcome = run(day_two)
    assert categoriser.calls == [1, 3]  # not looked up first: the model got all three
    assert store.looked_up == [2, 1, 3]  # the insert met stored ids: looked up then
    assert (outcome.read, outcome.valid, outcome.categorised, outcome.already_stored) == (
        3,
        2,
        1,
        1,
    )
    assert outcome.rejected == {Reason.CONFLICTING_DUPLICATE: 1}
    assert store.transactions[transaction_uuid("2")].amount == -10  # the stored one stays
    assert transaction_uuid("3") in store.categorisations
    run(rows("4"))  # a chunk after one that met stored ids is looked up first again
    assert store.looked_up == [2, 1, 3, 1]


def test_a_row_stored_since_the_look_up_gets_the_re_seen_verdict_and_is_not_overwritten() -> None:
    store = InMemoryStore()
    mine, theirs = use_case(store), use_case(store)
    prepared = mine.prepare(rows("1", "2"))  # looked up: nothing stored yet
    theirs(rows("1", amount="-99,00"))  # another writer stores id 1 with other content
    outcome = mine.complete(prepared)
    assert outcome.rejected == {Reason.CONFLICTING_DUPLICATE: 1}
    assert (outcome.valid, outcome.categorised) == (1, 1)
    assert store.transactions[transaction_uuid("1")].amount == -99


class RefusingText(FakeCategoriser):
    """Refuses (422) any record whose description is `text`."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def categorise_batch(self, batch: pl.DataFrame) -> pl.DataFrame:
        if self.text in batch["description"].to_list():
            self.calls.append(batch.height)
            raise CategoriserRejected(422, f"invalid item {self.text!r}")
        return super().categorise_batch(batch)


def test_a_stored_id_is_a_conflict_before_the_model_s_refusal_even_without_a_look_up() -> None:
    store = InMemoryStore()
    use_case(store)(rows("1", "2"))
    categoriser = RefusingText("bad")
    run = use_case(store, categoriser)
    run(rows("8"))  # new: turns the look-up off
    batch = rows("1", "2", "3")
    batch[0] = rows("1", description="bad")[0]
    outcome = run(batch)
    assert categoriser.calls[:2] == [1, 3]  # not looked up first: the model refused "1"
    assert letters(store) == {("t.csv:2", "conflicting_duplicate", Stage.VALIDATE)}
    assert (outcome.valid, outcome.categorised, outcome.already_stored) == (2, 1, 1)
    assert store.transactions[transaction_uuid("1")].description == "Purchase"


def test_in_one_stream_batch_a_repeat_is_a_replay_or_a_conflict_and_the_first_wins() -> None:
    store = InMemoryStore()
    batch = rows("1", "1") + rows("1", description="changed")
    outcome = use_case(store, reject_duplicate_ids=False)(batch)
    assert (outcome.categorised, outcome.already_stored) == (1, 1)
    assert outcome.rejected == {Reason.CONFLICTING_DUPLICATE: 1}
    assert store.transactions[transaction_uuid("1")].description == "Purchase"


def test_a_dead_letter_is_resolved_when_its_transaction_is_stored_later() -> None:
    store = InMemoryStore()
    use_case(store)(rows("7", amount="oops"))
    [letter] = store.dead_letters.values()
    assert letter.transaction_id == transaction_uuid("7")
    use_case(store)(rows("7"))
    assert store.resolved == {transaction_uuid("7")}


def test_a_huge_payload_is_kept_truncated_with_its_size_and_digest() -> None:
    store = InMemoryStore()
    record = RawRecord(SourcePosition("t.csv", line=2), "x" * 300_000, None, "too big")
    use_case(store, max_dead_letter_payload_bytes=4096)([record])
    [letter] = store.dead_letters.values()
    assert len(letter.payload.encode()) == 4096
    assert letter.payload_bytes == 300_000
    assert letter.payload_sha256 is not None and len(letter.payload_sha256) == 64


def test_a_payload_that_fits_is_kept_whole() -> None:
    assert bounded_payload("é" * 10, 100) == ("é" * 10, None, None)


@pytest.mark.parametrize(
    "spelling",
    [
        "12345678-1234-5678-1234-567812345678",
        "12345678123456781234567812345678",
        "{12345678-1234-5678-1234-567812345678}",
        "urn:uuid:12345678-1234-5678-1234-567812345678",
        "URN:UUID:12345678-1234-5678-1234-567812345678",
        "12345678-1234-5678-1234-567812345678".upper(),
    ],
)
def test_standard_uuid_spellings_are_the_uuid_itself(spelling: str) -> None:
    assert transaction_uuid(spelling) == UUID("12345678-1234-5678-1234-567812345678")


ODD_SPELLINGS = [
    "+12345678-1234-5678-1234-567812345678",
    "1234_5678-1234-5678-1234-567812345678",
    "12345678-12345678-1234-5678-12345678",
    "x urn:uuid:12345678-1234-5678-1234-567812345678",
    "uuid:12345678-1234-5678-1234-567812345678",
    "１２345678-1234-5678-1234-567812345678",  # full-width digits
    "{12345678123456781234567812345678",
]


@pytest.mark.parametrize("odd", ODD_SPELLINGS)
def test_odd_spellings_are_source_ids_of_their_own(odd: str) -> None:
    assert parse_uuid(odd) is None
    mapped = transaction_uuid(odd)
    assert mapped.version == 5
    assert mapped != UUID("12345678-1234-5678-1234-567812345678")


def test_distinct_source_ids_never_share_a_transaction_id() -> None:
    ids = [*ODD_SPELLINGS, "12345678-1234-5678-1234-567812345678", str(TRANSACTION_NAMESPACE)]
    assert len({transaction_uuid(i) for i in ids}) == len(ids)


class SlowCategoriser(FakeCategoriser):
    """Takes `seconds` per call: a model slower than the chunk's deadline allows."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def categorise_batch(self, batch: pl.DataFrame) -> pl.DataFrame:
        time.sleep(self.seconds)
        return super().categorise_batch(batch)


def test_no_ml_call_starts_after_the_chunk_deadline_and_nothing_is_dead_lettered() -> None:
    store = InMemoryStore()
    slow = SlowCategoriser(0.1)
    options = {"ml_batch_size": 1, "ml_concurrency": 1, "deadline_s": 0.25}
    with pytest.raises(CategoriserUnavailable, match="deadline"):
        use_case(store, slow, **options)(rows(*[str(n) for n in range(20)]))
    assert 2 <= len(slow.calls) <= 4
    assert store.dead_letters == {} and store.transactions == {}
