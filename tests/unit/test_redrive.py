"""Redrive with fakes: republish then mark, quarantine worn-out records, never lose one."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pipeline.domain.errors import BrokerUnavailable, ConfigurationError
from pipeline.domain.model import ParkedRecord, Reason
from pipeline.service_layer.redrive import redrive_dead_letters as redrive
from tests.fakes import T0, FakeDeadLetterStore, FakeRepublisher


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

    assert (result.redriven, result.quarantined) == (2, 0)
    assert [r.id for r in republisher.sent] == [1, 2]
    assert store.status == {1: "redriven", 2: "redriven"}


def test_records_at_or_above_max_replays_are_quarantined_not_republished() -> None:
    store = store_with(parked(1, replays=0), parked(2, replays=3), parked(3, replays=5))
    republisher = FakeRepublisher()

    result = redrive(store, republisher, max_replays=3)

    assert (result.redriven, result.quarantined) == (1, 2)
    assert [r.id for r in republisher.sent] == [1]
    assert store.status == {1: "redriven", 2: "quarantined", 3: "quarantined"}


def test_a_second_redrive_is_a_no_op() -> None:
    store = store_with(parked(1), parked(2, replays=3))
    republisher = FakeRepublisher()
    redrive(store, republisher, max_replays=3)
    marks_after_first = list(store.marks)

    second = redrive(store, republisher, max_replays=3)

    assert (second.redriven, second.quarantined) == (0, 0)
    assert [r.id for r in republisher.sent] == [1]
    assert store.marks == marks_after_first  # nothing marked again


def test_when_the_broker_acknowledges_part_only_those_are_marked_and_a_rerun_finishes() -> None:
    store = store_with(parked(1), parked(2, replays=1))
    republisher = FakeRepublisher(fail_first=1, acknowledge=1)

    with pytest.raises(BrokerUnavailable):
        redrive(store, republisher, max_replays=3)

    assert store.status == {1: "redriven", 2: "pending"}
    republisher.sent.clear()

    result = redrive(store, republisher, max_replays=3)

    assert (result.redriven, result.quarantined) == (1, 0)
    assert [r.id for r in republisher.sent] == [2]
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

    result = redrive(
        store, republisher, reason=Reason.REJECTED_BY_MODEL, since=T0 + timedelta(hours=1)
    )

    assert (result.redriven, result.quarantined) == (1, 0)
    assert [r.id for r in republisher.sent] == [3]
    assert store.status == {1: "pending", 2: "pending", 3: "redriven"}


def test_republished_records_keep_key_payload_and_replay_count_for_the_republisher() -> None:
    original = parked(7, replays=2)
    store = store_with(original)
    republisher = FakeRepublisher()

    redrive(store, republisher, max_replays=3)

    # The republisher adds 1 to `replays` itself; redrive must hand over the stored count.
    assert republisher.sent == [original]


def test_pending_dead_letters_are_read_in_pages_and_each_page_marked() -> None:
    store = store_with(*(parked(n) for n in range(1, 2502)))
    republisher = FakeRepublisher()

    result = redrive(store, republisher, page_size=1000)

    assert result.redriven == 2501
    assert store.pages == [1000, 1000, 501, 0]
    assert len(store.marks) == 3


def test_a_dry_run_counts_by_reason_and_changes_nothing() -> None:
    store = store_with(parked(1), parked(2, reason="invalid_amount"), parked(3, replays=9))
    republisher = FakeRepublisher()

    result = redrive(store, republisher, max_replays=3, dry_run=True)

    assert (result.redriven, result.quarantined) == (2, 1)
    assert result.by_reason == {"rejected_by_model": 2, "invalid_amount": 1}
    assert republisher.sent == [] and store.marks == []


def test_a_second_redrive_cannot_run_while_one_holds_the_lock() -> None:
    store = store_with(parked(1))
    with store.exclusive(), pytest.raises(ConfigurationError, match="another redrive"):
        redrive(store, FakeRepublisher())
    assert store.status == {1: "pending"}
