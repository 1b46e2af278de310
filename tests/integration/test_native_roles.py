"""The native stack's roles (devstack/native_roles.py) on a real embedded PostgreSQL: created
idempotently, the pipeline's database owned by txcat_owner, the metadata database of an earlier
stack (owned by the superuser) handed to the role airflow, and what each role may then do."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from devstack import native_roles
from pipeline.adapters.postgres import embedded as embedded_pg
from pipeline.adapters.postgres.schema import check_schema, upgrade
from pipeline.adapters.postgres.store import make_engine


def _scalar(url: str, query: str) -> object:
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            result = conn.execute(sa.text(query))
            return result.scalar() if result.returns_rows else None
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def legacy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server whose `airflow` database was made by the superuser, as earlier stacks did."""
    datadir = Path(tempfile.mkdtemp(prefix="txcat-pg-native-")) / "data"
    server = embedded_pg.start(datadir)
    legacy = embedded_pg.create_database(server.url, "airflow")
    _scalar(legacy, "CREATE TYPE state AS ENUM ('queued', 'done')")
    _scalar(legacy, "CREATE TABLE dag_run (id serial PRIMARY KEY, state state)")
    _scalar(legacy, "CREATE VIEW runs AS SELECT id FROM dag_run")
    yield server.url
    server.stop()
    shutil.rmtree(datadir.parent, ignore_errors=True)


@pytest.fixture(scope="module")
def urls(legacy_server: str) -> native_roles.StackUrls:
    first = native_roles.ensure(legacy_server)
    assert native_roles.ensure(legacy_server) == first  # idempotent
    upgrade(first.owner)
    return first


def test_each_service_gets_its_role_on_its_database_without_a_password(
    urls: native_roles.StackUrls,
) -> None:
    parsed = {"owner": urls.owner, "app": urls.app, "airflow": urls.airflow}
    found = {
        name: (url.username, url.password or None, url.database)
        for name, url in ((name, sa.make_url(text)) for name, text in parsed.items())
    }

    assert found == {
        "owner": ("txcat_owner", None, "txcat"),
        "app": ("txcat_app", None, "txcat"),
        "airflow": ("airflow", None, "airflow"),
    }
    assert "host=" in urls.app  # the Unix socket of the data folder


def test_roles_are_not_privileged_and_databases_belong_to_their_owner(
    legacy_server: str, urls: native_roles.StackUrls
) -> None:
    flags = _scalar(
        legacy_server,
        "SELECT string_agg(rolname || ':' || rolsuper || rolcreatedb || rolcreaterole, ',' "
        "ORDER BY rolname) FROM pg_roles WHERE rolname IN "
        "('txcat_owner', 'txcat_app', 'txcat_analyst', 'airflow')",
    )
    owners = _scalar(
        legacy_server,
        "SELECT string_agg(datname || ':' || datdba::regrole::text, ',' ORDER BY datname) "
        "FROM pg_database WHERE datname IN ('txcat', 'airflow')",
    )

    assert flags == (
        "airflow:falsefalsefalse,txcat_analyst:falsefalsefalse,"
        "txcat_app:falsefalsefalse,txcat_owner:falsefalsefalse"
    )
    assert owners == "airflow:airflow,txcat:txcat_owner"


def test_an_earlier_metadata_database_is_handed_to_the_airflow_role(
    urls: native_roles.StackUrls,
) -> None:
    owners = _scalar(
        urls.airflow,
        "SELECT string_agg(c.relname || ':' || c.relowner::regrole::text, ',' ORDER BY relname) "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'S')",
    )
    enum_owner = _scalar(
        urls.airflow, "SELECT typowner::regrole::text FROM pg_type WHERE typname = 'state'"
    )

    assert owners == "dag_run:airflow,dag_run_id_seq:airflow,runs:airflow"
    assert enum_owner == "airflow"
    _scalar(urls.airflow, "ALTER TABLE dag_run ADD COLUMN note text")  # Airflow migrates it


def test_the_pipeline_role_writes_but_cannot_change_the_schema(
    urls: native_roles.StackUrls,
) -> None:
    engine = make_engine(urls.app)
    try:
        check_schema(engine)  # what every service does at start
    finally:
        engine.dispose()
    assert _scalar(urls.app, "SELECT has_table_privilege('transactions', 'INSERT')")
    assert _scalar(urls.app, "SELECT has_table_privilege('categorisations', 'UPDATE')")
    with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
        _scalar(urls.app, "CREATE TABLE sneaky (id int)")
    app_on_airflow = sa.make_url(urls.app).set(database="airflow").render_as_string(False)
    with pytest.raises(sa.exc.OperationalError, match="permission denied"):
        _scalar(app_on_airflow, "SELECT 1")


def test_the_analyst_reads_the_view_and_dead_letters_only(urls: native_roles.StackUrls) -> None:
    assert _scalar(urls.analyst, "SELECT count(*) FROM categorised_transactions") == 0
    assert _scalar(urls.analyst, "SELECT count(*) FROM dead_letters") == 0
    with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
        _scalar(urls.analyst, "SELECT count(*) FROM transactions")
