"""Airflow faults: a chunk task killed and retried by Airflow; the file replaced before a retry."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from contextlib import suppress
from pathlib import Path
from typing import Any
from uuid import uuid4

import psutil

from bench.chaos.airflow import DAG_ID, ChaosAirflow
from bench.chaos.probe import Database
from bench.chaos.report import Row
from bench.chaos.services import ChaosServices
from bench.chaos.verify import check_tables, source_ids
from devstack.generate import generate

# Each ML call 1.5 s slower while a chunk is picked to be killed: chunks last seconds.
SLOW_ML_MS = 1_500
CHUNK_ROWS = 5_000


def airflow_chunk_kill9(services: ChaosServices, row: Row, rows: int = 20_000) -> None:
    """A running `categorise_chunk` task SIGKILLed; Airflow retries it; the run succeeds."""
    airflow = services.airflow()
    path = _file(services.root / row.scenario / "rows.csv", rows, seed=31, prefix="k")
    run_id = f"chaos_kill9_{uuid4().hex[:8]}"
    db = Database(services.postgres.url(airflow.database))
    try:
        with services.proxy.ml_api.toxic("latency", latency=SLOW_ML_MS):
            airflow.api.run_once(DAG_ID, run_id, {"path": str(path), "chunk_size": CHUNK_ROWS})
            ids = source_ids(rows, "k")
            victim = _kill_a_running_chunk(airflow, run_id, db, ids)
        killed = time.monotonic()
        time.sleep(0.5)  # let PostgreSQL finish a COMMIT the victim had sent
        # Rows of the window stored now are read again by the retry and skipped.
        row.replayed = db.scalar(
            "SELECT count(*) FROM categorised_transactions WHERE source_id = ANY(:ids)",
            ids=_window(ids, victim),
        )
        state = airflow.api.wait_for_run(DAG_ID, run_id, 600)
        row.recover_s.append(time.monotonic() - killed)
        if state != "success":
            row.problems.append(f"DAG run {state} after the kill")
        retried = _instance(airflow, run_id, victim)
        if retried["state"] != "success" or int(retried["try_number"]) < 2:
            row.problems.append(f"killed chunk not retried to success: {retried['state']}")
        check_tables(db, source_ids(rows, "k"), Counter(), row, prefix="k")
        row.notes.append(f"chunk {victim} killed, try {retried['try_number']} succeeded")
    finally:
        db.close()


def airflow_file_replaced(services: ChaosServices, row: Row, rows: int = 20_000) -> None:
    """A chunk killed and the file replaced before Airflow retries it: the run must fail,
    naming the change, with no row of the new file stored (never a mix of two files)."""
    airflow = services.airflow()
    path = _file(services.root / row.scenario / "rows.csv", rows, seed=41, prefix="b")
    other = _file(services.root / row.scenario / "other.csv", rows, seed=43, prefix="r")
    run_id = f"chaos_replaced_{uuid4().hex[:8]}"
    db = Database(services.postgres.url(airflow.database))
    try:
        with services.proxy.ml_api.toxic("latency", latency=SLOW_ML_MS):
            airflow.api.run_once(DAG_ID, run_id, {"path": str(path), "chunk_size": CHUNK_ROWS})
            _kill_a_running_chunk(airflow, run_id, db, source_ids(rows, "b"))
            os.replace(other, path)  # same name, other rows: what a careless upload does
        replaced = time.monotonic()
        state = airflow.api.wait_for_run(DAG_ID, run_id, 900)
        row.recover_s.append(time.monotonic() - replaced)
        if state != "failed":
            row.problems.append(f"DAG run {state}: it must fail once the file changed")
        if "changed since it was planned" not in airflow.task_logs():
            row.problems.append("no task log names the change of the file")
        mixed = db.scalar(
            "SELECT count(*) FROM categorised_transactions WHERE starts_with(source_id, 'r')"
        )
        if mixed:
            row.problems.append(f"{mixed} rows of the replacing file stored: two files mixed")
        check_tables(db, source_ids(rows, "b"), Counter(), row, prefix="b", complete=False)
        row.notes.append(
            f"run {state}; {row.stored} rows stored by chunks done before the change, "
            f"{mixed} of the new file"
        )
    finally:
        db.close()


def _file(path: Path, rows: int, seed: int, prefix: str) -> Path:
    """A generated file whose source ids carry ``prefix`` (each scenario its own ids)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    generate(path, rows, seed)
    header, *lines = path.read_text().split("\n")
    path.write_text("\n".join([header, *(prefix + line for line in lines)]))
    return path


def _kill_a_running_chunk(
    airflow: ChaosAirflow, run_id: str, db: Database, ids: list[str], timeout: float = 300
) -> int:
    """SIGKILL the first chunk seen running once part of its window is stored (``ids``: the
    file's source ids, window i holding ids[i*CHUNK_ROWS:…]); returns its map index."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for item in airflow.api.task_instances(DAG_ID, run_id):
            if item["task_id"] != "categorise_chunk" or item["state"] != "running":
                continue
            process = airflow.task_process(str(item["id"]))
            index = int(item["map_index"])
            if process is not None and _partly_stored(db, _window(ids, index), process):
                with suppress(psutil.NoSuchProcess):
                    process.send_signal(signal.SIGKILL)
                    return index
        time.sleep(0.3)
    raise TimeoutError(f"no categorise_chunk task of {run_id} seen running mid-window")


def _window(ids: list[str], index: int) -> list[str]:
    return ids[index * CHUNK_ROWS : (index + 1) * CHUNK_ROWS]


def _partly_stored(db: Database, window: list[str], process: psutil.Process) -> bool:
    """Wait while the task runs until some, not all, of its window is stored."""
    query = "SELECT count(*) FROM categorised_transactions WHERE source_id = ANY(:ids)"
    while process.is_running():
        if 0 < db.scalar(query, ids=window) < len(window):
            return True
        time.sleep(0.2)
    return False


def _instance(airflow: ChaosAirflow, run_id: str, map_index: int) -> dict[str, Any]:
    for item in airflow.api.task_instances(DAG_ID, run_id):
        if item["task_id"] == "categorise_chunk" and int(item["map_index"]) == map_index:
            return item
    raise LookupError(f"no chunk {map_index} in {run_id}")
