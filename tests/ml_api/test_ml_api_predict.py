"""Behaviour of POST /predict on valid batches."""

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from ml_api.model import MODEL_VERSION, categorise

# Spelled out here rather than imported, so a reordering in the service fails the tests.
EXPECTED_CATEGORIES = [
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
]
ROOT = Path(__file__).resolve().parents[2]


def expected(transaction_id: str) -> str:
    """The contract's rule, recomputed independently of the service."""
    return EXPECTED_CATEGORIES[hash(uuid.UUID(transaction_id)) % len(EXPECTED_CATEGORIES)]


def test_category_follows_the_hash_rule_for_every_item(
    client: TestClient, make_item: Callable[..., dict[str, Any]]
) -> None:
    ids = [str(uuid.uuid4()) for _ in range(200)] + [
        "00000000-0000-0000-0000-000000000000",
        "ffffffff-ffff-ffff-ffff-ffffffffffff",
        "123e4567-e89b-12d3-a456-426614174000",
    ]
    response = client.post("/predict", json=[make_item(id=i) for i in ids])
    assert response.status_code == 200
    assert response.json() == [{"transaction_id": i, "category": expected(i)} for i in ids]
    assert {p["category"] for p in response.json()} == set(EXPECTED_CATEGORIES)


def test_known_ids_map_to_pinned_categories() -> None:
    assert categorise(uuid.UUID(int=0)) == "Rent"
    assert categorise(uuid.UUID(int=16)) == "Salary Income"
    assert categorise(uuid.UUID(int=14)) == "Subscriptions"
    assert categorise(uuid.UUID("123e4567-e89b-12d3-a456-426614174000")) == expected(
        "123e4567-e89b-12d3-a456-426614174000"
    )


def test_categories_are_identical_in_processes_with_different_hash_seeds() -> None:
    ids = [str(uuid.UUID(int=n * 7919 + 12345)) for n in range(20)]
    code = (
        "import sys, uuid; from ml_api.model import categorise; "
        "print(','.join(categorise(uuid.UUID(i)) for i in sys.argv[1:]))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code, *ids],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)},
            check=True,
        ).stdout.strip()
        for seed in ("1", "2", "random")
    }
    assert outputs == {",".join(expected(i) for i in ids)}


def test_order_is_preserved_including_duplicates(
    client: TestClient, make_item: Callable[..., dict[str, Any]]
) -> None:
    ids = [str(uuid.uuid4()) for _ in range(50)]
    ids = ids + ids[:5]
    response = client.post("/predict", json=[make_item(id=i) for i in ids])
    assert [p["transaction_id"] for p in response.json()] == ids


def test_response_carries_model_version_header(
    client: TestClient, make_item: Callable[..., dict[str, Any]]
) -> None:
    response = client.post("/predict", json=[make_item()])
    assert response.headers["X-Model-Version"] == MODEL_VERSION == "hash-v1"
    assert response.headers["content-type"] == "application/json"


def test_empty_batch_returns_empty_list(client: TestClient) -> None:
    response = client.post("/predict", json=[])
    assert response.status_code == 200
    assert response.json() == []


def test_null_or_missing_merchant_is_accepted(
    client: TestClient, make_item: Callable[..., dict[str, Any]]
) -> None:
    without = make_item()
    del without["merchant"]
    response = client.post("/predict", json=[make_item(merchant=None), without])
    assert response.status_code == 200
    assert len(response.json()) == 2


def test_amount_may_be_number_or_numeric_string(
    client: TestClient, make_item: Callable[..., dict[str, Any]]
) -> None:
    amounts = [12, -3.75, "1234.50", "-0.01", "1e3"]
    response = client.post("/predict", json=[make_item(amount=a) for a in amounts])
    assert response.status_code == 200
    assert len(response.json()) == len(amounts)


def test_non_canonical_uuid_is_answered_in_canonical_form(
    client: TestClient, make_item: Callable[..., dict[str, Any]]
) -> None:
    canonical = str(uuid.uuid4())
    response = client.post("/predict", json=[make_item(id=canonical.upper())])
    assert response.json() == [{"transaction_id": canonical, "category": expected(canonical)}]


def test_unknown_extra_fields_are_ignored(
    client: TestClient, make_item: Callable[..., dict[str, Any]]
) -> None:
    response = client.post("/predict", json=[make_item(currency="EUR")])
    assert response.status_code == 200


def test_naive_and_offset_timestamps_are_accepted(
    client: TestClient, make_item: Callable[..., dict[str, Any]]
) -> None:
    stamps = ["2024-05-01T12:34:56", "2024-05-01T12:34:56.123456Z", "2024-05-01T12:34:56+02:00"]
    response = client.post("/predict", json=[make_item(timestamp=t) for t in stamps])
    assert response.status_code == 200


def test_batch_of_exactly_max_items_is_accepted(
    make_client: Callable[..., TestClient], make_item: Callable[..., dict[str, Any]]
) -> None:
    client = make_client(max_batch=5)
    response = client.post("/predict", json=[make_item() for _ in range(5)])
    assert response.status_code == 200
    assert len(response.json()) == 5
