"""The batch pipeline end to end: CSV → ML API over HTTP → PostgreSQL, exact final states."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from uuid import uuid5

import pytest
import sqlalchemy as sa

from pipeline.domain.ids import TRANSACTION_NAMESPACE
from tests.fakes import rule
from tests.support.helpers import HEADER, dead_letters, run_cli, stored
from tests.support.helpers import pipeline_env as env_for
from tests.support.services import ROOT, MlApiProcess


def test_parallel_workers_store_the_seed_file_exactly_once(
    seed_file: Path, postgres_url: str, postgres_engine: sa.Engine, ml_api: MlApiProcess
) -> None:
    result = run_cli("batch", str(seed_file), "--workers", "2", env=env_for(postgres_url, ml_api))
    assert result.returncode == 0, result.stderr
    rows = stored(postgres_engine)
    assert len(rows) == 10_000
    assert all(category == rule(tid) for tid, (_, category) in rows.items())
    with postgres_engine.connect() as conn:
        run = conn.execute(
            sa.text("SELECT status, rows_read, categorised FROM pipeline_runs")
        ).one()
    assert tuple(run) == ("succeeded", 10_000, 10_000)


def test_seed_file_gives_10000_rows_with_the_rule_and_a_rerun_adds_none(
    seed_file: Path, postgres_url: str, postgres_engine: sa.Engine, ml_api: MlApiProcess
) -> None:
    first = run_cli("batch", str(seed_file), env=env_for(postgres_url, ml_api))
    assert first.returncode == 0, first.stderr
    rows = stored(postgres_engine)
    assert len(rows) == 10_000
    expected_ids = {uuid5(TRANSACTION_NAMESPACE, str(i)) for i in range(1, 10_001)}
    assert set(rows) == expected_ids
    assert all(category == rule(tid) for tid, (_, category) in rows.items())
    assert dead_letters(postgres_engine) == []
    second = run_cli("batch", str(seed_file), env=env_for(postgres_url, ml_api))
    assert second.returncode == 0, second.stderr
    assert len(stored(postgres_engine)) == 10_000
    with postgres_engine.connect() as conn:
        runs = conn.execute(
            sa.text(
                "SELECT status, rows_read, categorised, already_stored "
                "FROM pipeline_runs ORDER BY started_at"
            )
        ).all()
    assert [tuple(r) for r in runs] == [
        ("succeeded", 10_000, 10_000, 0),
        ("succeeded", 10_000, 0, 10_000),
    ]


@pytest.mark.parametrize("workers", ["1", "3"])
def test_dirty_file_reconciles_exactly(
    tmp_path: Path,
    postgres_url: str,
    postgres_engine: sa.Engine,
    ml_api: MlApiProcess,
    workers: str,
) -> None:
    lines = [
        "\ufeff" + HEADER,
        '1;"Good row";-10,50;"2023-01-01 10:00:00";"Lidl";"payment";"debit"',  # line 2
        '2;"Bad amount";abc;"2023-01-01 10:00:00";"Lidl";"payment";"debit"',  # 3
        '3;"Bad date";-1,00;"31/12/2023";"Lidl";"payment";"debit"',  # 4
        '4;"Too few fields";-1,00',  # 5
        '5;"Unknown side";-1,00;"2023-01-01 10:00:00";"Lidl";"payment";"sideways"',  # 6
        '1;"Duplicate id";-2,00;"2023-01-01 10:00:00";"Lidl";"payment";"debit"',  # 7
        '6;"Semi;colon; inside";-3,00;"2023-01-01 10:00:00";"Café ☕ Crème";"payment";"debit"',  # 8
        '7;"Empty merchant";4,00;"2023-01-01 10:00:00";"";"card_payment";"credit"',  # 9
        '8;"Too many";-1,00;"2023-01-01 10:00:00";"Lidl";"payment";"debit";"extra"',  # 10
        '9;"";-1,00;"2023-01-01 10:00:00";"Lidl";"payment";"debit"',  # 11: empty description
        '10;"ISO and point";12.5;"2024-02-29T08:00:00+01:00";"SNCF";"transfer";"credit"',  # 12
    ]
    path = tmp_path / "dirty.csv"
    path.write_bytes("\r\n".join(lines).encode())
    result = run_cli("batch", str(path), "--workers", workers, env=env_for(postgres_url, ml_api))
    assert result.returncode == 0, result.stderr
    rows = stored(postgres_engine)
    assert sorted(source for source, _ in rows.values()) == ["1", "10", "6", "7"]
    assert dead_letters(postgres_engine) == [
        (3, "invalid_amount"),
        (4, "invalid_timestamp"),
        (5, "malformed_row"),
        (6, "invalid_side"),
        (7, "duplicate_id"),
        (10, "malformed_row"),
        (11, "missing_field"),
    ]
    assert len(rows) + len(dead_letters(postgres_engine)) == len(lines) - 1
    with postgres_engine.connect() as conn:
        merchant, description = conn.execute(
            sa.text(
                "SELECT merchant, description FROM categorised_transactions WHERE source_id = '6'"
            )
        ).one()
        empty = conn.execute(
            sa.text("SELECT merchant FROM categorised_transactions WHERE source_id = '7'")
        ).scalar_one()
        payload = conn.execute(
            sa.text("SELECT payload FROM dead_letters WHERE line = 5")
        ).scalar_one()
    assert (merchant, description) == ("Café ☕ Crème", "Semi;colon; inside")
    assert empty is None
    assert payload == '4;"Too few fields";-1,00'
    rerun = run_cli("batch", str(path), env=env_for(postgres_url, ml_api))
    assert rerun.returncode == 0
    assert len(dead_letters(postgres_engine)) == 7


def test_run_killed_mid_file_and_restarted_ends_in_the_exact_state(
    tmp_path: Path, postgres_url: str, postgres_engine: sa.Engine, ml_api: MlApiProcess
) -> None:
    from devstack.generate import generate

    path = tmp_path / "big.csv"
    generate(path, 60_000, seed=7)
    env = {**os.environ, **env_for(postgres_url, ml_api)}
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "batch", str(path), "--chunk-size", "2000"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while len(stored(postgres_engine)) < 5_000 and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    partial = len(stored(postgres_engine))
    assert 0 < partial < 60_000, "the kill must land mid-file"
    again = run_cli("batch", str(path), env=env_for(postgres_url, ml_api))
    assert again.returncode == 0, again.stderr
    rows = stored(postgres_engine)
    assert len(rows) == 60_000
    assert all(category == rule(tid) for tid, (_, category) in rows.items())
    assert dead_letters(postgres_engine) == []
    with postgres_engine.connect() as conn:
        categorised, already = conn.execute(
            sa.text(
                "SELECT categorised, already_stored FROM pipeline_runs WHERE status = 'succeeded'"
            )
        ).one()
    assert already >= partial  # stored work was not sent to the ML API again
    assert categorised + already == 60_000


def test_ml_api_answering_503_a_few_times_still_completes_without_dead_letters(
    seed_file: Path, postgres_url: str, postgres_engine: sa.Engine, ml_api: MlApiProcess
) -> None:
    ml_api.arm_faults(4, status=503)
    result = run_cli("batch", str(seed_file), env=env_for(postgres_url, ml_api))
    assert result.returncode == 0, result.stderr
    assert len(stored(postgres_engine)) == 10_000
    assert dead_letters(postgres_engine) == []


def test_unreachable_ml_api_fails_the_run_cleanly_and_a_rerun_finishes_it(
    seed_file: Path, postgres_url: str, postgres_engine: sa.Engine, ml_api: MlApiProcess
) -> None:
    down = env_for(postgres_url, ml_api, ML_API_URL="http://127.0.0.1:9", ML_RETRY_ATTEMPTS="2")
    failed = run_cli("batch", str(seed_file), env=down)
    assert failed.returncode == 1
    assert "ML API unreachable" in failed.stderr
    assert stored(postgres_engine) == {}
    with postgres_engine.connect() as conn:
        status, error = conn.execute(sa.text("SELECT status, error FROM pipeline_runs")).one()
    assert status == "failed" and "CategoriserUnavailable" in error
    assert run_cli("batch", str(seed_file), env=env_for(postgres_url, ml_api)).returncode == 0
    assert len(stored(postgres_engine)) == 10_000


def test_missing_file_and_unreachable_database_exit_non_zero_with_a_clear_message(
    tmp_path: Path, postgres_url: str, ml_api: MlApiProcess
) -> None:
    missing = run_cli("batch", str(tmp_path / "nope.csv"), env=env_for(postgres_url, ml_api))
    assert missing.returncode == 1
    assert "input file not found" in missing.stderr
    bad_db = "postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=2"
    unreachable = run_cli("batch", str(tmp_path / "nope.csv"), env=env_for(bad_db, ml_api))
    assert unreachable.returncode == 1
    assert "error:" in unreachable.stderr and "Traceback" not in unreachable.stderr
