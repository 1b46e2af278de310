"""PostgresDeadLetterStore: reading and marking parked dead letters, for redrive."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

import sqlalchemy as sa

from pipeline.adapters.postgres.store import translate_errors
from pipeline.domain.errors import ConfigurationError
from pipeline.domain.model import DeadLetterStatus, ParkedRecord, Reason

# pg_advisory_lock key of the redrive (any constant unique to this use): "txcat redrive".
REDRIVE_LOCK = 0x7478636174_5244

_PENDING = sa.text(
    """
    SELECT id, key, payload, reason, replays FROM dead_letters
    WHERE status = 'pending' AND partition IS NOT NULL AND id > :after
      AND (CAST(:reason AS text) IS NULL OR reason = :reason)
      AND (CAST(:since AS timestamptz) IS NULL OR last_failed_at >= :since)
    ORDER BY id
    LIMIT :limit
    """
)


class RedriveBusy(ConfigurationError):
    """Another redrive holds the lock."""


class PostgresDeadLetterStore:
    """DeadLetterStore over the dead_letters table."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """A session-level advisory lock, held on its own connection for the whole block."""
        with translate_errors("taking the redrive lock"), self._engine.connect() as conn:
            taken = conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": REDRIVE_LOCK})
            if not taken.scalar_one():
                raise RedriveBusy("another redrive is running: wait for it to finish")
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": REDRIVE_LOCK})
                conn.commit()

    def pending(
        self, reason: Reason | None, since: datetime | None, after_id: int = 0, limit: int = 1000
    ) -> list[ParkedRecord]:
        """A page of pending dead letters from a topic (they carry a partition), oldest first."""
        values = {
            "reason": None if reason is None else str(reason),
            "since": since,
            "after": after_id,
            "limit": limit,
        }
        with translate_errors("reading dead letters"), self._engine.connect() as conn:
            rows = conn.execute(_PENDING, values).all()
        return [ParkedRecord(row.id, row.key, row.payload, row.reason, row.replays) for row in rows]

    def mark(self, ids: Sequence[int], status: DeadLetterStatus) -> None:
        """Set the status; a redriven one also counts one more redrive."""
        if not ids:
            return
        update = sa.text(
            """
            UPDATE dead_letters
            SET status = :status,
                redrive_count = redrive_count + CASE WHEN :status = 'redriven' THEN 1 ELSE 0 END,
                redriven_at = CASE WHEN :status = 'redriven' THEN now() ELSE redriven_at END
            WHERE id = ANY(:ids) AND status = 'pending'
            """
        )
        with translate_errors("marking dead letters"), self._engine.begin() as conn:
            conn.execute(update, {"status": str(status), "ids": list(ids)})
