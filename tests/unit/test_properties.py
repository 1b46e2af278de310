"""Property-based: whatever the rows, each ends stored, already stored or dead-lettered, once."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.domain.ids import transaction_uuid
from pipeline.domain.model import RawRecord, SourcePosition
from pipeline.service_layer.categorise import CategoriseRecords, UseCaseOptions
from tests.fakes import FakeCategoriser, InMemoryStore, rule, valid_fields

TEXT = st.text(
    alphabet=st.characters(codec="utf-8") | st.sampled_from("\x00;\n"),  # utf-8: no surrogate
    max_size=12,
)
FIELD = st.one_of(TEXT, st.none(), st.integers(-(10**30), 10**30), st.floats(), st.booleans())
AMOUNT = st.one_of(
    st.decimals(-(10**9), 10**9, places=2, allow_nan=False).map(str), TEXT, st.just("1e999")
)
STAMP = st.one_of(
    st.datetimes().map(lambda d: d.isoformat(sep=" ")), TEXT, st.just("9999-12-31T23:59:59-14:00")
)


@st.composite
def records(draw: st.DrawFn) -> list[RawRecord]:
    """Dirty rows; ids from a small pool, so that repeats (same or other content) happen."""
    count = draw(st.integers(0, 40))
    rows = []
    for line in range(2, count + 2):
        if draw(st.integers(0, 9)) == 0:
            rows.append(RawRecord(SourcePosition("f.csv", line=line), "junk", None, "bad row"))
            continue
        fields: dict[str, object] = {
            "id": draw(st.one_of(st.sampled_from(["1", "2", "3", "4", "x"]), FIELD)),
            "description": draw(st.one_of(st.just("Purchase"), FIELD)),
            "amount": draw(AMOUNT),
            "timestamp": draw(STAMP),
            "merchant": draw(st.one_of(st.none(), TEXT)),
            "operation_type": draw(st.one_of(st.just("payment"), TEXT)),
            "side": draw(st.sampled_from(["debit", "credit", "DEBIT", "up", ""])),
        }
        rows.append(RawRecord(SourcePosition("f.csv", line=line), f"raw {line}", fields))
    return rows


def check(store: InMemoryStore, batches: list[list[RawRecord]], stream: bool) -> None:
    use_case = CategoriseRecords(
        FakeCategoriser(refuse={"x"}),
        store,
        store,
        options=UseCaseOptions(ml_batch_size=3, reject_duplicate_ids=not stream),
    )
    for number, rows in enumerate(batches):  # each batch a file (or a stretch) of its own
        batch = [r._replace(position=r.position._replace(source=f"f{number}")) for r in rows]
        before = len(store.dead_letters)
        outcome = use_case(batch)
        assert outcome.read == len(batch)
        assert outcome.read == outcome.categorised + outcome.already_stored + outcome.rejected_total
        assert len(store.dead_letters) - before == outcome.rejected_total
    # no transaction stored twice, each with the rule's category
    assert all(c.category == rule(i) for i, c in store.categorisations.items())
    assert set(store.transactions) == set(store.categorisations)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(records(), min_size=1, max_size=3), st.booleans())
def test_every_row_ends_in_exactly_one_place(batches: list[list[RawRecord]], stream: bool) -> None:
    check(InMemoryStore(), batches, stream)


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(records())
def test_rerunning_a_file_changes_nothing(rows: list[RawRecord]) -> None:
    rows = [r._replace(position=r.position._replace(source="f0")) for r in rows]
    store = InMemoryStore()
    check(store, [rows], stream=False)
    snapshot = (dict(store.transactions), dict(store.dead_letters))
    use_case = CategoriseRecords(FakeCategoriser(refuse={"x"}), store, store)
    again = use_case(rows)
    assert again.categorised == 0
    assert (dict(store.transactions), dict(store.dead_letters)) == snapshot


NEW_ID = "00000000-0000-4000-8000-00000000beef"  # longer than any generated id


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(records(), records(), st.booleans())
def test_a_chunk_ends_the_same_whether_its_ids_were_looked_up_first_or_not(
    first: list[RawRecord], second: list[RawRecord], stream: bool
) -> None:
    """The look-up before the model is skipped after a chunk of new rows; the rows are then
    inserted only if none is stored, else looked up: the verdicts must not differ."""
    second = [r._replace(position=r.position._replace(source="f1")) for r in second]
    ends = []
    for look_up_first in (True, False):
        store = InMemoryStore()
        check(store, [first], stream)
        use_case = CategoriseRecords(
            FakeCategoriser(refuse={"x"}),
            store,
            store,
            options=UseCaseOptions(ml_batch_size=3, reject_duplicate_ids=not stream),
        )
        if not look_up_first:
            new = RawRecord(SourcePosition("new", line=2), "raw", valid_fields(NEW_ID))
            assert use_case([new]).categorised == 1
            del store.transactions[transaction_uuid(NEW_ID)]
            del store.categorisations[transaction_uuid(NEW_ID)]
        outcome = use_case(second)
        letters = {
            key: (letter.reason, letter.stage, letter.detail)
            for key, letter in store.dead_letters.items()
        }
        ends.append((outcome, letters, store.transactions, store.categorisations))
    assert ends[0] == ends[1]
