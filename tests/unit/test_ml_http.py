import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from pipeline.adapters.ml_http import HttpCategoriser, RetryPolicy
from pipeline.domain.errors import (
    CategoriserContractError,
    CategoriserMisconfigured,
    CategoriserRejected,
    CategoriserUnavailable,
)
from pipeline.domain.ids import transaction_uuid
from pipeline.domain.model import Side, Transaction
from tests.fakes import rule

FAST = RetryPolicy(attempts=4, initial_s=0.001, max_s=0.002)


def transactions(n: int) -> list[Transaction]:
    return [
        Transaction(
            transaction_uuid(str(i)),
            str(i),
            "d",
            Decimal("-1.50"),
            datetime(2023, 1, 1, tzinfo=UTC),
            None,
            "payment",
            Side.DEBIT,
        )
        for i in range(n)
    ]


def answer(request: httpx.Request) -> httpx.Response:
    items = json.loads(request.content)
    body = [{"transaction_id": i["id"], "category": rule(transaction_uuid(i["id"]))} for i in items]
    return httpx.Response(200, json=body, headers={"x-model-version": "hash-v1"})


def categoriser(handler, policy: RetryPolicy = FAST) -> HttpCategoriser:
    client = httpx.Client(base_url="http://ml", transport=httpx.MockTransport(handler))
    return HttpCategoriser(client, policy)


def flaky(failures: list[httpx.Response | Exception]):
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if failures:
            failure = failures.pop(0)
            if isinstance(failure, Exception):
                raise failure
            return failure
        return answer(request)

    return handler, calls


def test_payload_has_the_contract_fields_and_answer_keeps_order() -> None:
    seen: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.extend(json.loads(request.content))
        return answer(request)

    result = categoriser(handler).categorise(transactions(3))
    assert set(seen[0]) == {
        "id",
        "description",
        "amount",
        "timestamp",
        "merchant",
        "operation_type",
        "side",
    }
    assert seen[0]["amount"] == "-1.50" and seen[0]["merchant"] is None
    assert [c.transaction_id for c in result] == [t.id for t in transactions(3)]
    assert {c.model_version for c in result} == {"hash-v1"}


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(503),
        httpx.Response(429),
        httpx.Response(500),
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
    ],
)
def test_transient_failures_are_retried_then_succeed(failure) -> None:
    handler, calls = flaky([failure, failure])
    assert len(categoriser(handler).categorise(transactions(2))) == 2
    assert len(calls) == 3


def test_transient_failure_beyond_the_attempts_raises_unavailable() -> None:
    handler, calls = flaky([httpx.Response(503)] * 10)
    with pytest.raises(CategoriserUnavailable):
        categoriser(handler).categorise(transactions(1))
    assert len(calls) == FAST.attempts


@pytest.mark.parametrize("status", [400, 413, 422])
def test_client_errors_are_permanent_and_not_retried(status: int) -> None:
    handler, calls = flaky([httpx.Response(status, json={"detail": "bad item"})] * 3)
    with pytest.raises(CategoriserRejected) as caught:
        categoriser(handler).categorise(transactions(1))
    assert caught.value.status == status
    assert len(calls) == 1


@pytest.mark.parametrize(
    "body",
    [
        [],  # missing answers
        [{"transaction_id": str(transaction_uuid("0")), "category": "Gambling"}],  # unknown
        [{"transaction_id": str(transaction_uuid("9")), "category": "Rent"}],  # wrong id
        {"not": "a list"},
    ],
)
def test_an_answer_that_breaks_the_contract_fails_the_call(body) -> None:
    with pytest.raises(CategoriserContractError):
        categoriser(lambda r: httpx.Response(200, json=body)).categorise(transactions(1))


@pytest.mark.parametrize("status", [401, 403, 404, 405, 407])
def test_answers_about_the_endpoint_are_systemic_not_retried_and_name_no_secret(
    status: int,
) -> None:
    handler, calls = flaky([httpx.Response(status, text="<html>nope</html>")] * 3)
    client = httpx.Client(
        base_url="http://user:s3cret@ml?token=abc", transport=httpx.MockTransport(handler)
    )
    with pytest.raises(CategoriserMisconfigured) as caught:
        HttpCategoriser(client, FAST).categorise(transactions(1))
    assert str(status) in str(caught.value)
    assert "s3cret" not in str(caught.value) and "abc" not in str(caught.value)
    assert len(calls) == 1


def test_a_trickling_answer_is_cut_at_the_total_timeout_not_only_per_read() -> None:
    def trickle(_request: httpx.Request) -> httpx.Response:
        def body() -> Iterator[bytes]:
            for byte in b'[{"transaction_id": "x", "category": "Rent"}]':
                time.sleep(0.05)  # each read is quick, the whole answer is not
                yield bytes([byte])

        return httpx.Response(200, content=body())

    client = httpx.Client(base_url="http://ml", transport=httpx.MockTransport(trickle))
    categoriser = HttpCategoriser(client, RetryPolicy(attempts=1), total_timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(CategoriserUnavailable, match="in total"):
        categoriser.categorise(transactions(1))
    assert time.monotonic() - started < 1.0


def test_no_retry_starts_after_the_retry_budget() -> None:
    handler, calls = flaky([httpx.Response(503)] * 50)
    policy = RetryPolicy(attempts=50, initial_s=0.05, max_s=0.05, budget_s=0.2)
    with pytest.raises(CategoriserUnavailable):
        categoriser(handler, policy).categorise(transactions(1))
    assert 2 <= len(calls) < 10
