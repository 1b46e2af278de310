"""Test-only fault injection: ML_API_FAIL_FIRST_N and POST /admin/faults behind its token."""

import logging
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from ml_api.faults import FaultInjector
from ml_api.main import create_app
from ml_api.settings import ServiceSettings

TOKEN = "test-faults-token-5f2c9a"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def faults_client(make_client: Callable[..., TestClient]) -> TestClient:
    """A client for an app with /admin/faults enabled and guarded by ``TOKEN``."""
    return make_client(enable_faults=True, faults_token=TOKEN)


def test_first_n_predict_calls_fail_with_503_and_retry_after_zero(
    make_client: Callable[..., TestClient], make_item: Callable[..., dict[str, Any]]
) -> None:
    client = make_client(fail_first_n=2)
    batch = [make_item()]
    statuses = [client.post("/predict", json=batch) for _ in range(3)]
    assert [r.status_code for r in statuses] == [503, 503, 200]
    assert statuses[0].headers["Retry-After"] == "0"
    assert "detail" in statuses[0].json()


def test_fail_first_n_from_the_environment_needs_no_token(
    monkeypatch: pytest.MonkeyPatch, make_item: Callable[..., dict[str, Any]]
) -> None:
    monkeypatch.setenv("ML_API_FAIL_FIRST_N", "1")
    monkeypatch.setenv("ML_API_GC_TUNING", "false")
    for name in ("ML_API_ENABLE_FAULTS", "ML_API_FAULTS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with TestClient(create_app()) as client:
        statuses = [client.post("/predict", json=[make_item()]).status_code for _ in range(2)]
        assert statuses == [503, 200]
        assert client.post("/admin/faults", json={"fail_next": 1}).status_code == 404


def test_health_is_not_affected_by_injected_failures(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(fail_first_n=1)
    assert client.get("/health").status_code == 200


def test_admin_faults_is_404_unless_enabled(client: TestClient) -> None:
    response = client.post("/admin/faults", json={"fail_next": 1, "status": 503})
    assert response.status_code == 404


def test_admin_faults_arms_more_failures_in_order(
    faults_client: TestClient, make_item: Callable[..., dict[str, Any]]
) -> None:
    client = faults_client
    batch = [make_item()]
    assert client.post("/predict", json=batch).status_code == 200
    first = client.post("/admin/faults", json={"fail_next": 1, "status": 503}, headers=AUTH)
    second = client.post("/admin/faults", json={"fail_next": 2, "status": 500}, headers=AUTH)
    assert (first.json(), second.json()) == ({"pending": 1}, {"pending": 3})
    responses = [client.post("/predict", json=batch) for _ in range(4)]
    assert [r.status_code for r in responses] == [503, 500, 500, 200]
    assert responses[0].headers["Retry-After"] == "0"
    assert "Retry-After" not in responses[1].headers


def test_admin_faults_status_defaults_to_503(
    faults_client: TestClient, make_item: Callable[..., dict[str, Any]]
) -> None:
    response = faults_client.post("/admin/faults", json={"fail_next": 1}, headers=AUTH)
    assert response.json() == {"pending": 1}
    assert faults_client.post("/predict", json=[make_item()]).status_code == 503


def test_admin_faults_rejects_non_error_status_in_fastapi_shape(
    faults_client: TestClient,
) -> None:
    response = faults_client.post(
        "/admin/faults", json={"fail_next": 1, "status": 200}, headers=AUTH
    )
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert (error["loc"], error["type"]) == (["body", "status"], "greater_than_equal")


def test_admin_faults_rejects_a_body_that_is_not_json(faults_client: TestClient) -> None:
    response = faults_client.post(
        "/admin/faults", content=b"{", headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer wrong-token",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
        f"Basic {TOKEN}",
        TOKEN,
        "Bearer ",
        f"Bearer {TOKEN}\u00e9",
    ],
    ids=["none", "wrong", "longer", "shorter", "basic", "no-scheme", "empty", "non-ascii"],
)
def test_admin_faults_without_the_right_token_is_401_and_arms_nothing(
    faults_client: TestClient,
    make_item: Callable[..., dict[str, Any]],
    authorization: str | None,
) -> None:
    headers: dict[bytes, bytes] = {}
    if authorization is not None:
        headers[b"Authorization"] = authorization.encode()  # UTF-8, as a client would send
    response = faults_client.post(
        "/admin/faults", json={"fail_next": 5, "status": 503}, headers=headers
    )
    assert response.status_code == 401
    assert response.json() == {"detail": "missing or wrong bearer token"}
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert faults_client.post("/predict", json=[make_item()]).status_code == 200


def test_bearer_scheme_name_is_case_insensitive(faults_client: TestClient) -> None:
    response = faults_client.post(
        "/admin/faults", json={"fail_next": 1}, headers={"Authorization": f"bearer {TOKEN}"}
    )
    assert response.json() == {"pending": 1}


def test_token_is_checked_before_the_body_is_read(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(enable_faults=True, faults_token=TOKEN, max_body_bytes=64)
    oversized = {"Content-Length": "1000000", "Content-Type": "application/json"}
    anonymous = client.post("/admin/faults", content=b"{", headers=oversized)
    authorised = client.post("/admin/faults", content=b"{", headers={**oversized, **AUTH})
    assert (anonymous.status_code, authorised.status_code) == (401, 413)


def test_token_never_appears_in_responses_logs_or_settings(
    faults_client: TestClient,
    make_item: Callable[..., dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    responses = [
        faults_client.post("/admin/faults", json={"fail_next": 1}, headers=AUTH),
        faults_client.post("/admin/faults", json={"fail_next": 1}, headers={}),
        faults_client.post("/admin/faults", json={"status": 1}, headers=AUTH),
        faults_client.post("/predict", json=[make_item()]),
        faults_client.get("/openapi.json"),
    ]
    assert [r.status_code for r in responses] == [200, 401, 422, 503, 200]
    assert "rejected /admin/faults" in caplog.text
    settings = ServiceSettings(enable_faults=True, faults_token=SecretStr(TOKEN))
    for text in [r.text for r in responses] + [caplog.text, repr(settings), str(settings)]:
        assert TOKEN not in text


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
