"""The categorisation model: a deterministic hash of the transaction id."""

import uuid
from typing import Final

MODEL_VERSION: Final = "hash-v1"

CATEGORIES: Final[tuple[str, ...]] = (
    "Rent",
    "Salary Income",
    "Food",
    "Restaurant",
    "Client Expenses",
    "Transportation",
    "Utilities",
    "Entertainment",
    "Healthcare",
    "Shopping",
    "Travel",
    "Education",
    "Insurance",
    "Investment",
    "Subscriptions",
)


def categorise(transaction_id: uuid.UUID) -> str:
    """Return the category of a transaction from its id.

    ``hash(uuid.UUID)`` is ``hash(uuid.int)``: integer hashing is not salted by
    PYTHONHASHSEED, so the result is the same in every process and on every run.
    """
    return CATEGORIES[hash(transaction_id) % len(CATEGORIES)]
