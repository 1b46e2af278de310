"""Property-based, on the real PostgreSQL: any text the rows carry, every row ends stored or
dead-lettered, nothing is refused as a whole chunk, nothing is stored twice."""

from __future__ import annotations

from uuid import uuid4

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.adapters.postgres.store import PostgresStore
from pipeline.domain.model import RawRecord, SourcePosition
from pipeline.service_layer.categorise import CategoriseRecords, UseCaseOptions
from tests.fakes import FakeCategoriser, valid_fields
from tests.support.helpers import count

ANY_TEXT = st.text(st.characters(codec="utf-8"), max_size=30)  # controls, NUL, surrogates…


@pytest.mark.parametrize("looked_up", [True, False], ids=["looked-up", "insert-first"])
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(texts=st.lists(st.tuples(ANY_TEXT, ANY_TEXT, ANY_TEXT), min_size=1, max_size=20))
def test_any_text_ends_stored_or_dead_lettered_exactly_once(
    postgres_engine: sa.Engine, texts: list[tuple[str, str, str]], looked_up: bool
) -> None:
    run = uuid4().hex[:8]
    rows = [
        RawRecord(
            SourcePosition(f"{run}.csv", line=line),
            f"raw {line}",
            valid_fields(
                f"{run}-{line}", description=d or "x", merchant=m, operation_type=o or "p"
            ),
        )
        for line, (d, m, o) in enumerate(texts, start=2)
    ]
    store = PostgresStore(postgres_engine)
    use_case = CategoriseRecords(
        FakeCategoriser(), store, store, options=UseCaseOptions(ml_batch_size=7)
    )
    if not looked_up:  # a chunk of new rows first: the next one is inserted before any look-up
        use_case([RawRecord(SourcePosition(f"{run}-new", line=2), "raw", valid_fields(run))])
    outcome = use_case(rows)
    stored = count(
        postgres_engine,
        f"SELECT count(*) FROM categorised_transactions WHERE source_id LIKE '{run}-%'",
    )
    parked = count(postgres_engine, f"SELECT count(*) FROM dead_letters WHERE source = '{run}.csv'")
    assert stored == outcome.categorised
    assert parked == outcome.rejected_total
    assert stored + parked == len(rows)
    assert use_case(rows).categorised == 0  # a rerun stores nothing twice
