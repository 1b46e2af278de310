"""Airflow 3 run natively for the dev stack: its home, secrets, environment and migrations.

Everything lives in `<data>/airflow` (git-ignored): secrets are generated once, kept with mode
0600 and handed to Airflow through `*_CMD` variables, so they never appear in a config file,
a command line or the supervisord config. The metadata database is `airflow` on the
embedded PostgreSQL, owned by the role airflow (devstack/native_roles.py) and reached over its
Unix socket (psycopg 3, sync and async).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import sqlalchemy as sa

from devstack.supervisor import VENV_BIN

logger = logging.getLogger(__name__)

ADMIN_USER = "admin"
DATABASE = "airflow"
SERVICES = ("api-server", "scheduler", "dag-processor", "triggerer")


@dataclass(frozen=True)
class AirflowHome:
    """The Airflow home of the stack and the files kept in it."""

    path: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def password_file(self) -> Path:
        return self.path / "admin_password"

    @property
    def passwords_json(self) -> Path:
        return self.path / "simple_auth_manager_passwords.json"

    def password(self) -> str:
        """The admin password, generated on first use and kept."""
        return _secret(self.password_file, lambda: secrets.token_urlsafe(12))

    def prepare(self) -> None:
        """Create the folder, the secrets and the password file the auth manager reads."""
        self.path.mkdir(parents=True, exist_ok=True)
        _secret(self.path / "jwt_secret", lambda: secrets.token_urlsafe(64))
        _secret(self.path / "api_secret_key", lambda: secrets.token_urlsafe(32))
        expected = json.dumps({ADMIN_USER: self.password()})
        if not self.passwords_json.exists() or self.passwords_json.read_text() != expected:
            _write_private(self.passwords_json, expected)

    def environment(self, metadata_url: str, dags_folder: Path, project: Path) -> dict[str, str]:
        """The AIRFLOW__… variables shared by the four services and `airflow db migrate`."""
        url = sa.make_url(metadata_url)
        async_url = url.set(drivername="postgresql+psycopg_async").render_as_string(False)
        return {
            "AIRFLOW_HOME": str(self.path),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url.render_as_string(False),
            # Airflow would derive an asyncpg URL; psycopg 3 does async as well.
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": async_url,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET_CMD": f"cat {self.path / 'jwt_secret'}",
            "AIRFLOW__API__SECRET_KEY_CMD": f"cat {self.path / 'api_secret_key'}",
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.passwords_json),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "PYTHONPATH": str(project),
        }

    def migrate(self, env: dict[str, str], project: Path) -> subprocess.Popen[bytes] | None:
        """Start `airflow db migrate` unless this Airflow version already migrated this home.

        Returns the running process (None when there is nothing to do); `finish_migration`
        waits for it, so the caller can start Kafka meanwhile.
        """
        if self._stamp().exists():
            return None
        log = (self.path / "migrate.log").open("ab")
        logger.info("migrating the Airflow metadata database (first start only)")
        return subprocess.Popen(
            [str(VENV_BIN / "airflow"), "db", "migrate"],
            cwd=project,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def finish_migration(self, process: subprocess.Popen[bytes] | None) -> None:
        if process is None:
            return
        if process.wait() != 0:
            raise SystemExit(f"airflow db migrate failed: see {self.path / 'migrate.log'}")
        self._stamp().write_text(time.strftime("%Y-%m-%dT%H:%M:%S%z\n"))

    def _stamp(self) -> Path:
        return self.path / f".migrated-{version('apache-airflow')}"


def _secret(path: Path, make: Callable[[], str]) -> str:
    if path.exists():
        return path.read_text().strip()
    value = make()
    _write_private(path, value)
    return value


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
