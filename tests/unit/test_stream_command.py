"""`python -m pipeline stream` runs polars on one thread unless the operator says otherwise."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from pipeline.entrypoints.cli import app as cli
from pipeline.entrypoints.cli import stream as stream_cli


def threads_seen_by_the_consumer(monkeypatch: pytest.MonkeyPatch) -> str | None:
    """POLARS_MAX_THREADS as the consumer loop would find it (the loop itself not run)."""
    seen: list[str | None] = []

    def run_stream(*args: object, **kwargs: object) -> None:
        seen.append(os.environ.get("POLARS_MAX_THREADS"))

    monkeypatch.setattr(stream_cli, "run_stream", run_stream)
    result = CliRunner().invoke(cli.app, ["stream", "--metrics-port", "0"])
    assert result.exit_code == 0, result.output
    [threads] = seen
    return threads


def test_the_consumer_runs_polars_on_one_thread_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POLARS_MAX_THREADS", "placeholder")  # restored after the test
    monkeypatch.delenv("POLARS_MAX_THREADS")
    assert threads_seen_by_the_consumer(monkeypatch) == "1"


def test_an_operators_polars_max_threads_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLARS_MAX_THREADS", "3")
    assert threads_seen_by_the_consumer(monkeypatch) == "3"


def test_the_command_line_does_not_import_polars_before_the_stream_command_runs() -> None:
    # POLARS_MAX_THREADS is read when polars is first imported: set after that, it does nothing.
    check = "import sys, pipeline.entrypoints.cli.app; print('polars' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "False"
