"""What the Airflow DAG calls: open a run, plan chunks, categorise one chunk, close the run.

Each function takes and returns small JSON-friendly values (they travel through XCom):
paths, line numbers, counts and run ids, never a URL or a secret. Connections are read from
the environment (DATABASE_URL, ML_API_URL…) by the settings classes, in the worker; without
DATABASE_URL a task refuses to start.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from uuid import UUID

from pipeline import bootstrap
from pipeline.config import BatchSettings, DatabaseSettings, MlApiSettings, ValidationSettings
from pipeline.domain.errors import ConfigurationError
from pipeline.domain.model import Outcome, RunKind
from pipeline.domain.plans import FilePlan, Window
from pipeline.domain.ports import TransactionFile
from pipeline.service_layer.files import WHOLE_FILE, categorise_window, plan_windows
from pipeline.service_layer.runs import add_up, reject_share

logger = logging.getLogger(__name__)


def open_run(path: str, params: dict[str, Any], project_root: str) -> dict[str, Any]:
    """Check the file cheaply (inside the data root, exists, readable, header, size) and record
    a run as running.

    Returns ``{"run_id": …, "file": …}`` with the file's resolved path; the run id is what
    `close_run` finishes. Rows are validated once, by the chunks: the data-quality summary
    comes from their outcomes.
    """
    database = DatabaseSettings()
    bootstrap.database_url(database)  # refuse without DATABASE_URL before anything else
    confined = confine(path, Path(project_root), BatchSettings().data_root)
    facts = bootstrap.open_file(confined).facts()
    with bootstrap.run_recorder(database) as runs:
        run_id = runs.open(RunKind.AIRFLOW, facts.path, params)
    return {"run_id": str(run_id), "file": asdict(facts)}


def confine(raw: str, project_root: Path, data_root: Path) -> Path:
    """The file `raw` names, relative to the project, only if it lies inside the data root.

    Symlinks are resolved first, so no path (absolute, `..`, a link) reaches outside it:
    `/proc/self/environ` or a password file can never be read into a task log.
    """
    root = (project_root / data_root).resolve()
    path = (project_root / raw).resolve()
    if not path.is_relative_to(root):
        raise ConfigurationError(f"path {raw[:200]!r} is outside the data folder {root}")
    return path


def secrets_to_mask() -> list[str]:
    """What a task log must never show: the database URL and its password."""
    url = DatabaseSettings().database_url
    if url is None:
        return []
    text = url.get_secret_value()
    password = urlsplit(text).password
    if not password:
        return [text]
    return list(dict.fromkeys([text, password, unquote(password)]))  # as written and decoded


# Airflow refuses to map more tasks than [core] max_map_length (1,024 by default).
MAX_MAPPED_CHUNKS = 1000


def plan_chunks(path: str, chunk_size: int) -> list[dict[str, Any]]:
    """Windows covering every row once: `chunk_size` rows each, or more when the file would
    need more than MAX_MAPPED_CHUNKS chunks (a 3,000,000-row file still runs).

    Planned in one pass over the file: each window carries its byte offsets (a chunk reads only
    its own bytes), its digest and the file's size and fingerprint (a chunk refuses a file
    replaced since), and the lines in it that repeat an earlier id (the duplicate-id rule for
    the whole file, found with the ids spilled to disk).
    """
    file = bootstrap.open_file(Path(path))
    rows = file.estimate_rows()
    size = max(chunk_size, -(-rows // MAX_MAPPED_CHUNKS))
    if size > chunk_size:
        logger.info("%d rows: chunks of %d rows instead of %d (at most %d chunks)",
                    rows, size, chunk_size, MAX_MAPPED_CHUNKS)  # fmt: skip
    plan = plan_windows(file, size)
    facts = {"size": plan.size, "fingerprint": plan.fingerprint}
    return [
        {
            "path": path,
            "first_line": window.first_line,
            "last_line": window.last_line,
            "window": {**asdict(window), "repeated": list(window.repeated), **facts},
        }
        for window in plan.windows
    ]


def run_chunk(
    path: str, first_line: int, last_line: int, window: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Categorise the rows of one planned window (lines [first_line, last_line]); returns the
    counts. The file must still be the one planned (FileChanged otherwise).

    Idempotent (see `categorise_window`): an Airflow retry or a re-trigger changes nothing.
    """
    size = BatchSettings().chunk_size
    with bootstrap.batch_app(DatabaseSettings(), MlApiSettings(), ValidationSettings()) as app:
        file = bootstrap.open_file(Path(path))
        plan, planned = _planned(file, first_line, last_line, window)
        outcome = categorise_window(app.use_case, file, plan, planned, size)
    logger.info("lines %d-%d: %s", first_line, last_line, outcome.as_dict())
    return outcome.as_dict()


def _planned(
    file: TransactionFile, first_line: int, last_line: int, window: dict[str, Any] | None
) -> tuple[FilePlan, Window]:
    if window is None:  # a chunk planned before windows had offsets: plan the file again
        plan = plan_windows(file, WHOLE_FILE)
        whole = plan.windows[0]
        repeated = tuple(line for line in whole.repeated if first_line <= line <= last_line)
        return plan, replace(whole, repeated=repeated)
    values = dict(window)
    plan_facts = (values.pop("size"), values.pop("fingerprint"))
    planned = Window(**{**values, "repeated": tuple(values["repeated"])})
    return FilePlan(path=str(file.facts().path), size=plan_facts[0], fingerprint=plan_facts[1],
                    windows=(planned,)), planned  # fmt: skip


def close_run(
    run_id: str, chunks: int, outcomes: Sequence[dict[str, Any]], max_reject_share: float
) -> dict[str, Any]:
    """Add up the chunks and finish the run: failed if chunks are missing or too many rejects.

    Raises `RunFailed` after recording a failed run, so that the Airflow run fails too.
    """
    total = add_up([Outcome.from_dict(item) for item in outcomes])
    summary = {**total.as_dict(), "reject_share": round(reject_share(total), 6), "run_id": run_id}
    logger.info("run summary: %s", summary)
    with bootstrap.run_recorder(DatabaseSettings(), max_reject_share) as runs:
        runs.close(UUID(run_id), total, missing_chunks=max(chunks - len(outcomes), 0))
    return summary
