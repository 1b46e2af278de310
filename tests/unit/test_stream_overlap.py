"""StreamProcessor with the use case in halves: a batch is written while the next is prepared.

Offsets are committed in order, each batch's after its own write; any failure sends the
batches in hand through the one-at-a-time path, so what ends stored and committed is what it
would be without the overlap.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Sequence

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.domain.errors import StoreUnavailable
from pipeline.domain.model import Outcome, RawRecord, Stage
from pipeline.service_layer.stream import StreamOptions, StreamProcessor
from tests.fakes import FakeCategoriser, FakeRecordStream, InMemoryStore, RecordingObserver
from tests.unit.test_streaming import partitions, record, stored_sources, use_case

TWO_AT_A_TIME = StreamOptions(
    max_records=2, max_wait_s=0.0, backoff_initial_s=1.0, backoff_max_s=1000.0
)


class FlakyStore(InMemoryStore):
    """Logs each write with the first source id of its batch and counts every row written per
    source id. The first `fail_first` writes, and those numbered in `fail_calls` (1-based),
    fail as if PostgreSQL were down, before writing anything."""

    def __init__(
        self,
        log: list[tuple[str, str]] | None = None,
        fail_first: int = 0,
        fail_calls: Iterable[int] = (),
    ) -> None:
        super().__init__()
        self.log = [] if log is None else log
        self.fail_first = fail_first
        self.fail_calls = set(fail_calls)
        self.calls = 0
        self.threads: set[str] = set()
        self.written: Counter[str] = Counter()

    def insert_new(self, rows: pl.DataFrame) -> bool:
        self.calls += 1
        if self.calls <= self.fail_first or self.calls in self.fail_calls:
            raise StoreUnavailable(f"fake outage on write {self.calls}")
        self.threads.add(threading.current_thread().name)
        self.log.append(("write", rows["source_id"][0]))
        return super().insert_new(rows)

    def upsert(self, rows: pl.DataFrame) -> None:
        super().upsert(rows)
        self.written.update(rows["source_id"].to_list())


class LoggingStream(FakeRecordStream):
    """Logs each commit with the first source id committed."""

    def __init__(self, sizes: dict[int, int], log: list[tuple[str, str]]) -> None:
        super().__init__(partitions(sizes))
        self.log = log

    def commit(self, records: Sequence[RawRecord]) -> None:
        first = records[0].position
        self.log.append(("commit", f"p{first.partition}-o{first.offset}"))
        super().commit(records)


def overlapped(
    stream: FakeRecordStream,
    store: InMemoryStore,
    categoriser: FakeCategoriser,
    options: StreamOptions = TWO_AT_A_TIME,
    observer: RecordingObserver | None = None,
) -> StreamProcessor:
    uc = use_case(store, categoriser)
    built = StreamProcessor(stream, uc, options, observer, uc.dead_letter_unexpected, halves=uc)
    stream.on_drained = built.stop.set
    return built


def offsets(stream: FakeRecordStream) -> list[list[int | None]]:
    return [[r.position.offset for r in batch] for batch in stream.commits]


def test_each_batch_is_committed_in_order_after_its_own_write_and_the_next_batch_prepared() -> None:
    log: list[tuple[str, str]] = []
    stream = LoggingStream({0: 7}, log)
    store = FlakyStore(log)

    total = overlapped(stream, store, FakeCategoriser()).run()

    assert offsets(stream) == [[0, 1], [2, 3], [4, 5], [6]]
    firsts = ["p0-o0", "p0-o2", "p0-o4", "p0-o6"]
    for first in firsts:
        assert log.index(("write", first)) < log.index(("commit", first))
    assert [source for event, source in log if event == "commit"] == firsts
    assert stream.polls == 5  # four batches, then the empty poll that finishes the last write
    assert store.threads == {"store_0"}  # the writer thread, not the polling one
    assert stored_sources(store) == {f"p0-o{n}" for n in range(7)}
    assert (total.read, total.categorised) == (7, 7)


def test_a_write_that_fails_is_retried_alone_and_the_next_batch_after_it() -> None:
    log: list[tuple[str, str]] = []
    stream = LoggingStream({0: 6}, log)
    store = FlakyStore(log, fail_first=2)
    committed_during_outage: list[dict[int, int]] = []
    stream.on_idle = lambda _n: committed_during_outage.append(dict(stream.committed))

    total = overlapped(stream, store, FakeCategoriser()).run()

    # Failed once overlapped, once alone: one back-off, nothing committed during it.
    assert committed_during_outage == [{}]
    assert offsets(stream) == [[0, 1], [2, 3], [4, 5]]
    assert (stream.pauses, stream.resumes, stream.paused) == (1, 1, False)
    assert stored_sources(store) == {f"p0-o{n}" for n in range(6)}
    assert store.dead_letters == {}  # an outage never dead-letters
    assert (total.read, total.categorised, total.already_stored) == (6, 6, 0)


def test_a_batch_whose_model_call_fails_waits_for_the_write_before_it() -> None:
    log: list[tuple[str, str]] = []
    stream = LoggingStream({0: 6}, log)
    store = FlakyStore(log)
    categoriser = FakeCategoriser(fail_calls={2})  # the second batch, while the first is written

    total = overlapped(stream, store, categoriser).run()

    assert offsets(stream) == [[0, 1], [2, 3], [4, 5]]
    assert log.index(("commit", "p0-o0")) < log.index(("write", "p0-o2"))
    assert categoriser.calls == [2, 2, 2, 2]  # the second batch was asked for again, alone
    assert stream.pauses == 0  # that second attempt succeeded: no back-off
    assert (total.read, total.categorised) == (6, 6)


class RevokingStream(FakeRecordStream):
    """Partition 1 is revoked during the second poll, while the first batch is written."""

    def poll(self, max_records: int, timeout_s: float) -> list[RawRecord]:
        if self.polls == 1:
            self.revoke(1)
        return super().poll(max_records, timeout_s)


def test_a_partition_revoked_while_its_batch_is_written_is_not_committed() -> None:
    stream = RevokingStream(partitions({0: 2, 1: 2}))
    store = InMemoryStore()
    observer = RecordingObserver()
    options = StreamOptions(max_records=4, max_wait_s=0.0)

    total = overlapped(stream, store, FakeCategoriser(), options, observer).run()

    # Stored, but partition 1 is another consumer's now: it replays them, stored, a no-op.
    assert stored_sources(store) == {"p0-o0", "p0-o1", "p1-o0", "p1-o1"}
    assert stream.committed == {0: 2}
    assert total.categorised == 4
    assert observer.events == [("batch_done", 4)]


def test_a_failed_commit_re_runs_its_batch_alone_while_the_next_one_is_written() -> None:
    stream = FakeRecordStream(partitions({0: 4}))
    store = InMemoryStore()
    stream.fail_commits = {1}

    total = overlapped(stream, store, FakeCategoriser()).run()

    assert offsets(stream) == [[0, 1], [2, 3]]  # the re-run first batch, then the second
    assert store.saves == 2  # each batch written once: the re-run found its rows stored
    assert stream.committed == {0: 4}
    # Only what was committed counts: the first batch as its re-run saw it.
    assert (total.read, total.categorised, total.already_stored) == (4, 2, 2)


def test_stop_during_an_outage_of_the_write_leaves_the_batches_in_hand_uncommitted() -> None:
    log: list[tuple[str, str]] = []
    stream = LoggingStream({0: 4}, log)
    store = FlakyStore(log, fail_first=10**6)
    built = overlapped(stream, store, FakeCategoriser())
    stream.on_idle = lambda n: built.stop.set() if n == 2 else None

    total = built.run()  # returns: the loop stops, it does not raise

    assert stream.commits == []
    assert stream.polls == 2  # the second batch was polled, prepared, and not committed
    assert store.transactions == {}
    assert total.read == 0


def test_a_record_whose_write_keeps_failing_unexpectedly_is_dead_lettered_alone() -> None:
    class BuggyStore(InMemoryStore):
        def insert_new(self, rows: pl.DataFrame) -> bool:
            if "p0-o3" in rows["source_id"].to_list():
                raise KeyError("a bug this record triggers")
            return super().insert_new(rows)

    stream = FakeRecordStream({0: [record(0, n) for n in range(6)]})
    store = BuggyStore()

    total = overlapped(stream, store, FakeCategoriser()).run()

    assert stored_sources(store) == {"p0-o0", "p0-o1", "p0-o2", "p0-o4", "p0-o5"}
    [letter] = store.dead_letters.values()
    assert (letter.reason, letter.stage, letter.position.offset) == (
        "unexpected_error",
        Stage.PROCESS,
        3,
    )
    assert stream.committed == {0: 6}
    assert (total.read, total.categorised, total.rejected_total) == (6, 5, 1)


def final_state(
    overlap: bool, sizes: dict[int, int], poison: set[str], faults: dict[str, set[int]], size: int
) -> tuple[FakeRecordStream, FlakyStore, Outcome]:
    source = {
        p: [
            record(p, o, amount="not a number") if f"p{p}-o{o}" in poison else record(p, o)
            for o in range(n)
        ]
        for p, n in sizes.items()
    }
    stream = FakeRecordStream(source)
    store = FlakyStore(fail_calls=faults["write"])
    stream.fail_commits = faults["commit"]
    uc = use_case(store, FakeCategoriser(fail_calls=faults["model"]))
    options = StreamOptions(max_records=size, max_wait_s=0.0, backoff_initial_s=0.01)
    built = StreamProcessor(
        stream, uc, options, None, uc.dead_letter_unexpected, halves=uc if overlap else None
    )
    # Stop once everything is committed (a stop during an outage would leave a batch for
    # replay, tested above): with the overlap a poll finds nothing while a batch is in hand.
    stream.on_drained = lambda: built.stop.set() if stream.committed == sizes else None
    return stream, store, built.run()


def in_order(commits: list[list[RawRecord]]) -> bool:
    """Each partition's committed offsets only move forward, commit after commit."""
    highest: dict[int | None, int] = {}
    for batch in commits:
        positions = [(r.position.partition, r.position.offset or 0) for r in batch]
        if any(offset <= highest.get(partition, -1) for partition, offset in positions):
            return False
        for partition, offset in positions:
            highest[partition] = max(offset, highest.get(partition, -1))
    return True


FAULTS = st.fixed_dictionaries(
    {kind: st.sets(st.integers(1, 12), max_size=4) for kind in ("write", "commit", "model")}
)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    sizes=st.dictionaries(st.integers(0, 2), st.integers(1, 9), min_size=1),
    poison_offsets=st.sets(st.integers(0, 8), max_size=3),
    faults=FAULTS,
    size=st.integers(1, 6),
)
def test_any_faults_end_in_the_same_state_with_or_without_overlap(
    sizes: dict[int, int], poison_offsets: set[int], faults: dict[str, set[int]], size: int
) -> None:
    """Whatever fails and when, every record ends stored once or dead-lettered, every offset is
    committed in order, and the overlap ends exactly where the one-at-a-time loop does."""
    poison = {f"p{p}-o{o}" for p, n in sizes.items() for o in poison_offsets if o < n}
    valid = {f"p{p}-o{o}" for p, n in sizes.items() for o in range(n)} - poison
    ends = {}
    for overlap in (False, True):
        stream, store, total = final_state(overlap, sizes, poison, faults, size)
        assert stream.committed == sizes
        assert in_order(stream.commits)
        assert set(store.written) == valid and set(store.written.values()) <= {1}
        letters = {
            f"p{r.position.partition}-o{r.position.offset}" for r in store.dead_letters.values()
        }
        assert letters == poison
        assert total.read == sum(sizes.values())
        assert total.categorised + total.already_stored == len(valid)
        assert total.rejected_total == len(poison)
        ends[overlap] = (set(store.transactions), dict(stream.committed))
    assert ends[True] == ends[False]
