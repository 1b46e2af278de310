"""How POST /predict rejects oversized batches and invalid bodies or items."""

import uuid
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient


def test_batch_above_maximum_is_413_with_clear_message(
    make_client: Callable[..., TestClient], make_item: Callable[..., dict[str, Any]]
) -> None:
    client = make_client(max_batch=3)
    response = client.post("/predict", json=[make_item() for _ in range(4)])
    assert response.status_code == 413
    assert response.json() == {"detail": "batch of 4 items exceeds the maximum of 3"}


def test_default_maximum_is_1000(
    client: TestClient, make_item: Callable[..., dict[str, Any]]
) -> None:
    item = make_item()
    response = client.post("/predict", json=[item] * 1500)
    assert response.status_code == 413
    assert response.json() == {"detail": "batch of 1500 items exceeds the maximum of 1000"}


def test_oversize_wins_over_invalid_items(
    make_client: Callable[..., TestClient], make_item: Callable[..., dict[str, Any]]
) -> None:
    client = make_client(max_batch=2)
    response = client.post("/predict", json=[make_item(amount="x") for _ in range(3)])
    assert response.status_code == 413


def test_invalid_item_is_422_naming_index_id_and_field(
    client: TestClient, make_item: Callable[..., dict[str, Any]]
) -> None:
    bad_id = str(uuid.uuid4())
    items = [make_item(), make_item(), make_item(), make_item(id=bad_id, amount="twelve")]
    response = client.post("/predict", json=items)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["index"] == 3
    assert error["id"] == bad_id
    assert error["field"] == "amount"
    assert error["message"]


def test_every_invalid_item_is_listed(
    client: TestClient, make_item: Callable[..., dict[str, Any]]
) -> None:
    missing_side = make_item()
    del missing_side["side"]
    items = [
        make_item(timestamp="yesterday"),
        make_item(),
        missing_side,
        make_item(description=None),
        "not an object",
    ]
    response = client.post("/predict", json=items)
    assert response.status_code == 422
    located = [(e["index"], e["field"]) for e in response.json()["detail"]]
    assert located == [(0, "timestamp"), (2, "side"), (3, "description"), (4, None)]


def test_invalid_uuid_is_422_on_the_id_field_and_echoes_it(
    client: TestClient, make_item: Callable[..., dict[str, Any]]
) -> None:
    response = client.post("/predict", json=[make_item(id="not-a-uuid")])
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert (error["index"], error["id"], error["field"]) == (0, "not-a-uuid", "id")
    assert "UUID" in error["message"]


def test_missing_id_is_reported_with_null_id(
    client: TestClient, make_item: Callable[..., dict[str, Any]]
) -> None:
    item = make_item()
    del item["id"]
    response = client.post("/predict", json=[item])
    assert response.json()["detail"] == [
        {"index": 0, "id": None, "field": "id", "message": "Field required"}
    ]


def test_non_finite_or_boolean_amount_is_rejected(
    client: TestClient, make_item: Callable[..., dict[str, Any]]
) -> None:
    response = client.post("/predict", json=[make_item(amount="NaN"), make_item(amount=True)])
    assert response.status_code == 422
    assert [(e["index"], e["field"]) for e in response.json()["detail"]] == [
        (0, "amount"),
        (1, "amount"),
    ]


def test_body_that_is_not_a_list_is_422(client: TestClient, make_item: Callable[..., Any]) -> None:
    response = client.post("/predict", json=make_item())
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {
            "index": None,
            "id": None,
            "field": None,
            "message": "body must be a JSON list of transactions",
        }
    ]


def test_body_that_is_not_json_is_422(client: TestClient) -> None:
    response = client.post(
        "/predict", content=b'[{"id": ', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["index"] is None
    assert error["message"].startswith("body is not a valid JSON list")


def test_string_over_max_length_is_422_naming_index_id_and_field(
    make_client: Callable[..., TestClient], make_item: Callable[..., dict[str, Any]]
) -> None:
    client = make_client(max_string_length=40)
    bad_id = str(uuid.uuid4())
    response = client.post("/predict", json=[make_item(), make_item(id=bad_id, merchant="m" * 41)])
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {
            "index": 1,
            "id": bad_id,
            "field": "merchant",
            "message": "String should have at most 40 characters",
        }
    ]


def test_every_text_field_is_length_checked(
    make_client: Callable[..., TestClient], make_item: Callable[..., dict[str, Any]]
) -> None:
    client = make_client(max_string_length=40)
    fields = ["description", "merchant", "operation_type", "side"]
    response = client.post("/predict", json=[make_item(**{f: "x" * 41}) for f in fields])
    assert response.status_code == 422
    located = [(e["index"], e["field"]) for e in response.json()["detail"]]
    assert located == list(enumerate(fields))


def test_default_max_string_length_is_1000_characters_not_bytes(
    client: TestClient, make_item: Callable[..., dict[str, Any]]
) -> None:
    # "é" is two bytes in UTF-8: a limit counted in bytes would refuse the first item.
    items = [make_item(description="é" * 1000), make_item(description="é" * 1001)]
    response = client.post("/predict", json=items)
    assert response.status_code == 422
    located = [(e["index"], e["field"]) for e in response.json()["detail"]]
    assert located == [(1, "description")]


def test_over_long_strings_are_listed_with_other_item_errors(
    make_client: Callable[..., TestClient], make_item: Callable[..., dict[str, Any]]
) -> None:
    client = make_client(max_string_length=40)
    items = [make_item(amount="x"), make_item(side="s" * 41), make_item()]
    response = client.post("/predict", json=items)
    located = [(e["index"], e["field"]) for e in response.json()["detail"]]
    assert located == [(0, "amount"), (1, "side")]


def test_huge_list_of_junk_is_413_without_an_error_per_item(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(max_batch=10)
    body = b"[" + b"1," * 200_000 + b"1]"
    response = client.post("/predict", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json() == {"detail": "batch of 200001 items exceeds the maximum of 10"}
