"""Benchmark PostgresStore.save: COPY to a staging table versus executemany.

Starts an embedded PostgreSQL in a temporary directory, creates one fresh database per method,
upgrades it, then times saving generated (Transaction, Categorisation) pairs in batches:
first insert, identical re-upsert (a replay), and re-upsert with every category changed.

    python -m bench.bench_store [--rows 200000] [--batch 5000]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import get_args

from pipeline.adapters.postgres import embedded as embedded_pg
from pipeline.adapters.postgres import schema as postgres_schema
from pipeline.adapters.postgres.bulk import BulkMethod
from pipeline.adapters.postgres.store import PostgresStore, make_engine
from pipeline.domain.ids import transaction_uuid
from pipeline.domain.model import CATEGORIES, Categorisation, Side, Transaction

Pair = tuple[Transaction, Categorisation]


def generate(count: int, seed: int = 7) -> list[Pair]:
    """Deterministic pseudo-random pairs shaped like the real CSV."""
    rng = random.Random(seed)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    pairs = []
    for n in range(count):
        source_id = f"tx-{n:08d}"
        tx = Transaction(
            id=transaction_uuid(source_id),
            source_id=source_id,
            description=f"CARD PAYMENT TO MERCHANT {rng.randrange(5000)} REF {n}",
            amount=Decimal(rng.randrange(-500_000, 500_000)) / 100,
            timestamp=start + timedelta(seconds=rng.randrange(31_536_000)),
            merchant=None if n % 7 == 0 else f"Merchant {rng.randrange(5000)}",
            operation_type=rng.choice(("payment", "direct_debit", "transfer", "refund")),
            side=Side.DEBIT if n % 5 else Side.CREDIT,
        )
        pairs.append((tx, Categorisation(tx.id, rng.choice(CATEGORIES), "bench-1")))
    return pairs


def recategorise(pairs: Sequence[Pair]) -> list[Pair]:
    """The same transactions with a different category and model version."""
    shifted = {c: CATEGORIES[(i + 1) % len(CATEGORIES)] for i, c in enumerate(CATEGORIES)}
    return [(tx, Categorisation(tx.id, shifted[cat.category], "bench-2")) for tx, cat in pairs]


def timed_save(store: PostgresStore, pairs: Sequence[Pair], batch: int) -> float:
    """Rows per second for saving `pairs` in batches of `batch`."""
    began = time.perf_counter()
    for at in range(0, len(pairs), batch):
        store.save(pairs[at : at + batch])
    return len(pairs) / (time.perf_counter() - began)


def bench_method(server_url: str, method: BulkMethod, pairs: list[Pair], batch: int) -> None:
    url = embedded_pg.create_database(server_url, f"bench_{method}")
    engine = make_engine(url)
    try:
        postgres_schema.upgrade(engine)
        store = PostgresStore(engine, bulk_method=method)
        changed = recategorise(pairs)
        results = {
            "first insert": timed_save(store, pairs, batch),
            "re-upsert identical": timed_save(store, pairs, batch),
            "re-upsert changed": timed_save(store, changed, batch),
        }
        with engine.connect() as conn:
            stored = conn.exec_driver_sql("SELECT count(*) FROM categorised_transactions")
            assert stored.scalar_one() == len(pairs), "every pair stored exactly once"
    finally:
        engine.dispose()
    for scenario, rate in results.items():
        print(f"{method:<12} {scenario:<20} {rate:>10,.0f} rows/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--methods", nargs="+", default=list(get_args(BulkMethod)))
    args = parser.parse_args()

    pairs = generate(args.rows)
    with tempfile.TemporaryDirectory(prefix="bench-pg-") as tmp:
        began = time.perf_counter()
        server = embedded_pg.start(Path(tmp) / "data")
        print(f"embedded PostgreSQL started in {time.perf_counter() - began:.2f}s")
        try:
            print(f"saving {args.rows:,} pairs in batches of {args.batch:,}")
            for method in args.methods:
                bench_method(server.url, method, pairs, args.batch)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
