"""The Docker flavour of the stack: which backend `make` uses, and `docker compose` for the rest.

`python -m devstack.compose backend` prints `docker` or `native` (or exits 1 with one line when
Docker is wanted but cannot work); `python -m devstack.compose all|up|status|logs|down|clean`
drives docker-compose.yml. Standard library only: the host's Python runs it, so the Docker
branch of `make all` builds no virtualenv (Airflow and the rest run in the image).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# `secrets: {environment: …}` (files made from .env variables) and `up --wait-timeout`.
MIN_COMPOSE = (2, 24)
BACKENDS = ("auto", "native", "docker")


class DockerError(Exception):
    """Docker cannot run the stack; the message is one line that says what to do."""


def docker_problem() -> tuple[str, str] | None:
    """(what is wrong, what to do) when `docker compose` cannot run here, or None when it can."""
    if shutil.which("docker") is None:
        return "docker is not installed", "install Docker Engine or Docker Desktop"
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"`docker info` failed ({error})", "start the Docker engine"
    if info.returncode != 0:
        reason = _last_line(info.stderr) or f"exit status {info.returncode}"
        return f"the Docker engine does not answer ({reason})", "start the Docker engine"
    version = subprocess.run(
        ["docker", "compose", "version", "--short"], capture_output=True, text=True, timeout=30
    )
    if version.returncode != 0:
        return (
            "the Docker engine answers but the compose plugin is missing",
            "install docker-compose-plugin (`docker compose version` must work)",
        )
    found = tuple(int(part) for part in re.findall(r"\d+", version.stdout)[:2])
    if found < MIN_COMPOSE:
        wanted = ".".join(map(str, MIN_COMPOSE))
        return f"docker compose {version.stdout.strip()} is too old", f"install {wanted} or newer"
    return None


def backend(choice: str) -> str:
    """`docker` or `native` for STACK_BACKEND `choice`; DockerError when docker cannot be used.

    auto: docker when the engine and the compose plugin answer; native when docker is absent
    or its engine is down (said on stderr when docker is installed); an error when the engine
    answers without a usable compose plugin, since the person clearly meant to use Docker.
    """
    if choice not in BACKENDS:
        raise DockerError(f"STACK_BACKEND={choice!r}: use one of {', '.join(BACKENDS)}")
    if choice == "native":
        return "native"
    problem = docker_problem()
    if problem is None:
        return "docker"
    what, fix = problem
    if choice == "docker":
        raise DockerError(f"STACK_BACKEND=docker, but {what}: {fix}")
    if "compose" in what:
        raise DockerError(f"{what}: {fix}, or use the native stack: STACK_BACKEND=native make all")
    if shutil.which("docker") is not None:
        print(f"note: {what}; using the native stack", file=sys.stderr)
    return "native"


class Compose:
    """`docker compose` in the project folder (where it finds docker-compose.yml and .env)."""

    def __init__(self, project: Path = ROOT) -> None:
        self.project = project

    def run(self, *args: str, check: bool = True) -> int:
        """Run a compose command with its output on the terminal; return its exit status."""
        status = subprocess.run(["docker", "compose", *args], cwd=self.project).returncode
        if check and status != 0:
            raise DockerError(f"`docker compose {' '.join(args)}` failed (exit status {status})")
        return status

    def output(self, *args: str) -> str:
        """A compose command's standard output; DockerError with its last error line on failure."""
        result = subprocess.run(
            ["docker", "compose", *args], cwd=self.project, capture_output=True, text=True
        )
        if result.returncode != 0:
            reason = _last_line(result.stderr) or f"exit status {result.returncode}"
            raise DockerError(f"`docker compose {' '.join(args[:3])} …` failed: {reason}")
        return result.stdout

    def services(self) -> list[dict[str, Any]]:
        """`docker compose ps --all` as dicts (JSON lines, or one array from older versions)."""
        text = self.output("ps", "--all", "--format", "json").strip()
        if not text:
            return []
        if text.startswith("["):
            return list(json.loads(text))
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def exec(self, service: str, command: Sequence[str]) -> str:
        """Run `command` in the running `service` (no TTY) and return its output."""
        return self.output("exec", "-T", service, *command)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def main(argv: list[str]) -> int:
    commands = ("backend", "env", "all", "up", "status", "logs", "down", "clean")
    if len(argv) != 1 or argv[0] not in commands:
        print(f"usage: python -m devstack.compose {{{'|'.join(commands)}}}", file=sys.stderr)
        return 2
    from devstack import compose_stack
    from devstack.compose_env import EnvFileError

    # Lines in order with the output of the docker commands it runs.
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]

    try:
        if argv[0] == "backend":
            print(backend(os.environ.get("STACK_BACKEND", "auto")))
        else:
            compose_stack.run(argv[0], Compose(ROOT))
    except (DockerError, EnvFileError, compose_stack.StackError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
