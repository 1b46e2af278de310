"""What the Airflow DAG calls: open a run, plan chunks, categorise one chunk, close the run.

Each function takes and returns small JSON-friendly values (they travel through XCom):
paths, line numbers, counts and run ids, never a URL or a secret. Connections are read from
the environment (DATABASE_URL, ML_API_URL…) by the settings classes, in the worker.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from pipeline.adapters.csv_source import CsvTransactionSource
from pipeline.adapters.postgres import PostgresStore
from pipeline.config import BatchSettings, DatabaseSettings, MlApiSettings, ValidationSettings
from pipeline.domain.errors import InvalidRecord, PipelineError
from pipeline.domain.model import Outcome
from pipeline.domain.validation import Validator
from pipeline.entrypoints.batch import categorise_window, plan_windows
from pipeline.entrypoints.bootstrap import core, database, validation_rules
from pipeline.service import RepeatedIds

logger = logging.getLogger(__name__)

RUN_KIND = "airflow"


class RunFailed(PipelineError):
    """The run is recorded as failed: too many rows rejected, or chunks that never finished."""


@dataclass(frozen=True)
class FileReport:
    """What a quick look at the file found, before any ML call."""

    path: str
    size_bytes: int
    rows: int
    valid: int
    invalid_by_reason: dict[str, int]
    duplicate_ids: int


def open_run(path: str, params: dict[str, Any]) -> dict[str, Any]:
    """Check the file (exists, header, data quality) and record a run as running.

    Returns ``{"run_id": …, "report": …}``; the run id is what `close_run` finishes.
    """
    report = inspect_file(path)
    with _store() as store:
        run_id = store.start_run(RUN_KIND, path, params)
    logger.info("run %s opened for %s", run_id, path)
    return {"run_id": str(run_id), "report": report}


def inspect_file(path: str) -> dict[str, Any]:
    """Count rows, invalid rows by reason and repeated ids; raises if the file is unusable."""
    validator = Validator(validation_rules(ValidationSettings()))
    repeated = RepeatedIds()  # the same rule as a run, so the report predicts its rejects
    invalid: Counter[str] = Counter()
    rows = 0
    for record in CsvTransactionSource(Path(path)).records():
        rows += 1
        try:
            repeated.validate(validator, record)
        except InvalidRecord as exc:
            invalid[exc.reason] += 1
    duplicates = invalid.pop("duplicate_id", 0)
    valid = rows - sum(invalid.values()) - duplicates
    report = FileReport(path, Path(path).stat().st_size, rows, valid, dict(invalid), duplicates)
    logger.info("file report: %s", report)
    return asdict(report)


def plan_chunks(path: str, chunk_size: int) -> list[dict[str, int]]:
    """Line windows of at most `chunk_size` rows each, covering every row once."""
    return [
        {"first_line": first, "last_line": last}
        for first, last in plan_windows(Path(path), chunk_size)
    ]


def run_chunk(path: str, first_line: int, last_line: int) -> dict[str, Any]:
    """Categorise the rows starting on lines [first_line, last_line]; returns the counts.

    Idempotent: stored rows are skipped and dead letters are upserted, so an Airflow retry or
    a re-trigger on the same file changes nothing. Ids on earlier lines are remembered first,
    so a repeated id is rejected in the same place whatever the chunking.
    """
    size = BatchSettings().chunk_size
    with core(DatabaseSettings(), MlApiSettings(), ValidationSettings()) as built:
        outcome = categorise_window(built.use_case, Path(path), first_line, last_line, size)
    logger.info("lines %d-%d: %s", first_line, last_line, outcome)
    return outcome.as_dict()


def close_run(
    run_id: str, chunks: int, outcomes: Sequence[dict[str, Any]], max_reject_share: float
) -> dict[str, Any]:
    """Add up the chunks and finish the run: failed if chunks are missing or too many rejects.

    Raises `RunFailed` after recording a failed run, so that the Airflow run fails too.
    """
    total = Outcome()
    for item in outcomes:
        total.add(outcome_from_dict(item))
    share = total.rejected_total / total.read if total.read else 0.0
    error = None
    if len(outcomes) < chunks:
        error = f"{chunks - len(outcomes)} of {chunks} chunks did not finish"
    elif share > max_reject_share:
        error = f"{share:.1%} of rows rejected, above the {max_reject_share:.1%} allowed"
    with _store() as store:
        store.finish_run(UUID(run_id), "failed" if error else "succeeded", total, error)
    summary = {**total.as_dict(), "reject_share": round(share, 6), "run_id": run_id}
    logger.info("run summary: %s", summary)
    if error:
        raise RunFailed(error)
    return summary


def outcome_from_dict(item: dict[str, Any]) -> Outcome:
    """Rebuild an Outcome from its `as_dict()` form."""
    outcome = Outcome(
        read=int(item["read"]),
        valid=int(item["valid"]),
        categorised=int(item["categorised"]),
        already_stored=int(item["already_stored"]),
    )
    for name in ("rejected_by_reason", "categories", "warnings", "new_operation_types"):
        target = outcome.rejected if name == "rejected_by_reason" else getattr(outcome, name)
        target.update(item.get(name) or {})
    return outcome


@contextmanager
def _store() -> Iterator[PostgresStore]:
    """A PostgresStore on DATABASE_URL for one call; its engine is disposed on the way out."""
    with database(DatabaseSettings()) as engine:
        yield PostgresStore(engine)
