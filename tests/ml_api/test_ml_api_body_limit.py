"""POST /predict refuses bodies over ML_API_MAX_BODY_BYTES before reading them whole."""

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import Request
from fastapi.testclient import TestClient
from starlette.types import Message

from ml_api.body import read_body
from ml_api.errors import BodyTooLargeError

JSON = {"Content-Type": "application/json"}


def chunked(body: bytes, size: int) -> Iterator[bytes]:
    """Yield ``body`` in pieces, which makes httpx send it chunked (no Content-Length)."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


def test_declared_length_over_the_cap_is_413_before_the_body_is_read(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(max_body_bytes=1024)
    # The body is a valid empty batch: only the declared length can cause the refusal.
    response = client.post("/predict", content=b"[]", headers={**JSON, "Content-Length": "2048"})
    assert response.status_code == 413
    assert response.json() == {
        "detail": "request body of 2048 bytes exceeds the maximum of 1024 bytes"
    }
    assert response.headers["X-Model-Version"] == "hash-v1"


def test_chunked_body_over_the_cap_is_413(
    make_client: Callable[..., TestClient], make_item: Callable[..., dict[str, Any]]
) -> None:
    body = json.dumps([make_item() for _ in range(10)]).encode()
    assert 1024 < len(body) < 4096
    response = make_client(max_body_bytes=1024).post(
        "/predict", content=chunked(body, 256), headers=JSON
    )
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert response.status_code == 413
    assert response.json() == {"detail": "request body exceeds the maximum of 1024 bytes"}


def test_chunked_body_under_the_cap_is_served(
    make_client: Callable[..., TestClient], make_item: Callable[..., dict[str, Any]]
) -> None:
    body = json.dumps([make_item() for _ in range(10)]).encode()
    response = make_client(max_body_bytes=4096).post(
        "/predict", content=chunked(body, 256), headers=JSON
    )
    assert response.status_code == 200
    assert len(response.json()) == 10


def test_body_of_exactly_the_cap_is_served(
    make_client: Callable[..., TestClient], make_item: Callable[..., dict[str, Any]]
) -> None:
    body = json.dumps([make_item()]).encode()
    response = make_client(max_body_bytes=len(body)).post("/predict", content=body, headers=JSON)
    assert response.status_code == 200


def test_full_batch_of_longest_strings_fits_the_default_cap(
    client: TestClient, make_item: Callable[..., dict[str, Any]]
) -> None:
    longest = "x" * 1000
    items = [
        make_item(description=longest, merchant=longest, operation_type=longest, side=longest)
        for _ in range(1000)
    ]
    body = json.dumps(items).encode()
    assert len(body) > 4_000_000
    response = client.post("/predict", content=body, headers=JSON)
    assert response.status_code == 200
    assert len(response.json()) == 1000


def test_body_cap_is_checked_before_injected_faults_are_spent(
    make_client: Callable[..., TestClient], make_item: Callable[..., dict[str, Any]]
) -> None:
    client = make_client(max_body_bytes=64, fail_first_n=1)
    refused = client.post("/predict", content=b"[]", headers={**JSON, "Content-Length": "65"})
    assert refused.status_code == 413
    assert client.post("/predict", json=[]).status_code == 503


class FakeReceive:
    """ASGI ``receive`` that hands out body chunks and counts how many were asked for."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.calls = 0

    async def __call__(self) -> Message:
        index = self.calls
        self.calls += 1
        if index >= len(self.chunks):
            raise AssertionError("body read past its end")
        more = index < len(self.chunks) - 1
        return {"type": "http.request", "body": self.chunks[index], "more_body": more}


def request_with(receive: FakeReceive, headers: dict[str, str]) -> Request:
    """A real Starlette request whose body comes from ``receive``."""
    raw = [(name.lower().encode(), value.encode("latin-1")) for name, value in headers.items()]
    scope = {"type": "http", "method": "POST", "path": "/predict", "headers": raw}
    return Request(scope, receive)


def test_reader_refuses_declared_length_without_reading_a_byte() -> None:
    receive = FakeReceive([b"[]"])
    request = request_with(receive, {"Content-Length": "11"})
    with pytest.raises(BodyTooLargeError) as refused:
        asyncio.run(read_body(request, max_bytes=10))
    assert (receive.calls, refused.value.declared) == (0, 11)


def test_reader_stops_at_the_first_chunk_past_the_cap() -> None:
    receive = FakeReceive([b"abcd"] * 100)
    with pytest.raises(BodyTooLargeError):
        asyncio.run(read_body(request_with(receive, {}), max_bytes=10))
    assert receive.calls == 3  # 4 + 4 + 4 bytes: the third chunk crosses 10


def test_reader_counts_bytes_even_when_the_declared_length_lies() -> None:
    receive = FakeReceive([b"abcd"] * 100)
    with pytest.raises(BodyTooLargeError):
        asyncio.run(read_body(request_with(receive, {"Content-Length": "4"}), max_bytes=10))
    assert receive.calls == 3


@pytest.mark.parametrize("length", ["", "-1", "1e9", "\u00b2", "9" * 5000], ids=repr)
def test_reader_ignores_malformed_declared_lengths_and_counts_instead(length: str) -> None:
    receive = FakeReceive([b"ab", b"cd"])
    request = request_with(receive, {"Content-Length": length})
    assert asyncio.run(read_body(request, max_bytes=10)) == b"abcd"
    assert receive.calls == 2
