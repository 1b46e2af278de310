"""Hostile files and events, each row with what must become of it.

Two files in the challenge's format: day one (clean) and day two (hostile: control bytes in
every field, invalid UTF-8, a 1 MB field, numbers that overflow, impossible dates, ids spelled
oddly, re-seen ids with equal and with different content). The same rows go through the batch
CLI, the Airflow DAG and the stream (via the producer); all three must end in these tables.
Events only the stream can receive (not JSON, deep nesting, huge headers…) are in EVENTS.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from pipeline.domain.ids import transaction_uuid

HEADER = b"id;description;amount;timestamp;merchant;operation_type;side"
STORED = "stored"
NO_OP = "already_stored"


@dataclass(frozen=True)
class Row:
    """One line of a file and its fate: STORED, NO_OP or a dead-letter reason."""

    line: bytes
    fate: str
    source_id: str | None  # the id a dead letter names (None: the row has no readable id)


def _row(source_id: str, description: str = "Purchase", amount: str = "-10,00", **f: str) -> bytes:
    fields = {
        "timestamp": "2024-03-01 10:00:00",
        "merchant": "Shop",
        "operation_type": "payment",
        "side": "debit",
        **f,
    }
    values = [source_id, description, amount, fields["timestamp"], fields["merchant"]]
    values += [fields["operation_type"], fields["side"]]
    return ";".join(f'"{v}"' if i != 2 else v for i, v in enumerate(values)).encode(
        "utf-8", "surrogateescape"
    )


DAY_ONE = [Row(_row(str(n), f"Day one {n}"), STORED, str(n)) for n in range(1, 11)]

UUID_TEXT = "0f0e0d0c-0b0a-4908-8706-050403020100"
DAY_TWO = [
    Row(_row("1", "Day one 1"), NO_OP, "1"),  # re-seen, same content
    Row(_row("2", "Day one 2", "-99,00"), "conflicting_duplicate", "2"),  # re-seen, other content
    Row(_row("3", "Day one 3", "-10,0"), NO_OP, "3"),  # same value spelled otherwise
    Row(_row("21", "nul \x00 byte"), "invalid_text", "21"),
    Row(_row("22", merchant="nul\x00"), "invalid_text", "22"),
    Row(_row("2\x003"), "invalid_text", "2\x003"),
    Row(_row("24", operation_type="bell\x07"), "invalid_text", "24"),
    Row(_row("25", timestamp="2024-03-01\x1b10:00:00"), "invalid_text", "25"),
    Row(_row("26", "caf\udce9 latin-1 byte"), "malformed_row", None),  # not UTF-8
    Row(_row("27", "x" * 1_000_000), "field_too_long", "27"),
    Row(_row("28", amount="1e999"), "invalid_amount", "28"),
    Row(_row("29", amount="99999999999999999999999999"), "amount_out_of_bounds", "29"),
    Row(_row("30", timestamp="2024-02-30 10:00:00"), "invalid_timestamp", "30"),
    Row(_row("31", timestamp="0001-01-01 00:00:00"), "invalid_timestamp", "31"),
    Row(_row("32", timestamp="9999-12-31T23:59:59-14:00"), "invalid_timestamp", "32"),
    Row(_row("33", side="sideways"), "invalid_side", "33"),
    Row(_row("34", "émoji 🧾 ok", operation_type="crypto_swap"), STORED, "34"),
    Row(_row(UUID_TEXT, "a UUID id"), STORED, UUID_TEXT),
    Row(_row("+" + UUID_TEXT, "an odd spelling"), STORED, "+" + UUID_TEXT),
    Row(b'"36";"too";"few";"fields"', "malformed_row", None),
    Row(_row("37", "quoted ; delimiter and\nnewline"), STORED, "37"),
    Row(_row("38", "", "-1,00"), "missing_field", "38"),
]


def write(folder: Path) -> tuple[Path, Path]:
    """The two files, written into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, rows in (("day1.csv", DAY_ONE), ("day2.csv", DAY_TWO)):
        path = folder / name
        path.write_bytes(b"\n".join([HEADER, *(row.line for row in rows)]) + b"\n")
        paths.append(path)
    return paths[0], paths[1]


def expected_stored() -> set[UUID]:
    """Ids of the transactions that must be stored after both days."""
    rows = [row for row in DAY_ONE + DAY_TWO if row.fate == STORED]
    return {transaction_uuid(row.source_id or "") for row in rows}


def expected_dead_letters() -> Counter[tuple[str, UUID | None]]:
    """(reason, transaction id named) of every dead letter after both days."""
    return Counter(
        (row.fate, transaction_uuid(row.source_id) if row.source_id else None)
        for row in DAY_TWO
        if row.fate not in (STORED, NO_OP)
    )


@dataclass(frozen=True)
class Event:
    """A raw Kafka message only the stream can receive, and its dead-letter reason."""

    value: bytes
    reason: str
    headers: tuple[tuple[str, bytes], ...] = ()


EVENTS = [
    Event(b"not json at all", "undecodable"),
    Event(b'{"id": "\\ud800", "amount": "1"}', "undecodable"),  # lone surrogate
    Event(b"[" * 5000 + b"]" * 5000, "undecodable"),  # deeper than any parser allows
    Event(b'{"amount": 1e400}', "undecodable"),
    Event(b"", "empty_message"),
    Event(b"[]", "invalid_shape"),
    Event(b"null", "invalid_shape"),
    Event(b'"just a string"', "invalid_shape"),
    Event(b"{}", "missing_field", (("x-redrive-count", b"3000000000"),)),
    Event(b"{}", "missing_field", (("x-redrive-count", b"\xff\xfe not a number"),)),
    Event(b'{"id": "e1", "description": {"deep": [1, 2]}}', "invalid_field"),
    Event(b'{"id": "e2", "description": "' + b"y" * 900_000 + b'"}', "field_too_long"),
]
