"""PostgreSQL adapter: categorised transactions, dead letters and pipeline runs."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast
from uuid import UUID, uuid4

import polars as pl
import psycopg
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from pipeline.adapters.postgres import bulk as postgres_bulk
from pipeline.adapters.postgres.bulk import BulkMethod
from pipeline.domain.errors import StoreMisconfigured, StoreRejected, StoreUnavailable
from pipeline.domain.frames import pairs_frame
from pipeline.domain.model import (
    Categorisation,
    Outcome,
    Rejection,
    RunKind,
    RunStatus,
    Transaction,
)

logger = logging.getLogger(__name__)

RUN_STATUSES = (RunStatus.SUCCEEDED, RunStatus.FAILED)
_SCHEMES = ("postgresql://", "postgres://")


def sqlalchemy_url(url: str) -> str:
    """Rewrite a libpq `postgresql://` URL to SQLAlchemy's `postgresql+psycopg://` (psycopg 3)."""
    for scheme in _SCHEMES:
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


def make_engine(url: str, pool_size: int = 5, connect_timeout_s: int = 10) -> sa.Engine:
    """An engine that checks connections before use; builds no connection until first use.

    `connect_timeout_s` applies unless the URL sets `?connect_timeout=` itself.
    """
    parsed = sa.make_url(sqlalchemy_url(url))
    timeout = {} if "connect_timeout" in parsed.query else {"connect_timeout": connect_timeout_s}
    return sa.create_engine(parsed, pool_size=pool_size, pool_pre_ping=True, connect_args=timeout)


# SQLSTATE classes and codes, by what they mean for the pipeline (PostgreSQL appendix A).
_TRANSIENT_CLASSES = ("08", "53", "57", "40", "58")  # connection, resources, shutdown, rollback
_SYSTEMIC_CODES = ("25006", "42501")  # read-only transaction, permission denied
_RECORD_CLASSES = ("22", "23", "54")  # data exception, integrity, program limit (row too big)


@contextmanager
def translate_errors(action: str) -> Iterator[None]:
    """Turn database failures into the pipeline's families, by SQLSTATE.

    Connection refused or dropped, shutdown, pool exhaustion, deadlocks and serialization
    failures are transient (retrying the database transaction can succeed); a read-only server
    or missing privileges are systemic (every write fails alike); data and integrity errors
    are the rows' (StoreRejected: the caller isolates the row at fault).
    """
    try:
        yield
    except sa_exc.DBAPIError as exc:
        translated = _translated(action, exc.orig or exc, exc.connection_invalidated)
        if translated is None:
            raise  # unforeseen: the caller's unexpected-error path logs its class
        raise translated from exc
    except (sa_exc.TimeoutError, sa_exc.DisconnectionError) as exc:
        raise StoreUnavailable(f"{action}: {_first_line(exc)}") from exc
    except psycopg.Error as exc:  # raised unwrapped by the driver connection used for COPY
        translated = _translated(action, exc, False)
        if translated is None:
            raise
        raise translated from exc


def _translated(action: str, error: BaseException, invalidated: bool) -> Exception | None:
    message = f"{action}: {_first_line(error)}"
    state = getattr(error, "sqlstate", None) or ""
    if state in _SYSTEMIC_CODES:
        return StoreMisconfigured(message)
    if invalidated or state.startswith(_TRANSIENT_CLASSES):
        return StoreUnavailable(message)
    if isinstance(error, psycopg.OperationalError | psycopg.InterfaceError) and not state:
        return StoreUnavailable(message)  # no server answer at all: connection-level
    if state.startswith(_RECORD_CLASSES) or isinstance(error, psycopg.DataError):
        return StoreRejected(message)  # DataError without a state: refused by the driver
    return None


# A repeated or conflicting id stays a dead letter: storing the first occurrence resolves
# nothing about the other one.
_RESOLVE = sa.text(
    """
    UPDATE dead_letters SET status = 'resolved', resolved_at = now()
    WHERE transaction_id = ANY(CAST(string_to_array(:ids, ',') AS uuid[]))
      AND status IN ('pending', 'redriven')
      AND reason NOT IN ('duplicate_id', 'conflicting_duplicate')
    """
)
_OPEN_LETTERS = sa.text(
    "SELECT EXISTS (SELECT FROM dead_letters WHERE status IN ('pending', 'redriven')"
    " AND transaction_id IS NOT NULL AND reason NOT IN ('duplicate_id', 'conflicting_duplicate'))"
)
_STORED = sa.text(
    "SELECT id::text, content_sha256 FROM transactions"
    " WHERE id = ANY(CAST(string_to_array(:ids, ',') AS uuid[])) AND category IS NOT NULL"
)
_NOTHING_STORED = pl.DataFrame(schema={"id": pl.String, "content_sha256": pl.String})
_INT4_MAX = 2**31 - 1


def dead_letter_key(rejection: Rejection) -> str:
    """Stable identity of a rejection: the same record at the same position gives the same key."""
    pos = rejection.position
    parts = [
        pos.source,
        pos.line,
        pos.partition,
        pos.offset,
        rejection.stage.value,
        rejection.reason,
        rejection.payload,
    ]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


class PostgresStore:
    """TransactionStore and DeadLetterSink on PostgreSQL, plus pipeline run bookkeeping."""

    def __init__(self, engine: sa.Engine, bulk_method: BulkMethod = "copy") -> None:
        self._engine = engine
        self._bulk_method: BulkMethod = bulk_method

    def stored(self, ids: pl.Series) -> pl.DataFrame:
        """(`id`, `content_sha256`) of each of `ids` already stored and categorised (null
        fingerprint: stored before fingerprints were recorded). One query, ids sent as one text
        parameter (no Python object per id)."""
        if not ids.len():
            return _NOTHING_STORED
        listed = ",".join(ids.to_list())
        with translate_errors("reading stored transactions"), self._engine.connect() as conn:
            found = conn.execute(_STORED, {"ids": listed}).all()
        return pl.DataFrame(
            {"id": [row[0] for row in found], "content_sha256": [row[1] for row in found]},
            schema=_NOTHING_STORED.schema,
        )

    def upsert(self, rows: pl.DataFrame) -> None:
        """Upsert categorised transactions in one database transaction (idempotent); dead
        letters of these transactions still open are marked resolved in the same one."""
        self._save(rows, new_only=False)

    def insert_new(self, rows: pl.DataFrame) -> bool:
        """`upsert` if none of the ids is stored; False, with nothing written, if one is."""
        return self._save(rows, new_only=True)

    def _save(self, rows: pl.DataFrame, new_only: bool) -> bool:
        staged = postgres_bulk.staging_frame(rows)
        if not staged.height:
            return True
        with translate_errors("saving transactions"), self._engine.begin() as conn:
            driver = cast("psycopg.Connection[Any]", conn.connection.driver_connection)
            if not new_only:
                postgres_bulk.write(driver, staged, self._bulk_method)
            elif not postgres_bulk.insert_new(driver, staged, self._bulk_method):
                return False
            if conn.execute(_OPEN_LETTERS).scalar():  # usually none: skip the id look-ups
                conn.execute(_RESOLVE, {"ids": ",".join(staged["id"].to_list())})
        logger.debug("saved %d categorised transactions", staged.height)
        return True

    def stored_fingerprints(self, ids: Sequence[UUID]) -> dict[UUID, str | None]:
        """`stored` for UUID objects (tools and tests)."""
        found = self.stored(pl.Series([str(i) for i in ids], dtype=pl.String))
        return {UUID(i): fingerprint for i, fingerprint in found.iter_rows()}

    def categorised_ids(self, ids: Sequence[UUID]) -> set[UUID]:
        """The subset of `ids` that already has a stored categorisation."""
        return set(self.stored_fingerprints(ids))

    def save(self, pairs: Sequence[tuple[Transaction, Categorisation]]) -> None:
        """`upsert` for (transaction, categorisation) objects (tools and tests)."""
        self.upsert(pairs_frame(pairs))

    def send(self, rejections: Iterable[Rejection]) -> None:
        """Park rejections in dead_letters; a record already parked at that position is kept."""
        rows = [_dead_letter_row(rejection) for rejection in rejections]
        if not rows:
            return
        insert = sa.text(
            """
            INSERT INTO dead_letters (
                dedup_key, transaction_id, source, source_position, line, partition, "offset",
                stage, reason, detail, payload, payload_bytes, payload_sha256, error, key,
                replays, attempts, first_failed_at, last_failed_at)
            VALUES (
                :dedup_key, :transaction_id, :source, :source_position, :line, :partition,
                :offset, :stage, :reason, :detail, :payload, :payload_bytes, :payload_sha256,
                :error, :key, :replays, :attempts, :failed_at, :failed_at)
            ON CONFLICT (dedup_key) DO NOTHING
            """
        )
        with translate_errors("writing dead letters"), self._engine.begin() as conn:
            conn.execute(insert, rows)
        logger.debug("sent %d rejections to dead_letters", len(rows))

    def start_run(self, kind: RunKind, source: str, params: dict[str, Any]) -> UUID:
        """Record a run as running and return its id."""
        run_id = uuid4()
        insert = sa.text(
            """
            INSERT INTO pipeline_runs (id, kind, source, status, started_at, params)
            VALUES (:id, :kind, :source, 'running', now(), CAST(:params AS jsonb))
            """
        )
        values = {"id": run_id, "kind": str(kind), "source": source, "params": _json(params)}
        with translate_errors("starting a run"), self._engine.begin() as conn:
            conn.execute(insert, values)
        return run_id

    def finish_run(
        self, run_id: UUID, status: RunStatus, outcome: Outcome, error: str | None = None
    ) -> None:
        """Record the end of a run: its status, counts and error, if any."""
        if status not in RUN_STATUSES:
            raise ValueError(f"a run finishes as one of {RUN_STATUSES}, not {status!r}")
        update = sa.text(
            """
            UPDATE pipeline_runs SET
                status = :status, finished_at = now(), error = :error,
                rows_read = :read, valid = :valid, categorised = :categorised,
                already_stored = :already_stored, rejected = :rejected,
                rejected_by_reason = CAST(:rejected_by_reason AS jsonb),
                categories = CAST(:categories AS jsonb), warnings = CAST(:warnings AS jsonb)
            WHERE id = :id
            """
        )
        values = {
            "id": run_id,
            "status": str(status),
            "error": error,
            "read": outcome.read,
            "valid": outcome.valid,
            "categorised": outcome.categorised,
            "already_stored": outcome.already_stored,
            "rejected": outcome.rejected_total,
            "rejected_by_reason": _json(outcome.rejected),
            "categories": _json(outcome.categories),
            "warnings": _json(outcome.warnings),
        }
        with translate_errors("finishing a run"), self._engine.begin() as conn:
            if conn.execute(update, values).rowcount != 1:
                raise LookupError(f"no pipeline run {run_id}")


def _dead_letter_row(rejection: Rejection) -> dict[str, object]:
    pos = rejection.position
    return {
        "dedup_key": dead_letter_key(rejection),
        "transaction_id": rejection.transaction_id,
        "source": pos.source,
        "source_position": str(pos),
        "line": pos.line if pos.line is None or pos.line <= _INT4_MAX else None,
        "partition": pos.partition,
        "offset": pos.offset,
        "stage": rejection.stage.value,
        "reason": str(rejection.reason),
        "detail": pg_text(rejection.detail),
        "payload": pg_text(rejection.payload),
        "payload_bytes": rejection.payload_bytes,
        "payload_sha256": rejection.payload_sha256,
        "error": pg_text(rejection.error),
        "key": pg_text(rejection.key) if rejection.key is not None else None,
        # Counters come from headers anyone can set: clamp them to the column's range.
        "replays": min(max(rejection.replays, 0), _INT4_MAX),
        "attempts": min(max(rejection.attempts, 0), _INT4_MAX),
        "failed_at": rejection.rejected_at,
    }


def pg_text(text: str) -> str:
    """Text PostgreSQL accepts: undecodable bytes and NUL escaped (poison must not jam the DLQ)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text.replace("\x00", "\\x00")


def _json(value: object) -> str:
    return json.dumps(value, default=str, sort_keys=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
