"""PostgreSQL faults under the stream: a crash restart, 2 minutes unreachable, 60 s read-only."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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
