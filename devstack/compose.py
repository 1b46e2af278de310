"""The Docker flavour of the stack: `docker compose` when a Docker engine answers."""

from __future__ import annotations

import subprocess
from pathlib import Path

_ARGS = {
    "all": ["up", "-d", "--build"],
    "up": ["up", "-d", "--build"],
    "status": ["ps"],
    "logs": ["logs", "--tail", "50"],
    "down": ["down"],  # named volumes, hence the data, stay
    "clean": ["down", "--volumes"],
}


def available() -> bool:
    """Whether `docker info` succeeds, i.e. a Docker engine answers."""
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def run(command: str, project: Path) -> None:
    """The `docker compose` equivalent of a stack command."""
    subprocess.run(["docker", "compose", *_ARGS[command]], check=True, cwd=project)
