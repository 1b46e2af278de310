"""Helpers every end-to-end test shares: the CLI runner, env builders and final-state reads."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from tests.support.services import ROOT, MlApiProcess

HEADER = "id;description;amount;timestamp;merchant;operation_type;side"


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`python -m pipeline ARGS` in the project folder, with `env` over this environment."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def pipeline_env(postgres_url: str, ml_api: MlApiProcess, **extra: str) -> dict[str, str]:
    """The settings a pipeline process needs: its database, the ML API, fast retries."""
    return {
        "DATABASE_URL": postgres_url,
        "ML_API_URL": ml_api.url,
        "ML_RETRY_INITIAL_S": "0.05",
        **extra,
    }


def rows(engine: sa.Engine, query: str, **params: Any) -> list[Any]:
    """Every row of a query."""
    with engine.connect() as conn:
        return list(conn.execute(sa.text(query), params))


def count(engine: sa.Engine, sql: str = "SELECT count(*) FROM categorised_transactions") -> int:
    """One integer from a query: by default, how many transactions are stored."""
    return int(rows(engine, sql)[0][0])


def stored(engine: sa.Engine) -> dict[UUID, tuple[str, str]]:
    """Stored transactions: id → (source id, category)."""
    query = "SELECT transaction_id, source_id, category FROM categorised_transactions"
    return {row[0]: (row[1], row[2]) for row in rows(engine, query)}


def dead_letters(engine: sa.Engine) -> list[tuple[int | None, str]]:
    """Dead letters of files: (line, reason), by line."""
    query = "SELECT line, reason FROM dead_letters ORDER BY line"
    return [(row[0], row[1]) for row in rows(engine, query)]
