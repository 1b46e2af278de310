"""HttpCategoriser: the ML API over HTTP, with pooled connections, timeouts and retries."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import httpx
import polars as pl
from tenacity import (
    before_sleep_log,
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from pipeline.adapters.http_deadline import deadline, deadline_client
from pipeline.domain.errors import (
    CategoriserContractError,
    CategoriserMisconfigured,
    CategoriserRejected,
    CategoriserUnavailable,
)
from pipeline.domain.fingerprints import amount_text
from pipeline.domain.frames import transactions_frame
from pipeline.domain.model import CATEGORIES, Categorisation, Transaction

logger = logging.getLogger(__name__)

_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
# Answers about the endpoint, never about a record: the wrong URL, auth in the way, a method
# or media type the model does not serve. Every call would get the same.
_SYSTEMIC_STATUS = frozenset({401, 403, 404, 405, 406, 407, 410, 415, 501, 505})


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential back-off with jitter, for transient failures only."""

    attempts: int = 6
    initial_s: float = 0.2
    max_s: float = 5.0
    budget_s: float = 60.0  # no new attempt starts after this long: a stream batch has a deadline


def make_client(base_url: str, timeout_s: float = 10.0, pool: int = 8) -> httpx.Client:
    """A pooled HTTP client for the ML API; the caller closes it."""
    limits = httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
    return deadline_client(base_url, httpx.Timeout(timeout_s), limits)


class HttpCategoriser:
    """Categoriser port over `POST /predict`.

    Transport errors, timeouts, 429 and 5xx are retried (tenacity) and, once the attempts are
    spent, raised as CategoriserUnavailable. 401/403/404/405… say the endpoint is wrong, not a
    record: CategoriserMisconfigured (systemic, never dead-lettered). Any other 4xx (422, 413,
    400) is CategoriserRejected: the use case bisects the batch to find the records at fault.
    An answer that does not give exactly one known category per id sent is a
    CategoriserContractError (bisected too: if every record fails alike, it is systemic).
    """

    def __init__(
        self, client: httpx.Client, policy: RetryPolicy | None = None, total_timeout_s: float = 30.0
    ) -> None:
        self.client = client
        self.policy = policy or RetryPolicy()
        self.total_timeout_s = total_timeout_s
        self._post = retry(
            retry=retry_if_exception_type(CategoriserUnavailable),
            wait=wait_exponential_jitter(multiplier=self.policy.initial_s, max=self.policy.max_s),
            stop=stop_after_attempt(self.policy.attempts) | stop_after_delay(self.policy.budget_s),
            before_sleep=before_sleep_log(logger, logging.WARNING),
            reraise=True,
        )(self._post_once)

    def prepare(self, rows: pl.DataFrame) -> pl.DataFrame:
        """Each row's JSON item, written for the whole chunk at once (polars' cost per call is
        fixed: once per chunk instead of once per 1,000-row request)."""
        return rows.with_columns(request_items(rows).alias(_ITEM))

    def categorise_batch(self, batch: pl.DataFrame) -> pl.DataFrame:
        """`category` and `model_version` per row, in order: the JSON body is written by
        polars and the answer read by polars, no Python object per transaction."""
        if not batch.height:
            return pl.DataFrame(schema=_ANSWER_SCHEMA)
        items = batch[_ITEM] if _ITEM in batch.columns else request_items(batch)
        joined: str = items.str.join(",").item()
        response = self._post(b"[" + joined.encode() + b"]")
        return _check_answer(batch["id"], response.content, response.version)

    def categorise(self, transactions: Sequence[Transaction]) -> list[Categorisation]:
        """One categorisation per transaction object, in the same order (tools and tests)."""
        if not transactions:
            return []
        answer = self.categorise_batch(transactions_frame(transactions))
        return [
            Categorisation(t.id, category, version)
            for t, (category, version) in zip(
                transactions, answer.select("category", "model_version").iter_rows(), strict=True
            )
        ]

    def _post_once(self, body: bytes) -> _Answer:
        """One call, bounded in total (not only per read: an answer trickling its headers or
        its body is cut too) when the client comes from make_client."""
        headers = {"content-type": "application/json"}
        began = time.monotonic()
        try:
            with (
                deadline(self.total_timeout_s),
                self.client.stream("POST", "/predict", content=body, headers=headers) as response,
            ):
                chunks = []
                for chunk in response.iter_bytes():  # any transport: the body is cut here too
                    chunks.append(chunk)
                    if time.monotonic() - began > self.total_timeout_s:
                        raise self._over_time()
        except httpx.TransportError as exc:
            if time.monotonic() - began >= self.total_timeout_s:
                raise self._over_time() from exc
            raise CategoriserUnavailable(f"ML API unreachable: {exc!r}") from exc
        content = b"".join(chunks)
        if response.status_code in _TRANSIENT_STATUS:
            raise CategoriserUnavailable(f"ML API answered {response.status_code}")
        if response.status_code in _SYSTEMIC_STATUS:
            raise CategoriserMisconfigured(
                f"ML API at {_safe_url(response.request.url)} answered "
                f"{response.status_code} {response.reason_phrase}: check ML_API_URL and its access"
            )
        if response.status_code >= 400:
            text = content[:2000].decode("utf-8", "replace")
            raise CategoriserRejected(response.status_code, text)
        return _Answer(response.headers.get("x-model-version", "unknown"), content)

    def _over_time(self) -> CategoriserUnavailable:
        return CategoriserUnavailable(
            f"ML API call took over ML_TOTAL_TIMEOUT_S={self.total_timeout_s:g}s in total"
        )


class _Answer(NamedTuple):
    version: str
    content: bytes


def request_items(batch: pl.DataFrame) -> pl.Series:
    """The /predict item of each row, as JSON text (the body is these joined in a list)."""
    return batch.select(
        pl.struct(
            id="id",
            description="description",
            amount=amount_text(pl.col("amount_cents")),
            timestamp=pl.col("occurred_at").dt.strftime("%Y-%m-%dT%H:%M:%S%.6f+00:00"),
            merchant="merchant",
            operation_type="operation_type",
            side="side",
        ).struct.json_encode()
    ).to_series()


def request_body(batch: pl.DataFrame) -> bytes:
    """The /predict body for a batch: a JSON array of items."""
    joined: str = request_items(batch).str.join(",").item()
    return b"[" + joined.encode() + b"]"


_ITEM = "prepared_ml_item"


def _check_answer(ids: pl.Series, content: bytes, version: str) -> pl.DataFrame:
    """One known category per id sent, whatever the order of the answer."""
    try:
        answer = pl.read_json(io.BytesIO(content), schema=_WIRE_SCHEMA)
    except (pl.exceptions.PolarsError, ValueError, TypeError) as exc:
        raise CategoriserContractError(f"unreadable ML API answer: {exc!r}"[:500]) from exc
    if answer.height != ids.len():
        raise CategoriserContractError(
            f"sent {ids.len()} transactions, got {answer.height} answers"
        )
    if not answer["transaction_id"].equals(ids.rename("transaction_id")):  # not in order sent
        unique = answer["transaction_id"].n_unique()
        if unique != ids.len():
            raise CategoriserContractError(
                f"sent {ids.len()} transactions, got {answer.height} answers ({unique} ids)"
            )
        # Ids were sent in canonical form and come back so; anything else is a contract error.
        frame = pl.DataFrame({"transaction_id": ids})
        answer = frame.join(answer, on="transaction_id", how="left", maintain_order="left")
    # Casting to the categories' enum nulls what is missing or unknown (cheaper than is_in).
    known = answer["category"].cast(_CATEGORY_ENUM, strict=False)
    if known.null_count():
        transaction_id, category = answer.filter(known.is_null()).row(0)
        raise CategoriserContractError(
            f"{transaction_id}: missing or unknown category {category!r}"
        )
    return pl.DataFrame(
        {
            "id": answer["transaction_id"],
            "category": answer["category"],
            "model_version": pl.Series([version], dtype=pl.String).new_from_index(0, answer.height),
        }
    )


_CATEGORY_ENUM = pl.Enum(sorted(CATEGORIES))
_WIRE_SCHEMA = {"transaction_id": pl.String, "category": pl.String}
_ANSWER_SCHEMA = {"id": pl.String, "category": pl.String, "model_version": pl.String}


def _safe_url(url: httpx.URL) -> str:
    """The URL without credentials or query (never print a secret)."""
    return str(url.copy_with(username=None, password=None, query=None))
