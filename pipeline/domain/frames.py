"""Transactions given as objects (tools, tests, the object API of the adapters) as the frames
the ports take."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, timedelta, timezone
from decimal import Decimal
from uuid import UUID

import polars as pl

from pipeline.domain.fingerprints import content_sha256
from pipeline.domain.model import Categorisation, Side, Transaction


def transactions(valid: pl.DataFrame) -> list[Transaction]:
    """The valid rows as Transaction objects (for callers that want objects: tests, tools)."""
    result = []
    for row in valid.iter_rows(named=True):
        result.append(
            Transaction(
                id=UUID(row["id"]),
                source_id=row["source_id"],
                description=row["description"],
                amount=Decimal(row["amount_cents"]).scaleb(-2),
                timestamp=row["occurred_at"].astimezone(
                    timezone(timedelta(seconds=row["utc_offset_s"]))
                ),
                merchant=row["merchant"],
                operation_type=row["operation_type"],
                side=Side(row["side"]),
            )
        )
    return result


def transactions_frame(transactions: Sequence[Transaction]) -> pl.DataFrame:
    """Valid-chunk columns (`validation.VALID_COLUMNS`, fingerprints included) of objects."""
    frame = pl.DataFrame(
        {
            "row": pl.Series(range(len(transactions)), dtype=pl.UInt32),
            "id_hex": [t.id.hex for t in transactions],
            "id": [str(t.id) for t in transactions],
            "source_id": [t.source_id for t in transactions],
            "description": [t.description for t in transactions],
            "amount_cents": [int(t.amount.scaleb(2)) for t in transactions],
            "occurred_at": [t.timestamp.astimezone(UTC) for t in transactions],
            "merchant": [t.merchant for t in transactions],
            "operation_type": [t.operation_type for t in transactions],
            "side": [t.side.value for t in transactions],
            "sign_disagrees": [False] * len(transactions),
            "new_operation_type": [False] * len(transactions),
            "utc_offset_s": [_offset(t) for t in transactions],
        },
        schema_overrides={
            "occurred_at": pl.Datetime("us", "UTC"),
            "amount_cents": pl.Int64,
            "utc_offset_s": pl.Int32,
            "merchant": pl.String,
        },
    )
    return frame.with_columns(content_sha256())


def pairs_frame(pairs: Sequence[tuple[Transaction, Categorisation]]) -> pl.DataFrame:
    """Transactions with their categorisation, as the store's upsert takes them."""
    for transaction, categorisation in pairs:
        if categorisation.transaction_id.int != transaction.id.int:
            raise ValueError(
                f"categorisation of {categorisation.transaction_id} paired with {transaction.id}"
            )
    frame = transactions_frame([transaction for transaction, _ in pairs])
    return frame.with_columns(
        category=pl.Series([c.category for _, c in pairs], dtype=pl.String),
        model_version=pl.Series([c.model_version for _, c in pairs], dtype=pl.String),
    )


def _offset(transaction: Transaction) -> int:
    offset = transaction.timestamp.utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0
