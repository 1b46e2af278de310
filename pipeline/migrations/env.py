"""Alembic environment, configured in code by pipeline.adapters.postgres.schema (no alembic.ini).

A caller passes either an open connection in `config.attributes["connection"]` or a URL in
the `sqlalchemy.url` option. Offline mode (`--sql`) renders the SQL from the URL alone.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

config = context.config


def run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online(connection: sa.Connection) -> None:
    context.configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
elif (given := config.attributes.get("connection")) is not None:
    run_online(given)
else:
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("pass a connection or set sqlalchemy.url to run migrations")
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            run_online(conn)
    finally:
        engine.dispose()
