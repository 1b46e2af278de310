"""GET /health, settings from the environment and the OpenAPI documentation."""

import os
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError

from ml_api.main import create_app
from ml_api.settings import ServiceSettings


def test_health_reports_status_model_version_and_max_batch(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "model_version": "hash-v1", "max_batch": 1000}


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No ML_API_* variable set by the caller's shell."""
    for name in [name for name in os.environ if name.startswith("ML_API_")]:
        monkeypatch.delenv(name)
    return monkeypatch


def test_settings_come_from_ml_api_environment(clean_environment: pytest.MonkeyPatch) -> None:
    environment = {
        "ML_API_MAX_BATCH": "250",
        "ML_API_MAX_BODY_BYTES": "65536",
        "ML_API_MAX_STRING_LENGTH": "300",
        "ML_API_FAIL_FIRST_N": "2",
        "ML_API_ENABLE_FAULTS": "true",
        "ML_API_FAULTS_TOKEN": "s3cret-from-env",
    }
    for name, value in environment.items():
        clean_environment.setenv(name, value)
    settings = ServiceSettings()
    limits = (settings.max_batch, settings.max_body_bytes, settings.max_string_length)
    assert limits == (250, 65536, 300)
    assert (settings.fail_first_n, settings.enable_faults) == (2, True)
    assert settings.faults_token is not None
    assert settings.faults_token.get_secret_value() == "s3cret-from-env"
    with TestClient(create_app(settings.model_copy(update={"gc_tuning": False}))) as client:
        assert client.get("/health").json()["max_batch"] == 250


def test_defaults_work_without_environment(clean_environment: pytest.MonkeyPatch) -> None:
    settings = ServiceSettings()
    assert (settings.max_batch, settings.fail_first_n, settings.enable_faults) == (1000, 0, False)
    assert (settings.max_body_bytes, settings.max_string_length) == (8 * 1024 * 1024, 1000)
    assert settings.faults_token is None


@pytest.mark.parametrize("token", [None, "", "   "], ids=["unset", "empty", "blank"])
def test_enabling_faults_without_a_token_is_refused(
    clean_environment: pytest.MonkeyPatch, token: str | None
) -> None:
    with pytest.raises(ValidationError, match="requires ML_API_FAULTS_TOKEN"):
        ServiceSettings(
            enable_faults=True, faults_token=None if token is None else SecretStr(token)
        )


def test_service_does_not_start_with_faults_enabled_and_no_token(
    clean_environment: pytest.MonkeyPatch,
) -> None:
    clean_environment.setenv("ML_API_ENABLE_FAULTS", "true")
    with pytest.raises(ValidationError, match="requires ML_API_FAULTS_TOKEN"):
        create_app()


@pytest.mark.parametrize("field", ["max_batch", "max_body_bytes", "max_string_length"], ids=str)
def test_zero_limits_are_refused(field: str) -> None:
    limits: dict[str, Any] = {field: 0}
    with pytest.raises(ValidationError, match=field):
        ServiceSettings(**limits)


def test_openapi_documents_predict_request_and_responses(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    operation = schema["paths"]["/predict"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body["type"] == "array"
    assert body["maxItems"] == 1000
    assert body["items"]["title"] == "PredictItem"
    assert body["items"]["properties"]["description"]["maxLength"] == 1000
    assert set(body["items"]["required"]) == {
        "id",
        "description",
        "amount",
        "timestamp",
        "operation_type",
        "side",
    }
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["items"] == {
        "$ref": "#/components/schemas/Prediction"
    }
    assert {"413", "422", "503"} <= set(operation["responses"])
    assert "/admin/faults" not in schema["paths"]


def test_openapi_documents_the_guarded_faults_endpoint(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(enable_faults=True, faults_token="docs-token")
    schema = client.get("/openapi.json").json()
    operation = schema["paths"]["/admin/faults"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["fail_next"]
    assert "401" in operation["responses"]
    assert operation["security"] == [{"HTTPBearer": []}]


def test_docs_page_is_served(client: TestClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    assert "swagger" in response.text.lower()


@pytest.mark.usefixtures("restore_gc")
def test_gc_tuning_lifespan_starts_and_serves(
    make_client: Callable[..., TestClient],
) -> None:
    with make_client(gc_tuning=True) as client:
        assert client.get("/health").status_code == 200
