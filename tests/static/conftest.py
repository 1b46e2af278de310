"""Fixtures of the static tests: the compose checker and the resolved compose model."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.compose_model import (
    CHECKER,
    CHECKER_SRC,
    COMPOSE,
    ENV_EXAMPLE,
    checker_is_stale,
    run_check,
)


@pytest.fixture(scope="session")
def composecheck() -> Path:
    """tools/bin/composecheck, built with the Go toolchain when missing or older than its source."""
    go = shutil.which("go")
    if go is None:
        if CHECKER.exists():
            return CHECKER
        pytest.skip("go is not installed: cannot build tools/composecheck (compose-go)")
    if checker_is_stale(CHECKER):
        build = subprocess.run(
            [go, "-C", str(CHECKER_SRC), "build", "-o", str(CHECKER), "."],
            timeout=600,
            capture_output=True,
            text=True,
        )
        if build.returncode != 0:
            pytest.fail(f"go build of tools/composecheck failed:\n{build.stderr}")
    return CHECKER


@pytest.fixture(scope="session")
def resolved(composecheck: Path) -> dict[str, Any]:
    """The whole model after compose-go's interpolation (with .env.example), merges and defaults."""
    result = run_check(composecheck, COMPOSE, ENV_EXAMPLE, "-print")
    assert result.returncode == 0, result.stderr
    return dict(yaml.safe_load(result.stdout))


@pytest.fixture(scope="session")
def services(resolved: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The resolved services, by name."""
    return dict(resolved["services"])
