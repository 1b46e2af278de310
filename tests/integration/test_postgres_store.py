"""PostgresStore, the schema migrations and the embedded server, against a real PostgreSQL."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, get_args
from uuid import UUID

import pytest
import sqlalchemy as sa

from pipeline.adapters.postgres import embedded as embedded_pg
from pipeline.adapters.postgres import schema as postgres_schema
from pipeline.adapters.postgres.bulk import BulkMethod
from pipeline.adapters.postgres.store import PostgresStore, make_engine, translate_errors
from pipeline.domain.errors import (
    ConfigurationError,
    StoreMisconfigured,
    StoreRejected,
    StoreUnavailable,
)
from pipeline.domain.frames import pairs_frame
from pipeline.domain.ids import transaction_uuid
from pipeline.domain.model import (
    Categorisation,
    Outcome,
    Reason,
    Rejection,
    RunKind,
    RunStatus,
    Side,
    SourcePosition,
    Stage,
    Transaction,
)

ROOT = Path(__file__).resolve().parents[2]
Pair = tuple[Transaction, Categorisation]


def pair(n: int, category: str = "Food", **changes: Any) -> Pair:
    source_id = f"tx-{n}"
    values: dict[str, Any] = {
        "id": transaction_uuid(source_id),
        "source_id": source_id,
        "description": f"CARD PAYMENT {n}",
        "amount": Decimal("12.34"),
        "timestamp": datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
        "merchant": "Corner Shop",
        "operation_type": "payment",
        "side": Side.DEBIT,
    }
    tx = Transaction(**{**values, **changes})
    return tx, Categorisation(tx.id, category, "model-1")


def rejection(line: int | None = 3, **changes: Any) -> Rejection:
    values: dict[str, Any] = {
        "position": SourcePosition("data/transactions.csv", line=line),
        "payload": "x,y,not-a-number",
        "reason": "invalid_amount",
        "detail": "amount 'not-a-number' is not a decimal",
        "stage": Stage.VALIDATE,
    }
    return Rejection(**{**values, **changes})


def rows(engine: sa.Engine, query: str) -> list[sa.Row[Any]]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text(query)))


def count(engine: sa.Engine, table: str) -> int:
    return int(rows(engine, f"SELECT count(*) FROM {table}")[0][0])


@pytest.fixture(params=get_args(BulkMethod))
def store(request: pytest.FixtureRequest, postgres_engine: sa.Engine) -> PostgresStore:
    return PostgresStore(postgres_engine, bulk_method=request.param)


# --- schema -----------------------------------------------------------------------------------


def test_upgrade_creates_tables_and_view(empty_postgres_url: str) -> None:
    engine = make_engine(empty_postgres_url)
    try:
        postgres_schema.upgrade(engine)
        inspector = sa.inspect(engine)
        assert {"transactions", "dead_letters", "pipeline_runs"} <= set(inspector.get_table_names())
        # 0003: the categorisation lives in `transactions`; `categorisations` is now a view.
        assert {"categorised_transactions", "categorisations"} <= set(inspector.get_view_names())
        assert postgres_schema.current_revision(engine) == postgres_schema.head_revision()
    finally:
        engine.dispose()


def test_0003_moves_stored_categorisations_into_transactions(empty_postgres_url: str) -> None:
    engine = make_engine(empty_postgres_url)
    try:
        postgres_schema.upgrade(engine, "0002")
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO transactions (id, source_id, description, amount, occurred_at,"
                    " operation_type, side) VALUES (:id, 's1', 'd', -1.50, now(), 'payment',"
                    " 'debit'), (:other, 's2', 'd', 2, now(), 'payment', 'credit')"
                ),
                {"id": transaction_uuid("s1"), "other": transaction_uuid("s2")},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO categorisations (transaction_id, category, model_version)"
                    " VALUES (:id, 'Food', 'm-0')"
                ),
                {"id": transaction_uuid("s1")},
            )
        before = rows(engine, "SELECT * FROM categorised_transactions")
        postgres_schema.upgrade(engine)
        after = rows(engine, "SELECT * FROM categorised_transactions")
        assert after == before and len(after) == 1
        assert after[0].category == "Food" and after[0].amount == Decimal("-1.50")
        assert count(engine, "categorisations") == 1
        store = PostgresStore(engine)
        assert store.categorised_ids([transaction_uuid("s1"), transaction_uuid("s2")]) == {
            transaction_uuid("s1")
        }
        from alembic import command

        command.downgrade(postgres_schema.alembic_config(empty_postgres_url), "0002")  # and back
        assert rows(engine, "SELECT * FROM categorised_transactions") == before
    finally:
        engine.dispose()


def test_upgrade_from_a_url_twice_is_harmless(empty_postgres_url: str) -> None:
    postgres_schema.upgrade(empty_postgres_url)
    postgres_schema.upgrade(empty_postgres_url)
    engine = make_engine(empty_postgres_url)
    try:
        postgres_schema.check_schema(engine)
    finally:
        engine.dispose()


def test_check_schema_refuses_a_database_without_schema(empty_postgres_url: str) -> None:
    engine = make_engine(empty_postgres_url)
    try:
        assert postgres_schema.current_revision(engine) is None
        with pytest.raises(ConfigurationError, match="run `python -m pipeline db upgrade`"):
            postgres_schema.check_schema(engine)
        postgres_schema.upgrade(engine)
        postgres_schema.check_schema(engine)
    finally:
        engine.dispose()


def test_check_schema_refuses_a_revision_the_code_does_not_know(
    postgres_engine: sa.Engine,
) -> None:
    with postgres_engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'from_the_future'"))
    with pytest.raises(ConfigurationError, match="at from_the_future, which this code does not"):
        postgres_schema.check_schema(postgres_engine)


def test_check_schema_passes_on_an_upgraded_database(postgres_engine: sa.Engine) -> None:
    postgres_schema.check_schema(postgres_engine)


# --- save and categorised_ids -----------------------------------------------------------------


def test_save_twice_stores_each_transaction_once(
    store: PostgresStore, postgres_engine: sa.Engine
) -> None:
    pairs = [pair(n) for n in range(50)]
    store.save(pairs)
    store.save(pairs)
    assert count(postgres_engine, "transactions") == 50
    assert count(postgres_engine, "categorisations") == 50
    assert count(postgres_engine, "categorised_transactions") == 50


def test_insert_new_writes_nothing_when_one_id_is_stored(
    store: PostgresStore, postgres_engine: sa.Engine
) -> None:
    store.save([pair(2, "Rent")])
    assert not store.insert_new(pairs_frame([pair(1), pair(2), pair(3)]))
    stored = rows(postgres_engine, "SELECT source_id, category FROM categorised_transactions")
    assert [tuple(r) for r in stored] == [("tx-2", "Rent")]
    assert store.insert_new(pairs_frame([pair(1), pair(3)]))
    assert count(postgres_engine, "categorised_transactions") == 3


def test_identical_resave_changes_nothing(store: PostgresStore, postgres_engine: sa.Engine) -> None:
    query = (
        "SELECT id, updated_at, c.categorised_at FROM transactions"
        " JOIN categorisations AS c ON transaction_id = id ORDER BY id"
    )
    store.save([pair(1), pair(2)])
    before = rows(postgres_engine, query)
    store.save([pair(1), pair(2)])
    assert rows(postgres_engine, query) == before


def test_resave_with_a_new_category_updates_it(
    store: PostgresStore, postgres_engine: sa.Engine
) -> None:
    store.save([pair(1, "Food"), pair(2, "Food")])
    store.save([pair(1, "Travel"), pair(2, "Food", amount=Decimal("99.99"))])
    stored = rows(
        postgres_engine,
        "SELECT source_id, category, amount FROM categorised_transactions ORDER BY source_id",
    )
    assert [tuple(r) for r in stored] == [
        ("tx-1", "Travel", Decimal("12.34")),
        ("tx-2", "Food", Decimal("99.99")),
    ]
    assert count(postgres_engine, "categorisations") == 2


def test_the_last_of_duplicate_ids_in_one_batch_wins(
    store: PostgresStore, postgres_engine: sa.Engine
) -> None:
    store.save([pair(1, "Food"), pair(2), pair(1, "Rent")])
    stored = rows(
        postgres_engine, "SELECT category FROM categorised_transactions WHERE source_id = 'tx-1'"
    )
    assert [r[0] for r in stored] == ["Rent"]


def test_amounts_and_timestamps_round_trip_exactly(
    store: PostgresStore, postgres_engine: sa.Engine
) -> None:
    paris = timezone(timedelta(hours=2))
    saved = [
        pair(1, amount=Decimal("-0.01"), timestamp=datetime(2024, 3, 31, 1, 59, 59, 999999, UTC)),
        pair(
            2, amount=Decimal("99999999999999.99"), timestamp=datetime(2024, 7, 1, 9, tzinfo=paris)
        ),
        pair(3, amount=Decimal("1234.50"), merchant=None, side=Side.CREDIT),
    ]
    store.save(saved)
    stored = {
        r.transaction_id: r for r in rows(postgres_engine, "SELECT * FROM categorised_transactions")
    }
    for tx, cat in saved:
        row = stored[tx.id]
        assert (row.amount, row.occurred_at, row.merchant, row.side) == (
            tx.amount,
            tx.timestamp,
            tx.merchant,
            tx.side.value,
        )
        assert row.occurred_at.tzinfo is not None
        assert (row.category, row.model_version) == (cat.category, cat.model_version)


def test_a_pair_whose_ids_differ_is_refused(store: PostgresStore) -> None:
    tx, _ = pair(1)
    with pytest.raises(ValueError, match="paired with"):
        store.save([(tx, Categorisation(transaction_uuid("other"), "Food", "m"))])


def test_categorised_ids_returns_the_stored_subset(store: PostgresStore) -> None:
    store.save([pair(1), pair(2)])
    wanted = [pair(n)[0].id for n in (1, 2, 3)]
    assert store.categorised_ids(wanted) == set(wanted[:2])
    assert store.categorised_ids([]) == set()


# --- dead letters -----------------------------------------------------------------------------


def test_a_resent_dead_letter_is_neither_duplicated_nor_changed(
    store: PostgresStore, postgres_engine: sa.Engine
) -> None:
    store.send([rejection()])
    store.send([rejection(attempts=5), rejection()])
    stored = rows(postgres_engine, "SELECT attempts, status, redrive_count FROM dead_letters")
    assert [tuple(r) for r in stored] == [(1, "pending", 0)]


def test_the_same_payload_at_two_positions_gives_two_dead_letters(
    store: PostgresStore, postgres_engine: sa.Engine
) -> None:
    store.send([rejection(line=3), rejection(line=4)])
    assert count(postgres_engine, "dead_letters") == 2


def test_dead_letter_records_its_kafka_position_and_details(
    store: PostgresStore, postgres_engine: sa.Engine
) -> None:
    tx_id = transaction_uuid("tx-9")
    rejected_at = datetime(2024, 5, 2, 8, 0, tzinfo=UTC)
    position = SourcePosition("transactions", partition=2, offset=1234567890123)
    store.send(
        [
            rejection(
                position=position,
                stage=Stage.CATEGORISE,
                reason=Reason.REJECTED_BY_MODEL,
                transaction_id=tx_id,
                error="CategoriserRejected",
                key="tx-9",
                replays=1,
                attempts=3,
                rejected_at=rejected_at,
            )
        ]
    )
    (row,) = rows(postgres_engine, "SELECT * FROM dead_letters")
    assert (row.source, row.source_position, row.line, row.partition, row.offset) == (
        "transactions",
        "transactions[2]@1234567890123",
        None,
        2,
        1234567890123,
    )
    assert (row.stage, row.reason, row.transaction_id, row.attempts) == (
        "categorise",
        "rejected_by_model",
        tx_id,
        3,
    )
    assert (row.error, row.key, row.replays) == ("CategoriserRejected", "tx-9", 1)
    assert row.first_failed_at == row.last_failed_at == rejected_at
    assert len(row.dedup_key) == 64


# --- runs -------------------------------------------------------------------------------------


def test_a_run_records_its_counts_and_details(
    store: PostgresStore, postgres_engine: sa.Engine
) -> None:
    run_id = store.start_run(
        RunKind.BATCH, "data/transactions.csv", {"chunk_size": 500, "path": Path("x")}
    )
    (running,) = rows(postgres_engine, "SELECT status, params, finished_at FROM pipeline_runs")
    assert tuple(running) == ("running", {"chunk_size": 500, "path": "x"}, None)

    outcome = Outcome(
        read=10,
        valid=8,
        categorised=6,
        already_stored=2,
        rejected=Counter({"invalid_amount": 2}),
        categories=Counter({"Food": 4, "Rent": 2}),
        warnings=Counter({"merchant_missing": 1}),
    )
    store.finish_run(run_id, RunStatus.SUCCEEDED, outcome)
    (run,) = rows(postgres_engine, "SELECT * FROM pipeline_runs")
    assert isinstance(run.id, UUID) and run.id == run_id
    counts = (run.rows_read, run.valid, run.categorised, run.already_stored, run.rejected)
    assert (run.status, counts) == ("succeeded", (10, 8, 6, 2, 2))
    assert run.rejected_by_reason == {"invalid_amount": 2}
    assert run.categories == {"Food": 4, "Rent": 2}
    assert run.warnings == {"merchant_missing": 1}
    assert run.finished_at >= run.started_at and run.error is None


def test_a_failed_run_keeps_its_error(store: PostgresStore, postgres_engine: sa.Engine) -> None:
    run_id = store.start_run(RunKind.AIRFLOW, "transactions", {})
    store.finish_run(run_id, RunStatus.FAILED, Outcome(read=3), error="StoreUnavailable: gone")
    (run,) = rows(postgres_engine, "SELECT status, rows_read, error FROM pipeline_runs")
    assert tuple(run) == ("failed", 3, "StoreUnavailable: gone")


def test_finish_run_refuses_an_unknown_status_or_run(store: PostgresStore) -> None:
    run_id = store.start_run(RunKind.BATCH, "x.csv", {})
    with pytest.raises(ValueError):
        store.finish_run(run_id, RunStatus.RUNNING, Outcome())
    with pytest.raises(LookupError):
        store.finish_run(transaction_uuid("no such run"), RunStatus.SUCCEEDED, Outcome())


# --- failures ---------------------------------------------------------------------------------


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"


def test_every_call_raises_store_unavailable_when_nothing_listens() -> None:
    engine = make_engine(closed_port_url())
    store = PostgresStore(engine)
    try:
        calls: list[Callable[[], object]] = [
            lambda: store.save([pair(1)]),
            lambda: store.categorised_ids([pair(1)[0].id]),
            lambda: store.send([rejection()]),
            lambda: store.start_run(RunKind.BATCH, "x", {}),
            lambda: store.finish_run(pair(1)[0].id, RunStatus.FAILED, Outcome()),
            lambda: postgres_schema.check_schema(engine),
        ]
        for call in calls:
            with pytest.raises(StoreUnavailable):
                call()
    finally:
        engine.dispose()


def test_store_unavailable_while_the_server_is_down_then_recovers(postgres_datadir: Path) -> None:
    datadir = postgres_datadir
    server = embedded_pg.start(datadir)
    engine = make_engine(server.url)
    store = PostgresStore(engine)
    try:
        postgres_schema.upgrade(engine)
        store.save([pair(1)])
        server.stop()
        for bulk_method in get_args(BulkMethod):
            with pytest.raises(StoreUnavailable):
                PostgresStore(engine, bulk_method=bulk_method).save([pair(2)])
        with pytest.raises(StoreUnavailable):
            store.categorised_ids([pair(1)[0].id])

        server = embedded_pg.start(datadir)
        store.save([pair(2)])
        assert store.categorised_ids([pair(1)[0].id, pair(2)[0].id]) == {
            pair(1)[0].id,
            pair(2)[0].id,
        }
    finally:
        engine.dispose()
        server.stop()


def test_a_fresh_server_gets_the_pipeline_settings_and_keeps_an_operators(
    postgres_datadir: Path,
) -> None:
    def shown(server: embedded_pg.EmbeddedPostgres) -> dict[str, str]:
        with embedded_pg.autocommit(server.url) as conn:
            return {
                name: conn.execute(sa.text(f"SHOW {name}")).scalar_one()
                for name in embedded_pg.SERVER_SETTINGS
            }

    server = embedded_pg.start(postgres_datadir)
    try:
        assert shown(server) == embedded_pg.SERVER_SETTINGS
        with embedded_pg.autocommit(server.url) as conn:
            conn.execute(sa.text("ALTER SYSTEM SET shared_buffers = '256MB'"))
    finally:
        server.stop()
    server = embedded_pg.start(postgres_datadir)
    try:
        assert shown(server)["shared_buffers"] == "256MB"
    finally:
        server.stop()


def test_integrity_errors_are_the_rows_not_an_outage(postgres_engine: sa.Engine) -> None:
    insert = sa.text(
        "INSERT INTO transactions (id, source_id, description, amount, occurred_at, "
        "operation_type, side) VALUES (:id, 's', 'd', 1, now(), 'payment', 'sideways')"
    )
    with (
        pytest.raises(StoreRejected, match="transactions_side_check"),
        translate_errors("test"),
        postgres_engine.begin() as conn,
    ):
        conn.execute(insert, {"id": transaction_uuid("s")})


def test_a_row_with_text_postgresql_cannot_hold_is_refused_alone(store: PostgresStore) -> None:
    """Defence in depth: validation rejects NUL first, but a save must still isolate it."""
    bad = pair(2)
    bad = (bad[0]._replace(description="nul \x00 inside"), bad[1])
    with pytest.raises(StoreRejected):
        store.save([pair(1), bad, pair(3)])
    store.save([pair(1), pair(3)])
    assert store.categorised_ids([pair(1)[0].id, bad[0].id]) == {pair(1)[0].id}


def test_a_read_only_database_is_systemic(postgres_url: str, postgres_engine: sa.Engine) -> None:
    name = sa.make_url(postgres_url).database
    with postgres_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on'))
    read_only = make_engine(postgres_url)
    try:
        with pytest.raises(StoreMisconfigured, match="read-only"):
            PostgresStore(read_only).save([pair(1)])
    finally:
        read_only.dispose()


def test_missing_privileges_are_systemic(postgres_url: str, postgres_engine: sa.Engine) -> None:
    with postgres_engine.begin() as conn:
        conn.execute(sa.text("DROP ROLE IF EXISTS txcat_nobody"))
        conn.execute(sa.text("CREATE ROLE txcat_nobody LOGIN"))
    nobody = make_engine(
        sa.make_url(postgres_url).set(username="txcat_nobody").render_as_string(False)
    )
    try:
        with pytest.raises(StoreMisconfigured, match="permission denied"):
            PostgresStore(nobody).save([pair(1)])
    finally:
        nobody.dispose()
        with postgres_engine.begin() as conn:
            conn.execute(sa.text("DROP OWNED BY txcat_nobody"))
            conn.execute(sa.text("DROP ROLE txcat_nobody"))


def test_make_engine_accepts_a_libpq_url() -> None:
    engine = make_engine("postgresql://u:p@db.example:5432/txcat")
    assert engine.url.drivername == "postgresql+psycopg"
    engine.dispose()


# --- embedded server ----------------------------------------------------------------------------


def test_a_server_started_with_up_outlives_its_process(postgres_datadir: Path) -> None:
    datadir = postgres_datadir
    script = (
        "import sys; from pathlib import Path; from pipeline.adapters.postgres import embedded;"
        " print(embedded.up(Path(sys.argv[1])))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = subprocess.run(
        [sys.executable, "-c", script, str(datadir)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    try:
        url = embedded_pg.running_url(datadir)
        assert url is not None and url == started.stdout.strip()
        engine = make_engine(url)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
        engine.dispose()
    finally:
        assert embedded_pg.down(datadir) is True
    assert embedded_pg.running_url(datadir) is None
    assert embedded_pg.down(datadir) is False


def test_the_redrive_lock_is_exclusive_across_connections(postgres_engine: sa.Engine) -> None:
    from pipeline.adapters.postgres.dead_letters import PostgresDeadLetterStore, RedriveBusy

    first, second = (
        PostgresDeadLetterStore(postgres_engine),
        PostgresDeadLetterStore(postgres_engine),
    )
    with first.exclusive(), pytest.raises(RedriveBusy), second.exclusive():
        pass
    with second.exclusive():  # released on the way out
        pass


def test_pending_dead_letters_come_in_pages_by_id(
    store: PostgresStore, postgres_engine: sa.Engine
) -> None:
    from pipeline.adapters.postgres.dead_letters import PostgresDeadLetterStore

    store.send(
        [rejection(None, position=SourcePosition("tx", partition=0, offset=n)) for n in range(5)]
    )
    parked = PostgresDeadLetterStore(postgres_engine)
    first = parked.pending(None, None, 0, 2)
    rest = parked.pending(None, None, first[-1].id, 10)
    assert len(first) == 2 and len(rest) == 3
    assert [r.id for r in first + rest] == sorted(r.id for r in first + rest)
