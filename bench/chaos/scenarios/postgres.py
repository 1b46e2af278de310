"""PostgreSQL faults under the stream: a crash restart, 2 minutes unreachable, 60 s read-only."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from bench.chaos.report import Row
from bench.chaos.scenarios.base import outage, stream_run, warm_up
from bench.chaos.services import ChaosServices


@contextmanager
def _crashed(services: ChaosServices) -> Iterator[None]:
    services.postgres.stop("immediate")  # no checkpoint, clients cut: like a crash
    try:
        yield
    finally:
        services.postgres.start()  # crash recovery from the WAL, same port


@contextmanager
def read_only(services: ChaosServices) -> Iterator[None]:
    """Every new transaction on the server read-only (as after a failover to a standby)."""
    # This session stays writable whatever the server's default, to switch it back.
    options = {"options": "-c default_transaction_read_only=off"}
    admin = sa.create_engine(
        services.postgres.url(), isolation_level="AUTOCOMMIT", connect_args=options
    )

    def alter_system(setting: str) -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f"ALTER SYSTEM {setting}"))
            conn.execute(sa.text("SELECT pg_reload_conf()"))

    alter_system("SET default_transaction_read_only = on")
    try:
        yield
    finally:
        alter_system("RESET default_transaction_read_only")
        admin.dispose()


def pg_restart(services: ChaosServices, row: Row, events: int = 16_000) -> None:
    """PostgreSQL stopped like a crash mid-stream, back 5 s later (recovery from its WAL)."""
    with stream_run(services, row, events) as run:
        run.start_consumer()
        run.produce(rate=500)
        warm_up(run, 2_000)
        outage(run, _crashed(services), 5)
        run.finish()


def pg_unreachable(services: ChaosServices, row: Row, events: int = 30_000) -> None:
    """The network to PostgreSQL cut for 2 minutes (connections reset, new ones refused)."""
    with stream_run(services, row, events) as run:
        run.start_consumer()
        run.produce(rate=200)
        warm_up(run, 1_000)
        outage(run, services.proxy.postgres.disabled(), 120)
        run.finish()


def pg_read_only(services: ChaosServices, row: Row, events: int = 20_000) -> None:
    """PostgreSQL read-only for 60 s: a systemic fault, the stream pauses, nothing parked."""
    with stream_run(services, row, events) as run:
        run.start_consumer()
        run.produce(rate=250)
        warm_up(run, 1_000)
        outage(run, read_only(services), 60)
        run.finish()


def pg_cut_smoke(services: ChaosServices, row: Row) -> None:
    """The short version for `make test`: PostgreSQL unreachable for 5 s."""
    with stream_run(services, row, 3_000) as run:
        run.start_consumer()
        run.produce(rate=300)
        warm_up(run, 300)
        outage(run, services.proxy.postgres.disabled(), 5)
        run.finish()


VOLUME_MB = 256


def pg_disk_full(services: ChaosServices, row: Row, events: int = 16_000) -> None:
    """The volume holding the stream's tables full for 60 s (SQLSTATE 53100 on every write).

    The run's tables and indexes move to a tablespace on a small tmpfs of their own (mounting
    one needs root: the row is skipped otherwise); the fault fills that volume with a ballast
    file, then deletes it. The WAL stays on the main disk, as it should in production.
    """
    volume = services.root / "small-volume"
    try:
        _mount_tmpfs(volume, VOLUME_MB, owner=services.postgres.os_user)
    except OSError as exc:
        row.skipped = f"cannot mount a {VOLUME_MB} MB tmpfs ({exc})"
        return
    admin = sa.create_engine(services.postgres.url(), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE TABLESPACE chaos_small LOCATION '{volume}'"))
        with stream_run(services, row, events) as run:
            with run.db.engine.begin() as conn:
                for kind in ("TABLE", "INDEX"):
                    conn.execute(
                        sa.text(
                            f"ALTER {kind} ALL IN TABLESPACE pg_default SET TABLESPACE chaos_small"
                        )
                    )
            run.start_consumer()
            run.produce(rate=250)
            warm_up(run, 1_000)
            outage(run, _filled(volume), 60)
            run.finish()
            refused = sum(
                c.log.read_text(errors="replace").count("No space left on device")
                for c in run.consumers
            )
            if not refused:
                row.problems.append("no write was refused for want of space: no fault injected")
            row.notes.append(f"{refused} writes refused with 'No space left on device' (53100)")
        with admin.connect() as conn:  # the tablespace must be empty to go
            conn.execute(sa.text(f'DROP DATABASE "{run.database}" WITH (FORCE)'))
            conn.execute(sa.text("DROP TABLESPACE chaos_small"))
    finally:
        admin.dispose()
        subprocess.run(["umount", "--lazy", str(volume)], check=False)


@contextmanager
def _filled(volume: Path) -> Iterator[None]:
    """A ballast file taking every free byte of ``volume``, deleted at the end."""
    ballast = volume / "ballast"
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (1 << 20, 1 << 12, 1):  # down to the last partial block
            while _wrote(fd, bytes(size)):
                pass
    finally:
        os.close(fd)
    try:
        yield
    finally:
        ballast.unlink()


def _wrote(fd: int, block: bytes) -> bool:
    try:
        return os.write(fd, block) > 0
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            return False
        raise


def _mount_tmpfs(path: Path, size_mb: int, owner: str | None) -> None:
    """A tmpfs of ``size_mb`` at ``path``, owned by the database server's OS user."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        raise PermissionError("mounting needs root")
    options = f"size={size_mb}m,mode=0700"
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True
    )
    if done.returncode:
        raise OSError(done.stderr.strip() or f"mount exited {done.returncode}")
    if owner:
        shutil.chown(path, owner, owner)
