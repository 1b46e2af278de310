"""Each stage of the batch hot path alone, on the same generated file: its ceiling in rows/s.

- CSV parse: the file read block by block into raw columnar chunks (no validation);
- plan: the one pass that cuts windows and spills every id to find repeated ids;
- validation: the rules, the ids and the content fingerprints on those chunks;
- ML API: categorised batches over HTTP (2 threads, 1,000 rows a call) against the real API;
- COPY upsert: categorised chunks into a fresh database (first insert, then an identical
  re-upsert), and the "already stored" look-up for ids absent and present.

Each figure is the stage's own wall time on this machine (the pipeline's CPU for the in-process
stages; for the ML API and PostgreSQL, their CPU per row is reported too).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import polars as pl
from common import CpuMeter, MlApi, fresh_database, postmaster_pid

from pipeline.adapters.csv_source import CsvTransactionFile
from pipeline.adapters.ml_http import HttpCategoriser, make_client
from pipeline.adapters.postgres import embedded as embedded_pg
from pipeline.adapters.postgres.store import PostgresStore, make_engine
from pipeline.domain.fingerprints import content_sha256
from pipeline.domain.validation import Validator

CHUNK = 50_000
_ABSENT = uuid.UUID("5a1f0c2e-3b7d-4e8a-9c61-0d2f4b8e7a13")  # never a stored id's namespace


@dataclass
class Stage:
    """One stage's measurement."""

    name: str
    rows: int
    seconds: float
    note: str = ""
    cpu_us_per_row: float | None = None  # of the service doing the work, when not this process

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def _timed(work: Callable[[], int]) -> tuple[int, float]:
    started = time.perf_counter()
    rows = work()
    return rows, time.perf_counter() - started


def csv_stages(path: Path) -> tuple[list[Stage], list[pl.DataFrame]]:
    """CSV parse, plan and validation; returns the valid chunks (categorised later)."""
    file = CsvTransactionFile(path)
    header = file._header()
    size = path.stat().st_size
    frames: list[pl.DataFrame] = []

    def parse() -> int:
        frames.clear()
        for _, _, block in file._blocks(header, header.data_start, size, 2, CHUNK):
            frames.append(block.chunk.frame)
        return sum(frame.height for frame in frames)

    rows, parse_s = _timed(parse)
    _, plan_s = _timed(lambda: file.plan(CHUNK * 10).rows)
    validator = Validator()
    valid: list[pl.DataFrame] = []

    def validate() -> int:
        for frame in frames:
            checked = validator.check(frame).valid
            valid.append(checked.with_columns(content_sha256()))
        return rows

    _, validate_s = _timed(validate)
    return [
        Stage("CSV parse (blocks → raw columns)", rows, parse_s),
        Stage("plan (windows, ids spilled, repeats)", rows, plan_s),
        Stage("validation (rules, ids, fingerprints)", rows, validate_s),
    ], valid


def ml_stage(api: MlApi, valid: list[pl.DataFrame], rows: int) -> tuple[Stage, list[pl.DataFrame]]:
    """Batches of 1,000 rows over HTTP with 2 threads, as the use case sends them."""
    frame = pl.concat(valid).head(rows)
    batches = [frame.slice(start, 1000) for start in range(0, frame.height, 1000)]
    with make_client(api.url, 30.0, 4) as client:
        categoriser = HttpCategoriser(client)
        categoriser.categorise_batch(batches[0])  # warm-up: connections, imports
        meter = CpuMeter({"ml_api": api.pid}).start()
        started = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(categoriser.categorise_batch, batches))
        seconds = time.perf_counter() - started
        cpu = meter.stop()["ml_api"]
    categorised = [
        batch.with_columns(answer.select("category", "model_version"))
        for batch, answer in zip(batches, answers, strict=True)
    ]
    stage = Stage("ML API (HTTP, 2 threads, 1,000/call)", frame.height, seconds,
                  cpu_us_per_row=cpu / frame.height * 1e6)  # fmt: skip
    return stage, categorised


def store_stages(server: embedded_pg.EmbeddedPostgres, rows: pl.DataFrame) -> list[Stage]:
    """Upsert in chunks of 50,000: first insert, identical re-upsert; stored look-ups."""
    url = fresh_database(server, f"bench_store_{int(time.time())}")
    engine = make_engine(url)
    store = PostgresStore(engine)
    chunks = [rows.slice(start, CHUNK) for start in range(0, rows.height, CHUNK)]
    stages = []
    try:
        for label in ("COPY upsert, new rows", "COPY upsert, identical rows (no-op)"):
            meter = CpuMeter({"postgres": postmaster_pid(server)}).start()
            _, seconds = _timed(lambda: _upsert_all(store, chunks))
            cpu = meter.stop()["postgres"]
            stages.append(Stage(label, rows.height, seconds, "", cpu / rows.height * 1e6))
        # Ids spread over the whole key space, as real ids are: consecutive ones would all
        # land on the same few index pages and make the look-up look cheaper than it is.
        fresh = pl.Series([str(uuid.uuid5(_ABSENT, str(n))) for n in range(rows.height)])
        for label, ids in (("look-up, ids absent", fresh), ("look-up, ids stored", rows["id"])):
            parts = [ids.slice(start, CHUNK) for start in range(0, ids.len(), CHUNK)]
            meter = CpuMeter({"postgres": postmaster_pid(server)}).start()
            _, seconds = _timed(partial(_look_up_all, store, parts))
            cpu = meter.stop()["postgres"]
            stages.append(Stage(label, ids.len(), seconds, "", cpu / ids.len() * 1e6))
    finally:
        engine.dispose()
        embedded_pg.drop_database(server.url, url.rsplit("/", 1)[-1].split("?")[0])
    return stages


def _look_up_all(store: PostgresStore, parts: list[pl.Series]) -> int:
    return sum(store.stored(part).height for part in parts)


def _upsert_all(store: PostgresStore, chunks: list[pl.DataFrame]) -> int:
    for chunk in chunks:
        store.upsert(chunk)
    return sum(chunk.height for chunk in chunks)
