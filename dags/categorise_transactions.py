"""Airflow DAG: categorise a CSV file of transactions into PostgreSQL, chunk by chunk.

`open_run` checks the file (exists, readable, header, size) and records a run; `plan` cuts
it into line windows; one mapped
`categorise_chunk` per window runs the pipeline's use case (pool `ml_api` caps the calls in
flight, retries cover outages; every write is an idempotent upsert, so retries and
re-triggers are harmless); `close_run` adds the counts up and fails the run when chunks are
missing or the share of rejected rows is above `max_reject_share` (stored rows stay).

The DAG only schedules `pipeline` code. DATABASE_URL and ML_API_URL come from the
environment of the Airflow workers, never from XCom.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import Param, TriggerRule, XComArg, dag, get_current_context, task

ML_POOL = "ml_api"
PROJECT_ROOT = Path(__file__).resolve().parents[1]


@dag(
    dag_id="categorise_transactions",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["transactions", "batch"],
    doc_md=__doc__,
    params={
        "path": Param(
            "data/transactions.csv",
            type="string",
            title="CSV file",
            description=(
                "Path of the file, relative to the project folder (or absolute); it must lie "
                "inside the data folder (BATCH_DATA_ROOT, default data/)."
            ),
        ),
        "chunk_size": Param(
            2500,
            type="integer",
            minimum=100,
            maximum=1_000_000,
            title="Rows per chunk",
            description="One mapped task per chunk.",
        ),
        "max_reject_share": Param(
            0.05,
            type="number",
            minimum=0,
            maximum=1,
            title="Maximum share of rejected rows",
            description="Above it the run fails (stored rows stay).",
        ),
    },
)
def categorise_transactions() -> None:
    @task
    def open_run() -> dict[str, Any]:
        from pipeline.entrypoints.airflow_tasks import open_run as open_pipeline_run

        _mask_secrets()
        params = get_current_context()["params"]
        return open_pipeline_run(str(params["path"]), dict(params), str(PROJECT_ROOT))

    @task
    def plan(opened: dict[str, Any]) -> list[dict[str, Any]]:
        from pipeline.entrypoints.airflow_tasks import plan_chunks

        params = get_current_context()["params"]
        return plan_chunks(opened["file"]["path"], int(params["chunk_size"]))

    @task(
        pool=ML_POOL,
        retries=3,
        retry_delay=pendulum.duration(seconds=10),
        retry_exponential_backoff=True,
        max_retry_delay=pendulum.duration(minutes=5),
        # A hung call must not hold a pool slot forever; a chunk of 2,500 rows takes seconds.
        execution_timeout=pendulum.duration(minutes=30),
    )
    def categorise_chunk(
        path: str, first_line: int, last_line: int, window: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        from pipeline.entrypoints.airflow_tasks import run_chunk

        _mask_secrets()
        return run_chunk(path, first_line, last_line, window)

    # all_done: a chunk that failed for good still gets the run recorded as failed.
    @task(trigger_rule=TriggerRule.ALL_DONE)
    def close_run(
        opened: dict[str, Any], chunks: list[dict[str, Any]], outcomes: list[dict[str, Any]]
    ) -> dict[str, Any]:
        from pipeline.entrypoints.airflow_tasks import close_run as close_pipeline_run

        _mask_secrets()
        params = get_current_context()["params"]
        # A slice fetches the finished chunks' results in one call (a failed chunk has none).
        done = list(outcomes[:])
        share = float(params["max_reject_share"])
        return close_pipeline_run(opened["run_id"], len(chunks), done, share)

    # Task calls return XComArgs at parse time, where the task functions declare values.
    opened = open_run()
    chunks: XComArg = plan(opened)  # type: ignore[arg-type]
    close_run(opened, chunks, categorise_chunk.expand_kwargs(chunks))  # type: ignore[arg-type]


def _mask_secrets() -> None:
    """Airflow hides these values in every task log line from here on."""
    from airflow.sdk.log import mask_secret

    from pipeline.entrypoints.airflow_tasks import secrets_to_mask

    for secret in secrets_to_mask():
        mask_secret(secret)


categorise_transactions()
