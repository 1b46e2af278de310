"""Services never fall back to a private database; the command line says when it does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.adapters.postgres import embedded
from pipeline.domain.errors import ConfigurationError

SERVICE_COMMANDS = [("stream",), ("redrive",)]


def run_in(folder: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m pipeline ARGS` in `folder`, without DATABASE_URL unless given."""
    base = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=folder,
        env={**base, "METRICS_PORT": "0", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("command", SERVICE_COMMANDS, ids=lambda c: c[0])
def test_a_service_without_database_url_refuses_to_start_and_creates_nothing(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    result = run_in(tmp_path, *command, KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "DATABASE_URL" in errors[0]
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_airflow_tasks_refuse_to_start_without_database_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.entrypoints import airflow_tasks

    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "t.csv"
    data.write_text("id;description;amount;timestamp;merchant;operation_type;side\n")
    with pytest.raises(ConfigurationError, match="DATABASE_URL"):
        airflow_tasks.open_run(str(data), {}, str(tmp_path))
    with pytest.raises(ConfigurationError, match="DATABASE_URL"):
        airflow_tasks.run_chunk(str(data), 2, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]


def test_the_command_line_announces_the_embedded_database_and_its_location(
    tmp_path: Path, postgres_datadir: Path
) -> None:
    try:
        result = run_in(tmp_path, "db", "current", EMBEDDED_PG_DIR=str(postgres_datadir))
        assert result.returncode == 0, result.stderr
        where = postgres_datadir.resolve()
        assert f"no DATABASE_URL: using the embedded development PostgreSQL in {where}" in (
            result.stderr
        )
        assert (postgres_datadir / "PG_VERSION").is_file()
    finally:
        embedded.down(postgres_datadir)
