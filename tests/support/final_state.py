"""The final tables of a run, in a form every pipeline can be compared on."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from uuid import UUID

import sqlalchemy as sa

from tests.fakes import rule
from tests.support.helpers import rows


@dataclass(frozen=True)
class FinalState:
    """Stored transactions (id → what they say) and dead letters ((reason, id named) counts)."""

    stored: dict[UUID, tuple[str, str, str, str]]
    dead_letters: Counter[tuple[str, UUID | None]]

    @property
    def stored_ids(self) -> set[UUID]:
        return set(self.stored)


def final_state(engine: sa.Engine) -> FinalState:
    """Read the tables; checks on the way that every category equals the rule."""
    query = (
        "SELECT transaction_id, source_id, description, amount::text, category"
        " FROM categorised_transactions"
    )
    stored = {}
    for row in rows(engine, query):
        assert row.category == rule(row.transaction_id), row
        stored[row.transaction_id] = (row.source_id, row.description, row.amount, row.category)
    letters = Counter(
        (row.reason, row.transaction_id)
        for row in rows(engine, "SELECT reason, transaction_id FROM dead_letters")
    )
    return FinalState(stored, letters)
