"""Bulk upsert of (transaction, categorisation) pairs: COPY to a staging table, or executemany.

Both paths write the same rows with the same ON CONFLICT rules, inside the caller's database
transaction. An identical re-save changes nothing: the DO UPDATE only fires when a value
differs, so `updated_at` and `categorised_at` move only when the data does.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

import psycopg

from pipeline.domain.model import Categorisation, Transaction, content_fingerprint

BulkMethod = Literal["copy", "executemany"]

# In the order of _STAGING below.
StagedRow = tuple[UUID, str, str, Decimal, datetime, str | None, str, str, str, str, str]

# One staging row per pair: the transaction's columns, then the categorisation's.
_STAGING = {
    "id": "uuid",
    "source_id": "text",
    "description": "text",
    "amount": "numeric",
    "occurred_at": "timestamptz",
    "merchant": "text",
    "operation_type": "text",
    "side": "text",
    "content_sha256": "text",
    "category": "text",
    "model_version": "text",
}
_STAGING_COLUMNS = tuple(_STAGING)
_STAGING_TYPES = tuple(_STAGING.values())
_TX_COLUMNS = _STAGING_COLUMNS[:9]
_CAT_COLUMNS = _STAGING_COLUMNS[9:]

_CREATE_STAGING = (
    "CREATE TEMP TABLE pipeline_staging ("
    + ", ".join(f"{column} {type_}" for column, type_ in _STAGING.items())
    + ") ON COMMIT DROP"
)
_COPY_STAGING = f"COPY pipeline_staging ({', '.join(_STAGING_COLUMNS)}) FROM STDIN (FORMAT BINARY)"

_TX_DATA = _TX_COLUMNS[1:]


def _differs(left: str, right: str, columns: Sequence[str]) -> str:
    old = ", ".join(f"{left}.{c}" for c in columns)
    new = ", ".join(f"{right}.{c}" for c in columns)
    return f"({old}) IS DISTINCT FROM ({new})"


_TX_ON_CONFLICT = f"""
ON CONFLICT (id) DO UPDATE
SET {", ".join(f"{c} = excluded.{c}" for c in _TX_DATA)}, updated_at = now()
WHERE {_differs("t", "excluded", _TX_DATA)}
"""
_CAT_ON_CONFLICT = f"""
ON CONFLICT (transaction_id) DO UPDATE
SET category = excluded.category, model_version = excluded.model_version, categorised_at = now()
WHERE {_differs("c", "excluded", _CAT_COLUMNS)}
"""
_TX_INSERT = f"INSERT INTO transactions AS t ({', '.join(_TX_COLUMNS)})"
_CAT_INSERT = "INSERT INTO categorisations AS c (transaction_id, category, model_version)"

# Rows are copied sorted by id; ORDER BY keeps that lock order explicit (see staged_rows).
_TX_FROM_STAGING = f"""
{_TX_INSERT}
SELECT {", ".join(_TX_COLUMNS)} FROM pipeline_staging ORDER BY id
{_TX_ON_CONFLICT}
"""
_CAT_FROM_STAGING = f"""
{_CAT_INSERT}
SELECT id, category, model_version FROM pipeline_staging ORDER BY id
{_CAT_ON_CONFLICT}
"""
_TX_FROM_VALUES = f"{_TX_INSERT} VALUES ({', '.join(['%s'] * len(_TX_COLUMNS))}) {_TX_ON_CONFLICT}"
_CAT_FROM_VALUES = f"{_CAT_INSERT} VALUES (%s, %s, %s) {_CAT_ON_CONFLICT}"


def staged_rows(pairs: Sequence[tuple[Transaction, Categorisation]]) -> list[StagedRow]:
    """One row per transaction id (the last pair wins), sorted by id.

    ON CONFLICT cannot touch the same row twice in one statement, so duplicates must go;
    sorting makes concurrent writers lock rows in the same order (no deadlock between them).
    """
    latest: dict[int, StagedRow] = {}
    for tx, cat in pairs:
        if cat.transaction_id.int != tx.id.int:
            raise ValueError(f"categorisation of {cat.transaction_id} paired with {tx.id}")
        # Keyed and sorted by the UUID's integer: UUID.__lt__ is pure Python and dominated.
        latest[tx.id.int] = (
            tx.id,
            tx.source_id,
            tx.description,
            tx.amount,
            tx.timestamp,
            tx.merchant,
            tx.operation_type,
            tx.side.value,
            content_fingerprint(tx),
            cat.category,
            cat.model_version,
        )
    return [latest[key] for key in sorted(latest)]


def write(conn: psycopg.Connection[Any], rows: Sequence[StagedRow], method: BulkMethod) -> None:
    """Upsert `rows` with `method`, in the transaction already open on `conn`."""
    if method == "copy":
        _write_by_copy(conn, rows)
    else:
        _write_by_executemany(conn, rows)


def _write_by_copy(conn: psycopg.Connection[Any], rows: Sequence[StagedRow]) -> None:
    with conn.cursor() as cur:
        cur.execute(_CREATE_STAGING)
        with cur.copy(_COPY_STAGING) as copy:
            copy.set_types(list(_STAGING_TYPES))
            for row in rows:
                copy.write_row(row)
        cur.execute(_TX_FROM_STAGING)
        cur.execute(_CAT_FROM_STAGING)


def _write_by_executemany(conn: psycopg.Connection[Any], rows: Sequence[StagedRow]) -> None:
    with conn.cursor() as cur:
        width = len(_TX_COLUMNS)
        cur.executemany(_TX_FROM_VALUES, [row[:width] for row in rows])
        cur.executemany(_CAT_FROM_VALUES, [(row[0], *row[width:]) for row in rows])
