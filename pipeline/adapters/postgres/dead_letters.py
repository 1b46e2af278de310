"""PostgresDeadLetterStore: reading and marking parked dead letters, for redrive."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa

from pipeline.adapters.postgres.store import translate_errors
from pipeline.domain.model import DeadLetterStatus, ParkedRecord, Reason


class PostgresDeadLetterStore:
    """DeadLetterStore over the dead_letters table."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def pending(self, reason: Reason | None, since: datetime | None) -> list[ParkedRecord]:
        """Pending dead letters from a topic (they carry a partition), oldest first."""
        query = sa.text(
            """
            SELECT id, key, payload, reason, replays FROM dead_letters
            WHERE status = 'pending' AND partition IS NOT NULL
              AND (CAST(:reason AS text) IS NULL OR reason = :reason)
              AND (CAST(:since AS timestamptz) IS NULL OR last_failed_at >= :since)
            ORDER BY id
            """
        )
        with translate_errors("reading dead letters"), self._engine.connect() as conn:
            values = {"reason": None if reason is None else str(reason), "since": since}
            rows = conn.execute(query, values).all()
        return [ParkedRecord(row.id, row.key, row.payload, row.reason, row.replays) for row in rows]

    def mark(self, ids: Sequence[int], status: DeadLetterStatus) -> None:
        """Set the status; a redriven one also counts one more redrive."""
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
