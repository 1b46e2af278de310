"""Redrive with fakes: republish then mark, quarantine worn-out records, never lose one."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.domain.errors import BrokerUnavailable
from pipeline.domain.model import ParkedRecord
from pipeline.redrive import RedriveResult, redrive

T0 = datetime(2024, 1, 1, tzinfo=UTC)


class FakeDeadLetterStore:
    """DeadLetterStore in a dictionary: status per id, with the reason and time of each."""

    def __init__(self) -> None:
        self.records: dict[int, ParkedRecord] = {}
        self.status: dict[int, str] = {}
        self.parked_at: dict[int, datetime] = {}
        self.marks: list[tuple[list[int], str]] = []

    def park(self, record: ParkedRecord, at: datetime = T0) -> None:
        self.records[record.id] = record
        self.status[record.id] = "pending"
        self.parked_at[record.id] = at

    def pending(self, reason: str | None, since: datetime | None) -> list[ParkedRecord]:
        oldest_first = sorted(self.records, key=lambda record_id: self.parked_at[record_id])
        return [
            self.records[record_id]
            for record_id in oldest_first
            if self.status[record_id] == "pending"
            and (reason is None or self.records[record_id].reason == reason)
            and (since is None or self.parked_at[record_id] >= since)
        ]

    def mark(self, ids: Sequence[int], status: str) -> None:
        self.marks.append((list(ids), status))
        for record_id in ids:
            self.status[record_id] = status


class FakeRepublisher:
    """Republisher that keeps what it was sent; can be down for the next N calls."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.sent: list[ParkedRecord] = []

    def republish(self, records: Sequence[ParkedRecord]) -> None:
        if self.fail_first > 0:
            self.fail_first -= 1
            raise BrokerUnavailable("redrive not acknowledged")
        self.sent.extend(records)


def parked(record_id: int, replays: int = 0, reason: str = "rejected_by_model") -> ParkedRecord:
    return ParkedRecord(record_id, f"k{record_id}", f'{{"id": "{record_id}"}}', reason, replays)


def store_with(*records: ParkedRecord) -> FakeDeadLetterStore:
    store = FakeDeadLetterStore()
    for record in records:
        store.park(record)
    return store


def test_pending_records_below_max_replays_are_republished_then_marked_redriven() -> None:
    store = store_with(parked(1), parked(2, replays=2))
    republisher = FakeRepublisher()

    result = redrive(store, republisher, max_replays=3)

    assert result == RedriveResult(redriven=2, quarantined=0)
    assert [r.id for r in republisher.sent] == [1, 2]
    assert store.status == {1: "redriven", 2: "redriven"}


def test_records_at_or_above_max_replays_are_quarantined_not_republished() -> None:
    store = store_with(parked(1, replays=0), parked(2, replays=3), parked(3, replays=5))
    republisher = FakeRepublisher()

    result = redrive(store, republisher, max_replays=3)

    assert result == RedriveResult(redriven=1, quarantined=2)
    assert [r.id for r in republisher.sent] == [1]
    assert store.status == {1: "redriven", 2: "quarantined", 3: "quarantined"}


def test_a_second_redrive_is_a_no_op() -> None:
    store = store_with(parked(1), parked(2, replays=3))
    republisher = FakeRepublisher()
    redrive(store, republisher, max_replays=3)
    marks_after_first = list(store.marks)

    second = redrive(store, republisher, max_replays=3)

    assert second == RedriveResult(redriven=0, quarantined=0)
    assert [r.id for r in republisher.sent] == [1]
    assert store.marks == marks_after_first  # nothing marked again


def test_when_republish_fails_nothing_is_marked_and_a_rerun_republishes() -> None:
    store = store_with(parked(1), parked(2, replays=1))
    republisher = FakeRepublisher(fail_first=1)

    with pytest.raises(BrokerUnavailable):
        redrive(store, republisher, max_replays=3)

    assert store.marks == []
    assert store.status == {1: "pending", 2: "pending"}

    result = redrive(store, republisher, max_replays=3)

    assert result == RedriveResult(redriven=2, quarantined=0)
    assert [r.id for r in republisher.sent] == [1, 2]
    assert store.status == {1: "redriven", 2: "redriven"}


def test_when_republish_fails_worn_out_records_stay_quarantined_and_others_pending() -> None:
    store = store_with(parked(1), parked(2, replays=3))
    republisher = FakeRepublisher(fail_first=1)

    with pytest.raises(BrokerUnavailable):
        redrive(store, republisher, max_replays=3)

    # Quarantine does not depend on the broker: it was never going to be republished.
    assert store.status == {1: "pending", 2: "quarantined"}
    assert republisher.sent == []


def test_only_dead_letters_of_the_given_reason_and_age_are_redriven() -> None:
    store = FakeDeadLetterStore()
    store.park(parked(1, reason="rejected_by_model"), T0)
    store.park(parked(2, reason="invalid_amount"), T0 + timedelta(hours=2))
    store.park(parked(3, reason="rejected_by_model"), T0 + timedelta(hours=2))
    republisher = FakeRepublisher()

    result = redrive(store, republisher, reason="rejected_by_model", since=T0 + timedelta(hours=1))

    assert result == RedriveResult(redriven=1, quarantined=0)
    assert [r.id for r in republisher.sent] == [3]
    assert store.status == {1: "pending", 2: "pending", 3: "redriven"}


def test_republished_records_keep_key_payload_and_replay_count_for_the_republisher() -> None:
    original = parked(7, replays=2)
    store = store_with(original)
    republisher = FakeRepublisher()

    redrive(store, republisher, max_replays=3)

    # The republisher adds 1 to `replays` itself; redrive must hand over the stored count.
    assert republisher.sent == [original]
