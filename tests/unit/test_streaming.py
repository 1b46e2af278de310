"""StreamProcessor with a fake record stream: commit after processing, pause during outages."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from pipeline.domain.chunks import RecordBatch, records_frame
from pipeline.domain.errors import BrokerMisconfigured, StoreMisconfigured
from pipeline.domain.model import Outcome, RawRecord, SourcePosition, Stage
from pipeline.service_layer.categorise import CategoriseRecords, UseCaseOptions
from pipeline.service_layer.stream import StreamOptions, StreamProcessor
from tests.fakes import (
    FakeCategoriser,
    FakeRecordStream,
    InMemoryStore,
    RecordingObserver,
    rule,
    valid_fields,
)

TOPIC = "tx"
# Multiplier 1 s: tenacity's jitter is uniform in [0, 1 s], so the n-th sleep lies in
# [2**(n-1), 2**(n-1) + 1] and consecutive sleeps cannot overlap.
OPTIONS = StreamOptions(
    max_records=100, max_wait_s=0.0, backoff_initial_s=1.0, backoff_max_s=1000.0
)


def record(partition: int, offset: int, **changes: object) -> RawRecord:
    source_id = f"p{partition}-o{offset}"
    return RawRecord(
        SourcePosition(TOPIC, partition=partition, offset=offset),
        f"raw {source_id}",
        valid_fields(source_id, **changes),
        key=source_id,
    )


def partitions(sizes: dict[int, int]) -> dict[int, list[RawRecord]]:
    return {p: [record(p, o) for o in range(n)] for p, n in sizes.items()}


def use_case(store: InMemoryStore, categoriser: FakeCategoriser) -> CategoriseRecords:
    # Stream mode, as the stream entry point builds it: a retried batch is not "duplicate".
    return CategoriseRecords(
        categoriser, store, store, options=UseCaseOptions(reject_duplicate_ids=False)
    )


def processor(
    stream: FakeRecordStream,
    process: Callable[[Sequence[RawRecord]], Outcome],
    options: StreamOptions = OPTIONS,
    observer: RecordingObserver | None = None,
) -> StreamProcessor:
    built = StreamProcessor(stream, process, options, observer)
    stream.on_drained = built.stop.set
    return built


def stored_sources(store: InMemoryStore) -> set[str]:
    return {t.source_id for t in store.transactions.values()}


def test_offsets_are_committed_only_after_process_returned() -> None:
    stream = FakeRecordStream(partitions({0: 3, 1: 2}))
    store = InMemoryStore()
    categorise = use_case(store, FakeCategoriser())
    committed_when_called: list[dict[int, int]] = []

    def process(records: Sequence[RawRecord]) -> Outcome:
        committed_when_called.append(dict(stream.committed))
        return categorise(records)

    total = processor(stream, process).run()

    assert committed_when_called == [{}]
    assert stream.committed == {0: 3, 1: 2}
    assert total.categorised == 5
    assert all(c.category == rule(tid) for tid, c in store.categorisations.items())


def test_each_micro_batch_is_committed_after_its_own_processing() -> None:
    stream = FakeRecordStream(partitions({0: 5}))
    store = InMemoryStore()
    options = StreamOptions(max_records=2, max_wait_s=0.0)

    total = processor(stream, use_case(store, FakeCategoriser()), options).run()

    assert [[r.position.offset for r in batch] for batch in stream.commits] == [[0, 1], [2, 3], [4]]
    assert store.saves == 3
    assert total.read == 5


def test_transient_failure_retries_the_same_batch_and_commits_it_once() -> None:
    stream = FakeRecordStream(partitions({0: 4, 1: 3}))
    store = InMemoryStore()
    categoriser = FakeCategoriser(fail_first=4)
    committed_during_outage: list[dict[int, int]] = []
    stream.on_idle = lambda _n: committed_during_outage.append(dict(stream.committed))

    total = processor(stream, use_case(store, categoriser)).run()

    assert categoriser.calls == [7] * 5  # the same 7 records, four failures then a success
    assert committed_during_outage == [{}] * 4
    assert len(stream.commits) == 1
    assert stream.committed == {0: 4, 1: 3}
    assert (stream.pauses, stream.resumes, stream.paused) == (1, 1, False)
    assert total.categorised == 7
    assert store.dead_letters == {}  # an outage never dead-letters


def test_back_off_sleeps_grow_exponentially_while_the_dependency_is_down() -> None:
    stream = FakeRecordStream(partitions({0: 1}))
    processor(stream, use_case(InMemoryStore(), FakeCategoriser(fail_first=4))).run()

    assert len(stream.sleeps) == 4
    assert stream.sleeps == sorted(stream.sleeps) and len(set(stream.sleeps)) == 4
    for n, seconds in enumerate(stream.sleeps):
        assert 2**n <= seconds <= 2**n + 1


def test_back_off_sleeps_are_capped_at_backoff_max() -> None:
    stream = FakeRecordStream(partitions({0: 1}))
    options = StreamOptions(max_wait_s=0.0, backoff_initial_s=1.0, backoff_max_s=3.0)
    processor(stream, use_case(InMemoryStore(), FakeCategoriser(fail_first=6)), options).run()

    assert len(stream.sleeps) == 6
    assert max(stream.sleeps) <= 3.0
    assert stream.sleeps[-3:] == [3.0, 3.0, 3.0]  # 4, 8 and 16 s (+ jitter) are all capped


def test_poison_message_is_dead_lettered_and_partition_moves_on() -> None:
    poison = record(0, 1, amount="not a number")
    refused = record(0, 2)
    stream = FakeRecordStream({0: [record(0, 0), poison, refused, record(0, 3)]})
    store = InMemoryStore()
    categoriser = FakeCategoriser(refuse={"p0-o2"})

    total = processor(stream, use_case(store, categoriser)).run()

    assert stream.committed == {0: 4}
    assert stored_sources(store) == {"p0-o0", "p0-o3"}
    rejections = {(str(r.position), r.reason, r.stage) for r in store.dead_letters.values()}
    assert rejections == {
        ("tx[0]@1", "invalid_amount", Stage.VALIDATE),
        ("tx[0]@2", "rejected_by_model", Stage.CATEGORISE),
    }
    assert total.rejected == {"invalid_amount": 1, "rejected_by_model": 1}
    assert stream.pauses == 0


def test_stop_during_an_outage_exits_without_committing() -> None:
    stream = FakeRecordStream(partitions({0: 3}))
    store = InMemoryStore()
    categoriser = FakeCategoriser(fail_first=10**6)
    built = processor(stream, use_case(store, categoriser))
    stream.on_idle = lambda n: built.stop.set() if n == 2 else None

    total = built.run()

    assert stream.commits == []
    assert stream.committed == {}
    assert len(stream.sleeps) == 2  # no further attempt once stop is set
    assert len(categoriser.calls) == 3
    assert stream.polls == 1
    assert total.read == 0
    assert store.transactions == {}
    assert store.dead_letters == {}


def test_records_of_a_partition_revoked_during_an_outage_are_dropped() -> None:
    stream = FakeRecordStream(partitions({0: 3, 1: 2}))
    store = InMemoryStore()
    categoriser = FakeCategoriser(fail_first=2)
    stream.on_idle = lambda n: stream.revoke(1) if n == 1 else None
    observer = RecordingObserver()

    total = processor(stream, use_case(store, categoriser), observer=observer).run()

    assert categoriser.calls == [5, 3, 3]  # after the revoke only partition 0 is sent
    assert stored_sources(store) == {"p0-o0", "p0-o1", "p0-o2"}
    assert stream.committed == {0: 3}
    assert total.read == 3
    assert ("batch_done", 3) in observer.events


class FramingRecordStream(FakeRecordStream):
    """Hands over each batch with its frame, as the Kafka consumer does for canonical events."""

    def poll(self, max_records: int, timeout_s: float) -> list[RawRecord]:
        batch = super().poll(max_records, timeout_s)
        return RecordBatch(batch, records_frame(batch)) if batch else batch


def test_a_framed_batch_reaches_the_use_case_whole_and_a_revoked_part_is_reframed() -> None:
    stream = FramingRecordStream(partitions({0: 3, 1: 2}))
    store = InMemoryStore()
    categoriser = FakeCategoriser(fail_first=2)
    stream.on_idle = lambda n: stream.revoke(1) if n == 1 else None
    seen: list[Sequence[RawRecord]] = []
    process = use_case(store, categoriser)

    def recording(records: Sequence[RawRecord]) -> Outcome:
        seen.append(records)
        return process(records)

    processor(stream, recording).run()

    first, *retried = seen
    assert isinstance(first, RecordBatch) and len(first) == 5  # the batch as polled
    assert [type(r) for r in retried] == [list, list]  # partition 1 gone: framed again
    assert stored_sources(store) == {"p0-o0", "p0-o1", "p0-o2"}
    assert stream.committed == {0: 3}


def test_batch_whose_partitions_were_all_revoked_is_dropped_without_report() -> None:
    stream = FakeRecordStream(partitions({1: 2}))
    store = InMemoryStore()
    categoriser = FakeCategoriser(fail_first=1)
    stream.on_idle = lambda _n: stream.revoke(1)
    observer = RecordingObserver()

    total = processor(stream, use_case(store, categoriser), observer=observer).run()

    assert categoriser.calls == [2]  # not retried: nothing owned is left to process
    assert stream.commits == []
    assert store.transactions == {}
    assert total.read == 0
    assert observer.events == [
        ("paused", True),
        ("retrying", "CategoriserUnavailable"),
        ("paused", False),
    ]
    assert stream.resumes == 1


def test_observer_hears_pause_retries_resume_then_batch_done() -> None:
    stream = FakeRecordStream(partitions({0: 2, 1: 1}))
    observer = RecordingObserver()

    processor(
        stream, use_case(InMemoryStore(), FakeCategoriser(fail_first=2)), observer=observer
    ).run()

    assert observer.events == [
        ("paused", True),
        ("retrying", "CategoriserUnavailable"),
        ("retrying", "CategoriserUnavailable"),
        ("paused", False),
        ("batch_done", 3),
    ]


def test_lag_after_the_first_batch_is_reported_to_the_observer() -> None:
    stream = FakeRecordStream(partitions({0: 5, 1: 1}))
    observer = RecordingObserver()
    options = StreamOptions(max_records=2, max_wait_s=0.0)

    processor(stream, use_case(InMemoryStore(), FakeCategoriser()), options, observer).run()

    # Reported at most once a second: the first report follows the first committed batch.
    assert observer.lags[0] == {0: 3, 1: 1}
    assert stream.committed == {0: 5, 1: 1}


def test_run_returns_the_sum_of_every_batch_outcome() -> None:
    stream = FakeRecordStream({0: [record(0, 0), record(0, 1, side="up"), record(0, 2)]})
    options = StreamOptions(max_records=1, max_wait_s=0.0)

    total = processor(stream, use_case(InMemoryStore(), FakeCategoriser()), options).run()

    assert (total.read, total.categorised, total.rejected_total) == (3, 2, 1)
    assert stream.committed == {0: 3}


def test_an_unexpected_error_is_retried_then_without_quarantine_nothing_is_committed() -> None:
    stream = FakeRecordStream(partitions({0: 2}))
    calls: list[int] = []

    def process(records: Sequence[RawRecord]) -> Outcome:
        calls.append(len(records))
        raise RuntimeError("bug in the use case")

    with pytest.raises(RuntimeError, match="bug in the use case"):
        processor(stream, process).run()

    assert calls == [2] * OPTIONS.unexpected_attempts
    assert stream.commits == []
    assert len(stream.sleeps) == OPTIONS.unexpected_attempts - 1


def test_a_record_that_keeps_failing_unexpectedly_alone_is_dead_lettered_and_the_rest_stored() -> (
    None
):
    stream = FakeRecordStream(partitions({0: 5}))
    store = InMemoryStore()
    uc = use_case(store, FakeCategoriser())

    def process(records: Sequence[RawRecord]) -> Outcome:
        if any(r.position.offset == 3 for r in records):
            raise KeyError("a bug this record triggers")
        return uc(records)

    proc = StreamProcessor(stream, process, OPTIONS, quarantine=uc.dead_letter_unexpected)
    stream.on_drained = proc.stop.set
    total = proc.run()

    assert stored_sources(store) == {"p0-o0", "p0-o1", "p0-o2", "p0-o4"}
    [letter] = store.dead_letters.values()
    assert (letter.reason, letter.stage, letter.position.offset) == (
        "unexpected_error",
        Stage.PROCESS,
        3,
    )
    assert "KeyError" in letter.detail
    assert (total.read, total.categorised, total.rejected_total) == (5, 4, 1)
    assert stream.committed == {0: 5}


@pytest.mark.parametrize("error", [StoreMisconfigured("read-only"), BrokerMisconfigured("no DLQ")])
def test_a_systemic_error_pauses_and_retries_like_an_outage_and_dead_letters_nothing(
    error: Exception,
) -> None:
    stream = FakeRecordStream(partitions({0: 3}))
    store = InMemoryStore()
    uc = use_case(store, FakeCategoriser())
    failures = [error, error]

    def process(records: Sequence[RawRecord]) -> Outcome:
        if failures:
            raise failures.pop()
        return uc(records)

    processor(stream, process).run()

    assert stream.pauses == 1 and stream.resumes == 1
    assert len(stream.sleeps) == 2
    assert store.dead_letters == {}
    assert len(store.categorisations) == 3
    assert stream.committed == {0: 3}


def test_a_failed_commit_retries_the_batch_which_is_then_already_stored() -> None:
    """A failed commit re-runs the batch: harmless, because the store is idempotent."""
    stream = FakeRecordStream(partitions({0: 2}))
    store = InMemoryStore()
    stream.fail_commits = {1}

    categoriser = FakeCategoriser()
    total = processor(stream, use_case(store, categoriser)).run()

    # The first run met no stored id, so the re-run is not looked up first: the model is asked
    # again, and inserting finds the rows stored, which are then skipped as already stored.
    assert categoriser.calls == [2, 2]
    assert store.inserts == 2  # the second met the stored rows and wrote nothing
    assert store.saves == 1
    assert len(store.categorisations) == 2
    assert stream.committed == {0: 2}
    assert len(stream.commits) == 1
    assert (total.read, total.already_stored) == (2, 2)  # only the successful attempt counts
