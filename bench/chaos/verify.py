"""The exact final state of a scenario, checked and counted into its row.

Rows in = stored + dead-lettered; no transaction stored twice; every category equals the ML
API's rule (recomputed here); dead letters only for the poison the scenario injected (none for
an infrastructure fault); and, for the stream, the group's committed offset at the end of
every partition.
"""

from __future__ import annotations

from collections import Counter
from uuid import UUID

from bench.chaos.probe import Database
from bench.chaos.report import Row
from bench.chaos.runs import StreamRun
from pipeline.domain.ids import transaction_uuid
from pipeline.domain.model import CATEGORIES


def rule(transaction_id: UUID) -> str:
    """The ML API's rule, recomputed independently of the service."""
    return CATEGORIES[hash(transaction_id) % len(CATEGORIES)]


def source_ids(rows: int, prefix: str = "") -> list[str]:
    """The source ids of a generated file of ``rows`` rows (``devstack generate``: 1..rows)."""
    return [f"{prefix}{number}" for number in range(1, rows + 1)]


def check_tables(
    db: Database,
    sent: list[str],
    poison: Counter[str],
    row: Row,
    *,
    prefix: str = "",
    complete: bool = True,
) -> None:
    """Every source id of ``sent`` stored or dead-lettered (all of them when ``complete``),
    nothing else stored under ``prefix``, dead letters exactly ``poison``; fills ``row``."""
    expected = {transaction_uuid(source_id) for source_id in sent}
    stored = db.rows(
        "SELECT transaction_id, category FROM categorised_transactions"
        " WHERE starts_with(source_id, :prefix)",
        prefix=prefix,
    )
    ids = Counter(record.transaction_id for record in stored)
    letters = db.rows(
        'SELECT reason, transaction_id, source, line, partition, "offset" FROM dead_letters'
    )
    positions = Counter((r.source, r.line, r.partition, r.offset) for r in letters)
    row.records_in = len(sent) + sum(poison.values())
    row.stored = len(ids)
    row.dead_lettered = len(letters)
    row.duplicates = sum(n - 1 for n in ids.values()) + sum(n - 1 for n in positions.values())
    lettered_ids = {r.transaction_id for r in letters if r.transaction_id is not None}
    row.lost = len(expected - set(ids) - lettered_ids) if complete else 0
    if row.lost:
        row.problems.append(f"{row.lost} records neither stored nor dead-lettered")
    if row.duplicates:
        row.problems.append(f"{row.duplicates} duplicates (rows or dead letters)")
    strangers = set(ids) - expected
    if strangers:
        row.problems.append(f"{len(strangers)} stored transactions that were never sent")
    wrong = sum(1 for record in stored if record.category != rule(record.transaction_id))
    if wrong:
        row.problems.append(f"{wrong} categories differ from the rule")
    reasons = Counter(r.reason for r in letters)
    if reasons != poison:
        row.problems.append(f"dead letters {dict(reasons)}, expected {dict(poison)}")


def check_stream(run: StreamRun, row: Row) -> None:
    """The processes, the tables, then Kafka: lag 0 and the DLQ topic."""
    for child in run.consumers:
        if child.died:
            row.problems.append(f"{child.name} died: exit {child.popen.returncode}: {child.tail()}")
    if run.producer is not None:
        sent, failed = run.producer_result()
        if failed or sent != run.events or run.producer.popen.returncode != 0:
            row.problems.append(
                f"producer sent {sent}, failed {failed}, exit {run.producer.popen.returncode}"
            )
    if run.stop_s > 15:
        row.notes.append(f"consumers took {run.stop_s:.0f} s to stop on SIGTERM")
    check_tables(run.db, source_ids(run.events), run.poison, row)
    row.replayed = run.replays()
    row.recover_s = list(run.recoveries)
    committed = run.probe.committed()
    ends = run.probe.end_offsets()
    if committed != ends:
        row.problems.append(f"committed offsets {committed} != end offsets {ends}")
    if sum(ends) != row.records_in:
        row.notes.append(f"topic holds {sum(ends)} records for {row.records_in} sent")
    dlq = sum(run.probe.end_offsets(f"{run.topic}.dlq"))
    if dlq < sum(run.poison.values()):
        row.problems.append(f"DLQ topic holds {dlq} records for {sum(run.poison.values())} poison")
    elif dlq > sum(run.poison.values()):
        row.notes.append(f"DLQ topic: {dlq} records (at least once) for {sum(run.poison.values())}")
