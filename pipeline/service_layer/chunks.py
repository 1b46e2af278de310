"""Feeding chunks to the categorise use case, with the stages overlapped."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from typing import TYPE_CHECKING, TypeVar

from pipeline.domain.chunks import RawChunk, chunk_of_records
from pipeline.domain.model import Outcome, RawRecord

if TYPE_CHECKING:
    from pipeline.service_layer.categorise import CategoriseRecords, PreparedChunk

T = TypeVar("T")


def run_chunks(
    chunks: Iterable[RawChunk],
    use_case: CategoriseRecords,
    on_chunk: Callable[[Outcome], None] | None = None,
) -> Outcome:
    """Feed chunks to the use case and add up the outcomes.

    Three stages overlap, one thread each: reading and validating chunk N+2 (this thread),
    categorising chunk N+1 (the ML API) and storing chunk N (PostgreSQL), so this process,
    the ML API and PostgreSQL work at the same time. Each stage takes the chunks in order, so
    chunks are stored and complete in order; on an error the chunks already handed on finish
    or fail, none is skipped and none after it is stored.
    """
    total = Outcome()
    with (
        ThreadPoolExecutor(1, "categorise") as model,
        ThreadPoolExecutor(1, "save") as saver,
    ):
        categorising: Future[PreparedChunk] | None = None
        saving: Future[Outcome] | None = None

        def hand_on() -> Future[Outcome] | None:
            """The chunk being categorised goes on to be saved, once the one before is."""
            if categorising is None:
                return saving
            categorised = categorising.result()
            if saving is not None:
                _done(saving.result(), total, on_chunk)
            return saver.submit(use_case.save, categorised)

        for chunk in chunks:
            prepared = use_case.prepare(chunk)
            saving = hand_on()
            categorising = model.submit(use_case.categorise, prepared)
        saving = hand_on()
        if saving is not None:
            _done(saving.result(), total, on_chunk)
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
