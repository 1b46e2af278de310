"""HttpCategoriser against the real ML API over loopback HTTP: answers, retries, 413 bisection."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import suppress
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from pipeline.adapters.ml_http import HttpCategoriser, RetryPolicy, make_client
from pipeline.domain.errors import CategoriserRejected, CategoriserUnavailable
from pipeline.domain.ids import transaction_uuid
from pipeline.domain.model import RawRecord, Side, SourcePosition, Transaction
from pipeline.service_layer.categorise import CategoriseRecords, UseCaseOptions
from tests.fakes import InMemoryStore, rule, valid_fields
from tests.support.services import MlApiProcess

FAST = RetryPolicy(attempts=4, initial_s=0.01, max_s=0.05)


def transactions(n: int, prefix: str = "live") -> list[Transaction]:
    return [
        Transaction(
            transaction_uuid(f"{prefix}-{i}"),
            f"{prefix}-{i}",
            f"Purchase {i}",
            Decimal("-12.34"),
            datetime(2023, 1, 1, 10, 0, tzinfo=UTC),
            "Lidl" if i % 2 else None,
            "payment",
            Side.DEBIT,
        )
        for i in range(n)
    ]


def raw_records(n: int) -> list[RawRecord]:
    return [
        RawRecord(
            SourcePosition("live.csv", line=i + 2),
            f"raw {i}",
            valid_fields(f"bisect-{i}"),
        )
        for i in range(n)
    ]


def pending_faults(ml_api: MlApiProcess) -> int:
    return ml_api.arm_faults(0)


class Recorded:
    """Every request sent and every status answered by a client (httpx event hooks)."""

    def __init__(self, client: httpx.Client) -> None:
        self.requests = 0
        self.statuses: list[int] = []
        client.event_hooks["request"].append(self._request)
        client.event_hooks["response"].append(self._response)

    def _request(self, _request: httpx.Request) -> None:
        self.requests += 1

    def _response(self, response: httpx.Response) -> None:
        self.statuses.append(response.status_code)


@pytest.fixture
def client(ml_api: MlApiProcess) -> Iterator[httpx.Client]:
    with make_client(ml_api.url, timeout_s=10) as built:
        yield built


@pytest.fixture
def small_batch_api(tmp_path: Path) -> Iterator[MlApiProcess]:
    """A dedicated ML API that accepts at most 100 transactions per call."""
    service = MlApiProcess(tmp_path / "ml_api_small.log", ML_API_MAX_BATCH="100").start()
    yield service
    service.stop()


def test_categories_equal_the_rule_and_model_version_is_reported(client: httpx.Client) -> None:
    sent = transactions(250)

    answer = HttpCategoriser(client, FAST).categorise(sent)

    assert [c.transaction_id for c in answer] == [t.id for t in sent]
    assert [c.category for c in answer] == [rule(t.id) for t in sent]
    assert {c.model_version for c in answer} == {"hash-v1"}


def test_empty_batch_makes_no_request(client: httpx.Client) -> None:
    recorded = Recorded(client)

    assert HttpCategoriser(client, FAST).categorise([]) == []
    assert recorded.requests == 0


def test_injected_503s_are_retried_until_the_call_succeeds(
    ml_api: MlApiProcess, client: httpx.Client
) -> None:
    recorded = Recorded(client)
    ml_api.arm_faults(2, 503)

    answer = HttpCategoriser(client, FAST).categorise(transactions(5))

    assert [c.category for c in answer] == [rule(t.id) for t in transactions(5)]
    assert recorded.statuses == [503, 503, 200]
    assert pending_faults(ml_api) == 0


def test_outage_longer_than_the_attempts_raises_categoriser_unavailable(
    ml_api: MlApiProcess, client: httpx.Client
) -> None:
    recorded = Recorded(client)
    ml_api.arm_faults(FAST.attempts, 503)

    with pytest.raises(CategoriserUnavailable, match="503"):
        HttpCategoriser(client, FAST).categorise(transactions(3))

    assert recorded.statuses == [503] * FAST.attempts
    assert pending_faults(ml_api) == 0


def test_a_4xx_other_than_429_is_rejected_at_once_without_retry(
    ml_api: MlApiProcess, client: httpx.Client
) -> None:
    recorded = Recorded(client)
    ml_api.arm_faults(1, 422)

    with pytest.raises(CategoriserRejected) as raised:
        HttpCategoriser(client, FAST).categorise(transactions(3))

    assert raised.value.status == 422
    assert recorded.statuses == [422]


def test_429_is_retried_like_an_outage(ml_api: MlApiProcess, client: httpx.Client) -> None:
    recorded = Recorded(client)
    ml_api.arm_faults(1, 429)

    answer = HttpCategoriser(client, FAST).categorise(transactions(2))

    assert len(answer) == 2
    assert recorded.statuses == [429, 200]


def test_batch_over_the_api_limit_is_bisected_until_every_record_is_categorised(
    small_batch_api: MlApiProcess,
) -> None:
    store = InMemoryStore()
    with make_client(small_batch_api.url) as small_client:
        recorded = Recorded(small_client)
        use_case = CategoriseRecords(
            HttpCategoriser(small_client, FAST),
            store,
            store,
            options=UseCaseOptions(ml_batch_size=1000),
        )

        outcome = use_case(raw_records(1000))

    assert (outcome.read, outcome.valid, outcome.categorised) == (1000, 1000, 1000)
    assert store.dead_letters == {}
    assert outcome.rejected_total == 0
    assert all(c.category == rule(tid) for tid, c in store.categorisations.items())
    assert {c.model_version for c in store.categorisations.values()} == {"hash-v1"}
    # 1000 → 2×500 → 4×250 → 8×125 are refused (15 × 413); 16 halves of 62/63 fit.
    assert Counter(recorded.statuses) == {413: 15, 200: 16}


def test_unreachable_api_raises_categoriser_unavailable_after_the_configured_attempts() -> None:
    policy = RetryPolicy(attempts=3, initial_s=0.01, max_s=0.02)
    with make_client("http://127.0.0.1:9", timeout_s=2) as unreachable:
        recorded = Recorded(unreachable)

        with pytest.raises(CategoriserUnavailable, match="unreachable"):
            HttpCategoriser(unreachable, policy).categorise(transactions(1))

    assert recorded.requests == 3
    assert recorded.statuses == []


class TricklingServer:
    """A hostile HTTP peer on loopback: reads the request, then sends its answer one byte at
    a time, each well within the per-read timeout (what a Toxiproxy slicer does)."""

    BODY = b"[" + b" " * 198 + b"]"
    ANSWER = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 200\r\n"
        b"x-padding: " + b"p" * 200 + b"\r\n\r\n" + BODY
    )

    def __init__(self, headers_at_once: bool) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._headers_at_once = headers_at_once
        self._stop = threading.Event()
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        connection, _ = self._listener.accept()
        with connection:
            connection.recv(65536)
            answer = self.ANSWER
            if self._headers_at_once:
                head, _, body = answer.partition(b"\r\n\r\n")
                connection.sendall(head)  # all but the blank line: the body trickles
                answer = b"\r\n\r\n" + body
            for byte in answer:
                if self._stop.wait(0.1):
                    return
                with suppress(OSError):
                    connection.sendall(bytes([byte]))

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        self._thread.join(5)


@pytest.mark.parametrize("headers_at_once", [False, True], ids=["headers", "body"])
def test_a_trickling_answer_is_cut_at_the_total_timeout(headers_at_once: bool) -> None:
    server = TricklingServer(headers_at_once)
    try:
        with make_client(server.url, timeout_s=10) as slow:
            categoriser = HttpCategoriser(slow, RetryPolicy(attempts=1), total_timeout_s=1.0)
            began = time.monotonic()

            with pytest.raises(CategoriserUnavailable, match="ML_TOTAL_TIMEOUT_S=1s"):
                categoriser.categorise(transactions(1))

            # The whole answer takes over 20 s to trickle; each byte arrives within 0.1 s.
            assert time.monotonic() - began < 3
    finally:
        server.close()
