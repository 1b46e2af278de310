"""The one place that builds adapters from settings and closes them."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy as sa

from pipeline.adapters import embedded_pg
from pipeline.adapters.ml_http import HttpCategoriser, RetryPolicy, make_client
from pipeline.adapters.postgres import PostgresStore, make_engine
from pipeline.adapters.postgres_schema import check_schema, upgrade
from pipeline.config import DatabaseSettings, MlApiSettings, ValidationSettings
from pipeline.domain.validation import ValidationRules, Validator
from pipeline.service import CategoriseRecords, UseCaseOptions

logger = logging.getLogger(__name__)


def database_url(settings: DatabaseSettings) -> str:
    """DATABASE_URL when set; otherwise the embedded server under .data/, started if needed."""
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    url = embedded_pg.up(settings.embedded_data_dir)
    logger.info("no DATABASE_URL: using the embedded PostgreSQL in %s", settings.embedded_data_dir)
    return url


@contextmanager
def database(settings: DatabaseSettings) -> Iterator[sa.Engine]:
    """An engine on a schema that is up to date (the embedded database is upgraded for you)."""
    engine = make_engine(database_url(settings))
    try:
        if settings.database_url is None:
            upgrade(engine)
        check_schema(engine)
        yield engine
    finally:
        engine.dispose()


def validation_rules(settings: ValidationSettings) -> ValidationRules:
    """The domain's validation rules from their settings."""
    return ValidationRules(
        min_amount=settings.min_amount,
        max_amount=settings.max_amount,
        default_timezone=settings.timezone,
        max_text_length=settings.max_text_length,
    )


@dataclass
class Core:
    """The adapters and the use case of one run."""

    store: PostgresStore
    use_case: CategoriseRecords
    database_url: str


@contextmanager
def core(
    db: DatabaseSettings,
    ml: MlApiSettings,
    validation: ValidationSettings,
    reject_duplicate_ids: bool = True,
) -> Iterator[Core]:
    """Build the store, the ML client and the use case; close them on the way out."""
    rules = validation_rules(validation)
    policy = RetryPolicy(ml.retry_attempts, ml.retry_initial_s, ml.retry_max_s)
    options = UseCaseOptions(ml.batch_size, ml.concurrency, reject_duplicate_ids)
    with (
        database(db) as engine,
        make_client(ml.api_url, ml.timeout_s, ml.concurrency * 2) as client,
    ):
        store = PostgresStore(engine)
        categoriser = HttpCategoriser(client, policy)
        use_case = CategoriseRecords(categoriser, store, store, Validator(rules), options)
        yield Core(store, use_case, engine.url.render_as_string(hide_password=False))
