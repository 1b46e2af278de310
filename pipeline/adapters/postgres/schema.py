"""Database schema: run the alembic migrations and refuse to start on an outdated schema."""

from __future__ import annotations

import logging
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from pipeline.adapters.postgres.store import make_engine, sqlalchemy_url, translate_errors
from pipeline.domain.errors import ConfigurationError

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
UPGRADE_HINT = "python -m pipeline db upgrade"


def alembic_config(url: str | None = None) -> Config:
    """An alembic Config for the pipeline migrations, built in code (no alembic.ini)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # Config options go through ConfigParser interpolation: a literal % must be doubled.
        config.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    return config


def head_revision() -> str:
    """The revision the code needs."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no alembic revision in {MIGRATIONS_DIR}")
    return head


def current_revision(engine: sa.Engine) -> str | None:
    """The revision the database is at, or None when it has never been migrated."""
    with translate_errors("reading the schema revision"), engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine_or_url: sa.Engine | str, revision: str = "head") -> None:
    """Migrate the database to `revision` (head by default), in one database transaction."""
    engine = make_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
    try:
        with translate_errors("upgrading the schema"), engine.connect() as conn:
            before = MigrationContext.configure(conn).get_current_revision()
            config = alembic_config()
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
            conn.commit()
            after = MigrationContext.configure(conn).get_current_revision()
    finally:
        if engine is not engine_or_url:
            engine.dispose()
    if before != after:
        logger.info("database schema upgraded from %s to %s", before, after)


def check_schema(engine: sa.Engine) -> None:
    """Raise ConfigurationError unless the database is at the revision the code needs."""
    current, head = current_revision(engine), head_revision()
    if current == head:
        return
    scripts = ScriptDirectory.from_config(alembic_config())
    known = {script.revision for script in scripts.walk_revisions()}
    if current is not None and current not in known:
        raise ConfigurationError(
            f"database schema is at {current}, which this code does not know "
            f"(it needs {head}): deploy newer code or point it at another database"
        )
    raise ConfigurationError(
        f"database schema is at {current or 'nothing (no schema)'} but the code needs {head}: "
        f"run `{UPGRADE_HINT}`"
    )
