"""The Airflow DAG file imports cleanly and declares what the pipeline needs (DagBag, no run)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.airflow import AirflowWorker

pytestmark = [
    pytest.mark.airflow,
    pytest.mark.skipif(importlib.util.find_spec("airflow") is None, reason="needs apache-airflow"),
]

DAG_ID = "categorise_transactions"


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    worker = AirflowWorker(tmp_path_factory.mktemp("airflow_dagbag")).start()
    try:
        yield worker.describe()
    finally:
        worker.stop()


@pytest.fixture(scope="module")
def dag(dagbag: dict[str, Any]) -> dict[str, Any]:
    description: dict[str, Any] = dagbag["dags"][DAG_ID]
    return description


def test_dags_folder_imports_without_errors(dagbag: dict[str, Any]) -> None:
    assert dagbag["import_errors"] == {}
    assert list(dagbag["dags"]) == [DAG_ID]


def test_dag_form_offers_path_chunk_size_and_max_reject_share(dag: dict[str, Any]) -> None:
    params = dag["params"]
    assert set(params) == {"path", "chunk_size", "max_reject_share"}
    assert params["path"]["value"] == "data/transactions.csv"
    assert params["path"]["schema"]["type"] == "string"
    assert params["chunk_size"]["schema"] == {
        "type": "integer",
        "minimum": 100,
        "maximum": 1_000_000,
        "title": "Rows per chunk",
    }
    assert params["chunk_size"]["value"] == 2500
    assert params["max_reject_share"]["schema"]["type"] == "number"
    share = params["max_reject_share"]["schema"]
    assert (share["minimum"], share["maximum"]) == (0, 1)
    assert 0 < params["max_reject_share"]["value"] < 1


def test_tasks_run_open_plan_one_mapped_chunk_task_then_close(dag: dict[str, Any]) -> None:
    tasks = dag["tasks"]
    assert set(tasks) == {"open_run", "plan", "categorise_chunk", "close_run"}
    assert tasks["open_run"]["upstream"] == []
    assert tasks["plan"]["upstream"] == ["open_run"]
    assert tasks["categorise_chunk"]["upstream"] == ["plan"]
    assert tasks["close_run"]["upstream"] == ["categorise_chunk", "open_run", "plan"]
    assert tasks["categorise_chunk"]["mapped"] is True
    assert dag["max_active_runs"] == 1


def test_chunks_share_the_ml_api_pool_and_retry_while_close_run_always_records_the_run(
    dag: dict[str, Any],
) -> None:
    tasks = dag["tasks"]
    assert tasks["categorise_chunk"]["pool"] == "ml_api"
    assert tasks["categorise_chunk"]["retries"] >= 2
    assert tasks["close_run"]["trigger_rule"] == "all_done"
    assert tasks["open_run"]["retries"] == 0  # each attempt would record a run of its own
