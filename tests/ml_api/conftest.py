"""Fixtures for the ML API unit tests: app builders and transaction payloads."""

import gc
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ml_api.main import create_app
from ml_api.settings import ServiceSettings

Item = dict[str, Any]


@pytest.fixture
def make_item() -> Callable[..., Item]:
    """Build a valid /predict item; keyword arguments override fields."""

    def _make(**overrides: Any) -> Item:
        item: Item = {
            "id": str(uuid.uuid4()),
            "description": "CARD PAYMENT TO CORNER SHOP",
            "amount": 12.5,
            "timestamp": "2024-05-01T12:34:56+00:00",
            "merchant": "Corner Shop",
            "operation_type": "card_payment",
            "side": "debit",
        }
        item.update(overrides)
        return item

    return _make


@pytest.fixture
def make_client() -> Iterator[Callable[..., TestClient]]:
    """Build a TestClient for an app with the given settings (GC tuning off by default)."""
    clients: list[TestClient] = []

    def _make(**settings: Any) -> TestClient:
        settings.setdefault("gc_tuning", False)
        client = TestClient(create_app(ServiceSettings(**settings)))
        clients.append(client)
        return client

    yield _make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    """A client for an app with default settings."""
    return make_client()


@pytest.fixture
def restore_gc() -> Iterator[None]:
    """Undo process-wide garbage-collector tuning done by the app's lifespan."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)
