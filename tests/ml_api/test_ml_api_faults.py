"""Test-only fault injection: ML_API_FAIL_FIRST_N and POST /admin/faults."""

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from ml_api.faults import FaultInjector


def test_first_n_predict_calls_fail_with_503_and_retry_after_zero(
    make_client: Callable[..., TestClient], make_item: Callable[..., dict[str, Any]]
) -> None:
    client = make_client(fail_first_n=2)
    batch = [make_item()]
    statuses = [client.post("/predict", json=batch) for _ in range(3)]
    assert [r.status_code for r in statuses] == [503, 503, 200]
    assert statuses[0].headers["Retry-After"] == "0"
    assert "detail" in statuses[0].json()


def test_health_is_not_affected_by_injected_failures(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(fail_first_n=1)
    assert client.get("/health").status_code == 200


def test_admin_faults_is_404_unless_enabled(client: TestClient) -> None:
    response = client.post("/admin/faults", json={"fail_next": 1, "status": 503})
    assert response.status_code == 404


def test_admin_faults_arms_more_failures_in_order(
    make_client: Callable[..., TestClient], make_item: Callable[..., dict[str, Any]]
) -> None:
    client = make_client(enable_faults=True)
    batch = [make_item()]
    assert client.post("/predict", json=batch).status_code == 200
    first = client.post("/admin/faults", json={"fail_next": 1, "status": 503})
    second = client.post("/admin/faults", json={"fail_next": 2, "status": 500})
    assert (first.json(), second.json()) == ({"pending": 1}, {"pending": 3})
    responses = [client.post("/predict", json=batch) for _ in range(4)]
    assert [r.status_code for r in responses] == [503, 500, 500, 200]
    assert responses[0].headers["Retry-After"] == "0"
    assert "Retry-After" not in responses[1].headers


def test_admin_faults_status_defaults_to_503(
    make_client: Callable[..., TestClient], make_item: Callable[..., dict[str, Any]]
) -> None:
    client = make_client(enable_faults=True)
    assert client.post("/admin/faults", json={"fail_next": 1}).json() == {"pending": 1}
    assert client.post("/predict", json=[make_item()]).status_code == 503


def test_admin_faults_rejects_non_error_status(make_client: Callable[..., TestClient]) -> None:
    client = make_client(enable_faults=True)
    response = client.post("/admin/faults", json={"fail_next": 1, "status": 200})
    assert response.status_code == 422


def test_injector_counts_down_and_then_lets_calls_through() -> None:
    injector = FaultInjector(fail_first_n=1)
    injector.arm(1, 429)
    assert injector.pending() == 2
    assert [injector.take(), injector.take(), injector.take()] == [503, 429, None]
    assert injector.pending() == 0


def test_arming_zero_failures_changes_nothing() -> None:
    injector = FaultInjector()
    assert injector.arm(0, 500) == 0
    assert injector.take() is None
