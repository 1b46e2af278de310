"""The Airflow DAG end to end with `dag.test()`: real PostgreSQL, real ML API, exact final state."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4, uuid5

import pytest
import sqlalchemy as sa

from pipeline.adapters.postgres import embedded as embedded_pg
from pipeline.adapters.postgres.embedded import EmbeddedPostgres
from pipeline.domain.ids import TRANSACTION_NAMESPACE
from tests.fakes import rule
from tests.hostile import corpus
from tests.support.airflow import AirflowWorker
from tests.support.final_state import final_state
from tests.support.helpers import HEADER, pipeline_env, stored
from tests.support.services import MlApiProcess

pytestmark = [
    pytest.mark.airflow,
    pytest.mark.skipif(importlib.util.find_spec("airflow") is None, reason="needs apache-airflow"),
]

DAG_ID = "categorise_transactions"


@pytest.fixture(scope="module")
def airflow(
    tmp_path_factory: pytest.TempPathFactory, postgres_server: EmbeddedPostgres
) -> Iterator[AirflowWorker]:
    """One Airflow process for the module (its first dag.test is the slow one), metadata in PG."""
    name = f"airflow_{uuid4().hex[:12]}"
    metadata_url = embedded_pg.create_database(postgres_server.url, name)
    worker = AirflowWorker(tmp_path_factory.mktemp("airflow_home"), metadata_url).start()
    yield worker
    worker.stop()
    embedded_pg.drop_database(postgres_server.url, name)


def airflow_runs(engine: sa.Engine) -> list[tuple[str, str, int, int, int, int]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT kind, status, rows_read, categorised, already_stored, rejected "
                "FROM pipeline_runs ORDER BY started_at"
            )
        )
        return [tuple(row) for row in rows]


def test_dag_categorises_the_seed_file_and_a_retrigger_stores_no_duplicate(
    airflow: AirflowWorker,
    seed_file: Path,
    postgres_url: str,
    postgres_engine: sa.Engine,
    ml_api: MlApiProcess,
) -> None:
    conf = {"path": str(seed_file), "chunk_size": 2500}
    first = airflow.test_dag(DAG_ID, conf, pipeline_env(postgres_url, ml_api))
    assert first.state == "success", airflow.log_tail()
    assert first.states("categorise_chunk") == ["success"] * 4
    rows = stored(postgres_engine)
    assert set(rows) == {uuid5(TRANSACTION_NAMESPACE, str(i)) for i in range(1, 10_001)}
    assert all(category == rule(tid) for tid, (_, category) in rows.items())
    with postgres_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM dead_letters")).scalar_one() == 0
    assert airflow_runs(postgres_engine) == [("airflow", "succeeded", 10_000, 10_000, 0, 0)]

    again = airflow.test_dag(DAG_ID, conf, pipeline_env(postgres_url, ml_api))
    assert again.state == "success", airflow.log_tail()
    with postgres_engine.connect() as conn:
        total, distinct = conn.execute(
            sa.text("SELECT count(*), count(DISTINCT source_id) FROM categorised_transactions")
        ).one()
    assert (total, distinct) == (10_000, 10_000)
    assert airflow_runs(postgres_engine)[1] == ("airflow", "succeeded", 10_000, 0, 10_000, 0)


def dirty_file(path: Path) -> tuple[set[str], list[tuple[int, str]]]:
    """250 rows, one in five rejected: the ids that must be stored and the expected dead letters."""
    lines, good, bad = [HEADER], set(), []
    for row in range(1, 251):
        line = row + 1
        if row % 5 == 0:
            lines.append(f'{row};"Bad amount";abc;"2024-01-01 10:00:00";"Shop";"payment";"debit"')
            bad.append((line, "invalid_amount"))
        elif row == 201:  # repeats id 1 in the third chunk: rejected whatever the chunking
            lines.append('1;"Repeated id";-1,00;"2024-01-01 10:00:00";"Shop";"payment";"debit"')
            bad.append((line, "duplicate_id"))
        else:
            when = "2024-01-01 10:00:00"
            lines.append(f'{row};"Row {row}";-{row},50;"{when}";"Shop";"payment";"debit"')
            good.add(str(row))
    path.write_text("\n".join(lines) + "\n")
    return good, bad


def test_dirty_file_above_max_reject_share_fails_the_run_but_keeps_valid_rows_and_dead_letters(
    airflow: AirflowWorker,
    tmp_path: Path,
    postgres_url: str,
    postgres_engine: sa.Engine,
    ml_api: MlApiProcess,
) -> None:
    path = tmp_path / "dirty.csv"
    good, bad = dirty_file(path)
    conf = {"path": str(path), "chunk_size": 100, "max_reject_share": 0.1}
    env = pipeline_env(postgres_url, ml_api, BATCH_DATA_ROOT=str(tmp_path))
    run = airflow.test_dag(DAG_ID, conf, env)
    assert run.state == "failed"
    assert run.states("categorise_chunk") == ["success"] * 3
    assert run.states("close_run") == ["failed"]
    rows = stored(postgres_engine)
    assert {source for source, _ in rows.values()} == good
    assert all(category == rule(tid) for tid, (_, category) in rows.items())
    with postgres_engine.connect() as conn:
        letters = conn.execute(sa.text("SELECT line, reason FROM dead_letters ORDER BY line")).all()
        status, error = conn.execute(
            sa.text("SELECT status, error FROM pipeline_runs WHERE kind = 'airflow'")
        ).one()
    assert [tuple(letter) for letter in letters] == bad
    assert len(rows) + len(letters) == 250
    assert status == "failed"
    assert "20.4% of rows rejected" in error


def test_the_hostile_files_end_in_the_same_state_through_the_dag(
    airflow: AirflowWorker,
    tmp_path: Path,
    postgres_url: str,
    postgres_engine: sa.Engine,
    ml_api: MlApiProcess,
) -> None:
    day_one, day_two = corpus.write(tmp_path)
    env = pipeline_env(postgres_url, ml_api, BATCH_DATA_ROOT=str(tmp_path))
    for path in (day_one, day_two):
        conf = {"path": str(path), "chunk_size": 100, "max_reject_share": 1.0}
        assert airflow.test_dag(DAG_ID, conf, env).state == "success"
    state = final_state(postgres_engine)
    assert state.stored_ids == corpus.expected_stored()
    assert state.dead_letters == corpus.expected_dead_letters()


def test_a_path_outside_the_data_folder_fails_the_run_before_reading_it(
    airflow: AirflowWorker, tmp_path: Path, postgres_url: str, ml_api: MlApiProcess
) -> None:
    env = pipeline_env(postgres_url, ml_api, BATCH_DATA_ROOT=str(tmp_path))
    run = airflow.test_dag(DAG_ID, {"path": "/proc/self/environ"}, env)
    assert run.state == "failed"
    assert run.states("open_run") == ["failed"]
