"""GET /health, settings from the environment and the OpenAPI documentation."""

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from ml_api.main import create_app
from ml_api.settings import MlApiSettings


def test_health_reports_status_model_version_and_max_batch(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "model_version": "hash-v1", "max_batch": 1000}


def test_settings_come_from_ml_api_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ML_API_MAX_BATCH", "250")
    monkeypatch.setenv("ML_API_FAIL_FIRST_N", "2")
    monkeypatch.setenv("ML_API_ENABLE_FAULTS", "true")
    settings = MlApiSettings()
    assert (settings.max_batch, settings.fail_first_n, settings.enable_faults) == (250, 2, True)
    with TestClient(create_app(settings.model_copy(update={"gc_tuning": False}))) as client:
        assert client.get("/health").json()["max_batch"] == 250


def test_defaults_work_without_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ML_API_MAX_BATCH", "ML_API_FAIL_FIRST_N", "ML_API_ENABLE_FAULTS"):
        monkeypatch.delenv(name, raising=False)
    settings = MlApiSettings()
    assert (settings.max_batch, settings.fail_first_n, settings.enable_faults) == (1000, 0, False)


def test_zero_max_batch_is_refused() -> None:
    with pytest.raises(ValueError):
        MlApiSettings(max_batch=0)


def test_openapi_documents_predict_request_and_responses(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    operation = schema["paths"]["/predict"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body["type"] == "array"
    assert body["maxItems"] == 1000
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
