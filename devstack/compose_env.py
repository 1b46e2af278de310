"""The .env of the compose stack: written with random secrets when there is none, and refused
while a secret is missing, empty or still a placeholder of .env.example.

Standard library only (run by the host's Python before any virtualenv exists).
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path

PLACEHOLDER = "change-me"


def _password() -> str:
    # URL- and shell-safe: letters, digits, '-' and '_'.
    return secrets.token_urlsafe(24)


# The compose secrets, by .env variable (docker-compose.yml's secret of the same name in lower
# case reads it), and how `make all` makes a value for each.
SECRETS: dict[str, Callable[[], str]] = {
    "POSTGRES_PASSWORD": _password,
    "TXCAT_OWNER_PASSWORD": _password,
    "TXCAT_APP_PASSWORD": _password,
    "TXCAT_ANALYST_PASSWORD": _password,
    "AIRFLOW_DB_PASSWORD": _password,
    "AIRFLOW_ADMIN_PASSWORD": lambda: secrets.token_urlsafe(12),
    "AIRFLOW_JWT_SECRET": lambda: secrets.token_urlsafe(64),
    "AIRFLOW_API_SECRET_KEY": lambda: secrets.token_urlsafe(32),
}
# PyJWT wants an HMAC-SHA256 key of at least 32 bytes.
MIN_BYTES = {"AIRFLOW_JWT_SECRET": 32}

_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


class EnvFileError(Exception):
    """The .env file cannot start the stack; the message is one line."""


def read(path: Path) -> dict[str, str]:
    """The variables set in a dotenv file (comments and blank lines skipped, quotes removed)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line)
        if match:
            value = match[2]
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            values[match[1]] = value
    return values


def problems(values: Mapping[str, str]) -> list[str]:
    """What is wrong with the secrets of `values`, one short phrase each."""
    found = []
    for name in SECRETS:
        value = values.get(name)
        if value is None:
            found.append(f"{name} is missing")
        elif not value:
            found.append(f"{name} is empty")
        elif value.startswith(PLACEHOLDER):
            found.append(f"{name} is the placeholder of .env.example")
        elif len(value.encode()) < MIN_BYTES.get(name, 0):
            found.append(f"{name} is shorter than {MIN_BYTES[name]} bytes")
    return found


def ensure(project: Path) -> tuple[dict[str, str], bool]:
    """The variables of `project`/.env, after writing it from .env.example if it did not exist.

    Returns them and whether the file was written now. Raises EnvFileError, with one line that
    says what to do, when a secret is missing, empty, a placeholder or too short.
    """
    path = project / ".env"
    created = not path.exists()
    if created:
        _write_private(path, render((project / ".env.example").read_text()))
    values = read(path)
    found = problems(values)
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise EnvFileError(
            f"{path}: {found[0]}{more}: set random values, or delete the file and rerun "
            "`make all` to get new ones"
        )
    return values, created


def render(example: str) -> str:
    """.env.example with every secret given a fresh random value (the rest kept as is)."""
    missing = dict(SECRETS)
    lines = []
    for line in example.splitlines():
        match = _LINE.match(line)
        if match and match[1] in missing:
            line = f"{match[1]}={missing.pop(match[1])()}"
        lines.append(line)
    lines += [f"{name}={make()}" for name, make in missing.items()]
    header = "# Written by `make all` with random secrets (keep it private; it is git-ignored).\n"
    return header + "\n".join(lines) + "\n"


def setting(values: Mapping[str, str], name: str, default: str) -> str:
    """A variable as compose interpolates it: the environment first, then .env, then default."""
    return os.environ.get(name) or values.get(name) or default


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
