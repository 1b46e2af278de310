"""Hand-written fakes of the ports, for unit tests of the core."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from uuid import UUID

from pipeline.domain.errors import CategoriserRejected, CategoriserUnavailable
from pipeline.domain.model import CATEGORIES, Categorisation, Rejection, Transaction


def valid_fields(source_id: str, **changes: object) -> dict[str, object]:
    """The fields of a valid raw record, with `changes` applied."""
    return {
        "id": source_id,
        "description": "Purchase",
        "amount": "-10.00",
        "timestamp": "2023-01-01 10:00:00",
        "merchant": "Lidl",
        "operation_type": "payment",
        "side": "debit",
        **changes,
    }


def rule(transaction_id: UUID) -> str:
    """The ML API's rule, recomputed independently."""
    return CATEGORIES[hash(transaction_id) % len(CATEGORIES)]


class FakeCategoriser:
    """Applies the rule; can refuse given source ids (like a 422) or be down N times."""

    def __init__(self, refuse: Iterable[str] = (), fail_first: int = 0) -> None:
        self.refuse = set(refuse)
        self.fail_first = fail_first
        self.calls: list[int] = []

    def categorise(self, transactions: Sequence[Transaction]) -> list[Categorisation]:
        self.calls.append(len(transactions))
        if self.fail_first > 0:
            self.fail_first -= 1
            raise CategoriserUnavailable("fake outage")
        bad = [t.source_id for t in transactions if t.source_id in self.refuse]
        if bad:
            raise CategoriserRejected(422, f"invalid items {bad}")
        return [Categorisation(t.id, rule(t.id), "fake-v1") for t in transactions]


class InMemoryStore:
    """TransactionStore and DeadLetterSink in dictionaries, idempotent like the real one."""

    def __init__(self) -> None:
        self.transactions: dict[UUID, Transaction] = {}
        self.categorisations: dict[UUID, Categorisation] = {}
        self.dead_letters: dict[tuple[str, str, str], Rejection] = {}
        self.saves = 0

    def categorised_ids(self, ids: Sequence[UUID]) -> set[UUID]:
        return {i for i in ids if i in self.categorisations}

    def save(self, pairs: Sequence[tuple[Transaction, Categorisation]]) -> None:
        self.saves += 1
        for transaction, categorisation in pairs:
            self.transactions[transaction.id] = transaction
            self.categorisations[transaction.id] = categorisation

    def send(self, rejections: Iterable[Rejection]) -> None:
        for rejection in rejections:
            key = (str(rejection.position), rejection.reason, rejection.payload)
            self.dead_letters.setdefault(key, rejection)
