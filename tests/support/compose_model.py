"""docker-compose.yml as compose-go (the library behind `docker compose`) loads it, without a
Docker engine: tools/composecheck, built from source with Go."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
CHECKER_SRC = ROOT / "tools" / "composecheck"
CHECKER = ROOT / "tools" / "bin" / "composecheck"


def checker_is_stale(binary: Path) -> bool:
    if not binary.exists():
        return True
    sources = [*CHECKER_SRC.glob("*.go"), CHECKER_SRC / "go.mod", CHECKER_SRC / "go.sum"]
    return any(src.stat().st_mtime > binary.stat().st_mtime for src in sources)


def run_check(
    checker: Path, compose: Path, env_file: Path, *flags: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(checker), "-f", str(compose), "-env-file", str(env_file), *flags],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=compose.parent,
    )


def environment(service: dict[str, Any]) -> dict[str, str | None]:
    return dict(service.get("environment") or {})
