"""Recorded runs (the reject-share gate) and file windows, with fakes."""

from __future__ import annotations

import pytest

from pipeline.domain.errors import CategoriserUnavailable, RunFailed
from pipeline.domain.model import Outcome, RawRecord, Reason, RunKind, RunStatus, SourcePosition
from pipeline.service_layer.categorise import CategoriseRecords
from pipeline.service_layer.files import categorise_file, categorise_window, plan_windows
from pipeline.service_layer.runs import RunRecorder
from tests.fakes import FakeCategoriser, InMemoryFile, InMemoryRunLog, InMemoryStore, valid_fields


def lines(*ids: str, amount: str = "-1,00") -> list[RawRecord]:
    return [
        RawRecord(SourcePosition("f.csv", line=n), f"raw {i}", valid_fields(i, amount=amount))
        for n, i in enumerate(ids, start=2)
    ]


def outcome(read: int, rejected: int) -> Outcome:
    result = Outcome(read=read, valid=read - rejected)
    result.rejected[Reason.INVALID_AMOUNT] = rejected
    return result


def test_a_run_within_the_reject_share_succeeds_with_its_counts() -> None:
    log = InMemoryRunLog()
    with RunRecorder(log, max_reject_share=0.5).recorded(RunKind.BATCH, "f.csv", {}) as total:
        total.add(outcome(10, 5))
    [run] = log.runs.values()
    assert run["status"] is RunStatus.SUCCEEDED
    assert run["outcome"].read == 10
    assert run["error"] is None


def test_a_run_above_the_reject_share_is_recorded_failed_and_raises() -> None:
    log = InMemoryRunLog()
    with (
        pytest.raises(RunFailed, match="60.0% of rows rejected"),
        RunRecorder(log, max_reject_share=0.5).recorded(RunKind.BATCH, "f.csv", {}) as total,
    ):
        total.add(outcome(10, 6))
    [run] = log.runs.values()
    assert run["status"] is RunStatus.FAILED
    assert "above the 50.0% allowed" in run["error"]


def test_a_run_whose_block_raises_is_recorded_failed_with_the_error() -> None:
    log = InMemoryRunLog()
    with (
        pytest.raises(CategoriserUnavailable),
        RunRecorder(log).recorded(RunKind.AIRFLOW, "f.csv", {}),
    ):
        raise CategoriserUnavailable("down")
    [run] = log.runs.values()
    assert run["kind"] is RunKind.AIRFLOW
    assert run["status"] is RunStatus.FAILED
    assert run["error"] == "CategoriserUnavailable: down"


def test_missing_chunks_fail_the_run_even_without_rejects() -> None:
    log = InMemoryRunLog()
    recorder = RunRecorder(log)
    run_id = recorder.open(RunKind.AIRFLOW, "f.csv", {})
    with pytest.raises(RunFailed, match="2 chunk"):
        recorder.close(run_id, outcome(10, 0), missing_chunks=2)
    assert log.runs[run_id]["status"] is RunStatus.FAILED


def test_windows_cover_every_row_once_and_give_the_whole_file_result() -> None:
    ids = [str(i) for i in range(1, 11)] + ["3"]  # the last row repeats id 3
    file = InMemoryFile(lines(*ids))
    plan = plan_windows(file, 4)
    assert [(w.first_line, w.last_line) for w in plan.windows] == [(2, 5), (6, 9), (10, 12)]
    by_window, whole = InMemoryStore(), InMemoryStore()
    totals = Outcome()
    for window in plan.windows:
        use_case = CategoriseRecords(FakeCategoriser(), by_window, by_window)
        totals.add(categorise_window(use_case, file, plan, window, chunk_size=3))
    # each window read only its own rows
    assert file.reads == [(w.start, w.end) for w in plan.windows]
    single = categorise_file(CategoriseRecords(FakeCategoriser(), whole, whole), file, 3)
    assert totals.as_dict() == single.as_dict()
    assert totals.rejected == {Reason.DUPLICATE_ID: 1}
    assert by_window.categorisations == whole.categorisations
    assert len(whole.categorisations) == 10
