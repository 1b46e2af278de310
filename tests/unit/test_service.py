from collections.abc import Iterator
from typing import Any

import pytest

from pipeline.domain.errors import CategoriserUnavailable
from pipeline.domain.ids import transaction_uuid
from pipeline.domain.model import CATEGORIES, RawRecord, SourcePosition, Stage
from pipeline.service_layer.categorise import CategoriseRecords, UseCaseOptions
from pipeline.service_layer.chunks import run_chunked
from tests.fakes import FakeCategoriser, InMemoryStore, rule, valid_fields


def rows(n: int, start: int = 1, **changes: object) -> list[RawRecord]:
    return [
        RawRecord(
            SourcePosition("t.csv", line=i + 1),
            f"raw {i}",
            valid_fields(str(i), **{"amount": "-10,00", **changes}),
        )
        for i in range(start, start + n)
    ]


def make(store: InMemoryStore, categoriser: FakeCategoriser | None = None, **options: Any):
    return CategoriseRecords(
        categoriser or FakeCategoriser(), store, store, options=UseCaseOptions(**options)
    )


def test_valid_records_are_categorised_with_the_rule_and_stored() -> None:
    store = InMemoryStore()
    outcome = make(store, ml_batch_size=7)(rows(20))
    assert (outcome.read, outcome.valid, outcome.categorised, outcome.rejected_total) == (
        20,
        20,
        20,
        0,
    )
    assert len(store.categorisations) == 20
    assert all(c.category == rule(tid) for tid, c in store.categorisations.items())
    assert sum(outcome.categories.values()) == 20


def test_invalid_records_are_dead_lettered_with_reason_and_position() -> None:
    store = InMemoryStore()
    records = rows(3) + rows(1, start=4, amount="abc") + rows(1, start=5, side="up")
    outcome = make(store)(records)
    assert outcome.categorised == 3
    assert outcome.rejected == {"invalid_amount": 1, "invalid_side": 1}
    reasons = {(str(r.position), r.reason, r.stage) for r in store.dead_letters.values()}
    assert reasons == {
        ("t.csv:5", "invalid_amount", Stage.VALIDATE),
        ("t.csv:6", "invalid_side", Stage.VALIDATE),
    }
    assert {r.payload for r in store.dead_letters.values()} == {"raw 4", "raw 5"}


def test_unseen_operation_types_are_counted_per_type_and_the_rows_stored() -> None:
    store = InMemoryStore()
    records = (
        rows(2)
        + rows(3, start=3, operation_type="crypto")
        + rows(1, start=6, operation_type="gift")
    )
    outcome = make(store)(records)
    assert outcome.new_operation_types == {"crypto": 3, "gift": 1}
    assert outcome.categorised == 6
    assert make(InMemoryStore())(rows(2)).new_operation_types == {}


def test_repeated_id_in_a_file_is_rejected_across_chunks() -> None:
    store = InMemoryStore()
    use_case = make(store)
    outcome = run_chunked(iter(rows(5) + rows(2, start=2)), use_case, chunk_size=3)
    assert outcome.read == 7
    assert outcome.categorised == 5
    assert outcome.rejected == {"duplicate_id": 2}


def test_stream_mode_treats_a_replayed_event_as_the_same_transaction() -> None:
    store = InMemoryStore()
    outcome = make(store, reject_duplicate_ids=False)(rows(3) + rows(3))
    assert outcome.rejected_total == 0
    assert (outcome.read, outcome.categorised, outcome.already_stored) == (6, 3, 3)
    assert len(store.categorisations) == 3


def test_records_already_stored_are_not_sent_to_the_model_again() -> None:
    store = InMemoryStore()
    make(store)(rows(10))
    categoriser = FakeCategoriser()
    outcome = make(store, categoriser)(rows(12))
    assert outcome.already_stored == 10
    assert outcome.categorised == 2
    assert categoriser.calls == [2]
    assert len(store.categorisations) == 12


def test_refused_batch_is_bisected_so_only_the_bad_record_is_dead_lettered() -> None:
    store = InMemoryStore()
    categoriser = FakeCategoriser(refuse={"13"})
    outcome = make(store, categoriser, ml_batch_size=16, ml_concurrency=1)(rows(32))
    assert outcome.categorised == 31
    assert outcome.rejected == {"rejected_by_model": 1}
    [letter] = store.dead_letters.values()
    assert letter.stage is Stage.CATEGORISE
    assert letter.transaction_id == transaction_uuid("13")
    assert transaction_uuid("13") not in store.categorisations


def test_transient_failure_propagates_and_stores_nothing_of_the_chunk() -> None:
    store = InMemoryStore()
    with pytest.raises(CategoriserUnavailable):
        make(store, FakeCategoriser(fail_first=1))(rows(5))
    assert store.categorisations == {}
    assert store.dead_letters == {}


def test_rerun_after_a_failed_chunk_completes_exactly() -> None:
    store = InMemoryStore()

    def source() -> Iterator[RawRecord]:
        yield from rows(10) + rows(1, start=11, amount="x")

    # Chunks of 4 rows: the first is stored, the ML API is down for the second's call.
    failing = FakeCategoriser(fail_calls=[2])
    with pytest.raises(CategoriserUnavailable):
        run_chunked(source(), make(store, failing), chunk_size=4)
    assert len(failing.calls) == 2
    assert len(store.categorisations) == 4
    again = run_chunked(source(), make(store), chunk_size=4)
    assert again.already_stored == 4
    assert again.categorised == 6
    assert len(store.categorisations) == 10
    assert {c.category for c in store.categorisations.values()} <= set(CATEGORIES)
    assert all(c.category == rule(i) for i, c in store.categorisations.items())
    assert len(store.dead_letters) == 1


def test_concurrent_sub_batches_give_the_same_result_as_sequential() -> None:
    one, many = InMemoryStore(), InMemoryStore()
    make(one, ml_batch_size=10, ml_concurrency=1)(rows(95))
    make(many, ml_batch_size=10, ml_concurrency=4)(rows(95))
    assert one.categorisations == many.categorisations


class RecordingStore(InMemoryStore):
    """Remembers the source ids of each save, in the order the saves came."""

    def __init__(self) -> None:
        super().__init__()
        self.saved: list[list[str]] = []

    def upsert(self, rows: Any) -> None:
        super().upsert(rows)
        self.saved.append(rows["source_id"].to_list())


def test_overlapped_chunks_are_stored_in_order_and_none_after_a_failed_one() -> None:
    store = RecordingStore()
    done: list[int] = []
    run_chunked(rows(18), make(store), chunk_size=4, on_chunk=lambda o: done.append(o.read))
    assert [int(ids[0]) for ids in store.saved] == [1, 5, 9, 13, 17]
    assert done == [4, 4, 4, 4, 2]

    store = RecordingStore()
    failing = FakeCategoriser(fail_calls=[3])  # the third chunk's call: the ML API is down
    with pytest.raises(CategoriserUnavailable):
        run_chunked(rows(18), make(store, failing), chunk_size=4)
    assert [int(ids[0]) for ids in store.saved] == [1, 5]  # the two before it, nothing after
    assert len(failing.calls) == 3
