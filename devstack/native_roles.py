"""The native stack's database roles, the same as the compose stack's (deploy/postgres-init):

  txcat_owner    owns the database txcat: the schema migrations run as it
  txcat_app      the consumer and the Airflow tasks: DML on the pipeline's tables (granted by
                 the migrations), no DDL, no superuser
  txcat_analyst  SELECT on the view categorised_transactions and on dead_letters
  airflow        owns Airflow's metadata database `airflow`

Created idempotently by the local superuser `postgres` on every start. No passwords: the
embedded server accepts only connections on its Unix socket, inside the data folder, and trusts
them; what each role may do is what PostgreSQL enforces.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import sqlalchemy as sa

logger = logging.getLogger(__name__)

OWNER, APP, ANALYST, AIRFLOW = "txcat_owner", "txcat_app", "txcat_analyst", "airflow"
PIPELINE_DB, AIRFLOW_DB = "txcat", "airflow"

# Every object of a database's schema public not owned by `role` yet (a metadata database
# created by an earlier version of the stack belonged to the superuser) is given to it.
_GIVE_OBJECTS = """
DO $$
DECLARE
  item record;
BEGIN
  FOR item IN
    SELECT c.oid::regclass AS name,
           CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                          WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END AS kind
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
      AND c.relowner <> to_regrole(:'role')
      -- sequences of identity or serial columns follow their table
      AND NOT EXISTS (SELECT FROM pg_depend d
                      WHERE d.objid = c.oid AND d.deptype IN ('a', 'i') AND c.relkind = 'S')
  LOOP
    EXECUTE format('ALTER %s %s OWNER TO %I', item.kind, item.name, :'role');
  END LOOP;
  FOR item IN
    SELECT t.oid::regtype AS name FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
    WHERE n.nspname = 'public' AND t.typtype IN ('e', 'd', 'r') AND t.typelem = 0
      AND t.typowner <> to_regrole(:'role')
  LOOP
    EXECUTE format('ALTER TYPE %s OWNER TO %I', item.name, :'role');
  END LOOP;
END $$
"""


@dataclass(frozen=True)
class StackUrls:
    """SQLAlchemy URLs of the native stack, one per role."""

    owner: str
    app: str
    analyst: str
    airflow: str


def ensure(server_url: str) -> StackUrls:
    """Create the roles and databases if missing (idempotent); return each role's URL.

    `server_url` is the superuser's URL of the embedded server (its Unix socket).
    """
    engine = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            for role in (OWNER, APP, ANALYST, AIRFLOW):
                if not _exists(conn, "pg_roles", "rolname", role):
                    conn.execute(sa.text(f'CREATE ROLE "{role}" LOGIN'))
                    logger.info("created role %s", role)
            _database(conn, PIPELINE_DB, OWNER)
            _database(conn, AIRFLOW_DB, AIRFLOW)
            conn.execute(sa.text(f"GRANT CONNECT, TEMPORARY ON DATABASE {PIPELINE_DB} TO {APP}"))
            conn.execute(sa.text(f"GRANT CONNECT ON DATABASE {PIPELINE_DB} TO {ANALYST}"))
    finally:
        engine.dispose()
    superuser = sa.make_url(server_url).username or "postgres"
    give_objects(_url(server_url, superuser, PIPELINE_DB), OWNER)
    give_objects(_url(server_url, superuser, AIRFLOW_DB), AIRFLOW)
    return urls(server_url)


def urls(server_url: str) -> StackUrls:
    """Each role's URL on the server of `server_url` (nothing is created)."""
    return StackUrls(
        owner=_url(server_url, OWNER, PIPELINE_DB),
        app=_url(server_url, APP, PIPELINE_DB),
        analyst=_url(server_url, ANALYST, PIPELINE_DB),
        airflow=_url(server_url, AIRFLOW, AIRFLOW_DB),
    )


def give_objects(database_url: str, role: str) -> None:
    """Make `role` the owner of every table, view, sequence and type of the schema public."""
    sql = _GIVE_OBJECTS.replace(":'role'", f"'{role}'")
    engine = sa.create_engine(database_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(sql))
    finally:
        engine.dispose()


def _database(conn: sa.Connection, name: str, owner: str) -> None:
    """Create database `name` owned by `owner`, or hand an existing one to it; only its roles
    may connect (PUBLIC's default CONNECT and TEMPORARY are revoked)."""
    if not _exists(conn, "pg_database", "datname", name):
        conn.execute(sa.text(f'CREATE DATABASE "{name}" OWNER "{owner}"'))
        logger.info("created database %s owned by %s", name, owner)
    else:
        conn.execute(sa.text(f'ALTER DATABASE "{name}" OWNER TO "{owner}"'))
    conn.execute(sa.text(f'REVOKE ALL ON DATABASE "{name}" FROM PUBLIC'))


def _exists(conn: sa.Connection, catalog: str, column: str, name: str) -> bool:
    query = sa.text(f"SELECT 1 FROM {catalog} WHERE {column} = :name")
    return conn.execute(query, {"name": name}).first() is not None


def _url(server_url: str, user: str, database: str) -> str:
    url = sa.make_url(server_url).set(username=user, password=None, database=database)
    return url.render_as_string(hide_password=False)
