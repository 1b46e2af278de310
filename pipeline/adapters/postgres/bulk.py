"""Bulk upsert of a categorised chunk into `transactions` (the categorisation lives in the same
row: no second upsert, no foreign key to check): one CSV COPY straight into the table when the
rows are new, else CSV COPY into a staging table and one INSERT … SELECT … ON CONFLICT.
`executemany` is kept for comparison (bench/bench_store.py).

An identical re-save changes nothing: the DO UPDATE only fires when a value differs, so
`updated_at` and `categorised_at` move only when the data does.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any, Literal

import polars as pl
import psycopg

from pipeline.domain.fingerprints import amount_text

BulkMethod = Literal["copy", "executemany"]

# The staging row: the transaction's columns, its fingerprint and its categorisation. Amounts
# travel as integer cents and instants as microseconds since the epoch: PostgreSQL turns them
# into numeric and timestamptz without parsing text.
_STAGING = {
    "id": "uuid",
    "source_id": "text",
    "description": "text",
    "amount_cents": "bigint",
    "occurred_at_us": "bigint",
    "merchant": "text",
    "operation_type": "text",
    "side": "text",
    "content_sha256": "text",
    "category": "text",
    "model_version": "text",
}
STAGING_COLUMNS = tuple(_STAGING)
_DATA = ("source_id", "description", "amount", "occurred_at", "merchant", "operation_type", "side")
_CATEGORY = ("category", "model_version")
_VALUES = {
    "id": "id",
    "source_id": "source_id",
    "description": "description",
    "amount": "amount_cents / 100.0",
    "occurred_at": "timestamptz 'epoch' + occurred_at_us * interval '1 microsecond'",
    "merchant": "merchant",
    "operation_type": "operation_type",
    "side": "side",
    "content_sha256": "content_sha256",
    "category": "category",
    "model_version": "model_version",
    "categorised_at": "now()",
}

_CREATE_STAGING = (
    "CREATE TEMP TABLE pipeline_staging ("
    + ", ".join(f"{column} {type_}" for column, type_ in _STAGING.items())
    + ") ON COMMIT DROP"
)
_COPY_STAGING = f"COPY pipeline_staging ({', '.join(STAGING_COLUMNS)}) FROM STDIN (FORMAT CSV)"
_COPY_DIRECT = f"COPY transactions ({', '.join(_VALUES)}) FROM STDIN (FORMAT CSV)"


def _differs(columns: Sequence[str]) -> str:
    old = ", ".join(f"t.{c}" for c in columns)
    new = ", ".join(f"excluded.{c}" for c in columns)
    return f"({old}) IS DISTINCT FROM ({new})"


_UPDATES = ",\n    ".join(f"{c} = excluded.{c}" for c in (*_DATA, "content_sha256", *_CATEGORY))
_ON_CONFLICT = f"""
ON CONFLICT (id) DO UPDATE SET
    {_UPDATES},
    updated_at = CASE WHEN {_differs(_DATA)} THEN now() ELSE t.updated_at END,
    categorised_at = CASE WHEN {_differs(_CATEGORY)} THEN now() ELSE t.categorised_at END
WHERE {_differs((*_DATA, "content_sha256", *_CATEGORY))}
"""
_INSERT = f"INSERT INTO transactions AS t ({', '.join(_VALUES)})"
# Rows are copied sorted by id; ORDER BY keeps that lock order explicit, so concurrent writers
# lock rows in the same order (no deadlock between them).
UPSERT_FROM_STAGING = f"""
{_INSERT}
SELECT {", ".join(_VALUES.values())} FROM pipeline_staging ORDER BY id
{_ON_CONFLICT}
"""
_PLACEHOLDERS = ", ".join(f"%s::{type_}" for type_ in _STAGING.values())
_INSERT_VALUES = (
    f"{_INSERT} SELECT {', '.join(_VALUES.values())}"
    f" FROM (VALUES ({_PLACEHOLDERS})) AS v({', '.join(STAGING_COLUMNS)})"
)
_UPSERT_VALUES = f"{_INSERT_VALUES} {_ON_CONFLICT}"


# The columns after the timestamp, as they are in the staging table and in `transactions`.
_AFTER_TIME = ("merchant", "operation_type", "side", "content_sha256", "category", "model_version")


def staging_frame(rows: pl.DataFrame) -> pl.DataFrame:
    """One row per transaction id (the last wins), sorted by id, in the staging columns.

    ON CONFLICT cannot touch the same row twice in one statement, so duplicates must go.
    """
    if rows["id"].n_unique() != rows.height:  # usually unique already: counting is cheaper
        rows = rows.unique(subset="id", keep="last", maintain_order=True)
    return rows.sort("id").select(
        "id",
        "source_id",
        "description",
        "amount_cents",
        pl.col("occurred_at").dt.epoch("us").alias("occurred_at_us"),
        *_AFTER_TIME,
    )


def write(conn: psycopg.Connection[Any], staged: pl.DataFrame, method: BulkMethod) -> None:
    """Upsert the staged rows with `method`, in the transaction already open on `conn`."""
    if method == "copy":
        _write_by_copy(conn, staged)
    else:
        _write_by_executemany(conn, staged)


def insert_new(conn: psycopg.Connection[Any], staged: pl.DataFrame, method: BulkMethod) -> bool:
    """Insert the staged rows, in the transaction already open on `conn`, if none of their ids
    is stored; False, with nothing written, if one is (23505: the savepoint is rolled back)."""
    try:
        with conn.transaction():  # a savepoint inside the caller's transaction
            if method == "copy":
                _copy_new_rows(conn, staged)
            else:
                with conn.cursor() as cur:
                    cur.executemany(_INSERT_VALUES, list(staged.iter_rows()))
        return True
    except psycopg.errors.UniqueViolation:
        return False


def _write_by_copy(conn: psycopg.Connection[Any], staged: pl.DataFrame) -> None:
    """COPY straight into `transactions` when every row is new (the usual case: the use case
    set aside the stored ones); when one is not (a row stored meanwhile), the chunk goes
    through the staging table and ON CONFLICT instead."""
    if not insert_new(conn, staged, "copy"):
        _upsert_by_copy(conn, staged)


def _copy_new_rows(conn: psycopg.Connection[Any], staged: pl.DataFrame) -> None:
    occurred_at = pl.from_epoch("occurred_at_us", "us").dt.strftime("%Y-%m-%d %H:%M:%S%.6f+00")
    rows = staged.select(
        "id",
        "source_id",
        "description",
        amount_text(pl.col("amount_cents")).alias("amount"),
        occurred_at.alias("occurred_at"),
        *_AFTER_TIME,
        pl.lit("now").alias("categorised_at"),  # the transaction's start, as now() in SQL
    )
    buffer = io.BytesIO()
    rows.write_csv(buffer, include_header=False)
    with conn.cursor() as cur, cur.copy(_COPY_DIRECT) as copy:
        copy.write(buffer.getbuffer())


def _upsert_by_copy(conn: psycopg.Connection[Any], staged: pl.DataFrame) -> None:
    buffer = io.BytesIO()
    staged.write_csv(buffer, include_header=False)
    with conn.cursor() as cur:
        cur.execute("SET LOCAL work_mem = '64MB'")  # the ORDER BY of a chunk sorts in memory
        cur.execute(_CREATE_STAGING)
        with cur.copy(_COPY_STAGING) as copy:
            copy.write(buffer.getbuffer())
        cur.execute(UPSERT_FROM_STAGING)


def _write_by_executemany(conn: psycopg.Connection[Any], staged: pl.DataFrame) -> None:
    with conn.cursor() as cur:
        cur.executemany(_UPSERT_VALUES, list(staged.iter_rows()))
