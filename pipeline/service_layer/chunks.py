"""Feeding chunks to the categorise use case, with the stages overlapped."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from typing import TYPE_CHECKING, TypeVar

from pipeline.domain.chunks import RawChunk, chunk_of_records
from pipeline.domain.model import Outcome, RawRecord

if TYPE_CHECKING:
    from pipeline.service_layer.categorise import CategoriseRecords

T = TypeVar("T")


def run_chunks(
    chunks: Iterable[RawChunk],
    use_case: CategoriseRecords,
    on_chunk: Callable[[Outcome], None] | None = None,
) -> Outcome:
    """Feed chunks to the use case and add up the outcomes.

    Reading and validating chunk N+1 (this thread) overlaps with categorising and storing
    chunk N (one worker thread), so the ML API, PostgreSQL and this process work at the same
    time. Chunks complete in order; on an error the chunk in flight finishes or fails, none is
    skipped.
    """
    total = Outcome()
    with ThreadPoolExecutor(1, "complete") as worker:
        in_flight: Future[Outcome] | None = None
        for chunk in chunks:
            prepared = use_case.prepare(chunk)
            if in_flight is not None:
                _done(in_flight.result(), total, on_chunk)
            in_flight = worker.submit(use_case.complete, prepared)
        if in_flight is not None:
            _done(in_flight.result(), total, on_chunk)
    return total


def run_chunked(
    records: Iterable[RawRecord],
    use_case: CategoriseRecords,
    chunk_size: int,
    on_chunk: Callable[[Outcome], None] | None = None,
) -> Outcome:
    """Records in hand (not a planned file), `chunk_size` at a time, through `run_chunks`."""
    chunks = (chunk_of_records(batch) for batch in batched(records, chunk_size))
    return run_chunks(chunks, use_case, on_chunk)


def _done(outcome: Outcome, total: Outcome, on_chunk: Callable[[Outcome], None] | None) -> None:
    total.add(outcome)
    if on_chunk:
        on_chunk(outcome)


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch
