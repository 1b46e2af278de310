"""Events read from a file: a CSV in either format, or JSON lines, as (key, JSON value)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson

from pipeline.adapters.csv_source import CsvTransactionFile
from pipeline.domain.ids import transaction_uuid
from pipeline.domain.model import raw_source_id, source_id_of

EVENT_FIELDS = ("description", "amount", "timestamp", "merchant", "operation_type", "side")
UNREADABLE = "x-unreadable-row"  # the one key of an event that carries an unreadable row
Event = tuple[str | None, bytes]


def file_events(path: Path) -> Iterator[Event]:
    """(key, JSON value) per row, as it is: dirty rows included, validation is the consumer's."""
    if path.suffix in {".jsonl", ".ndjson"}:
        yield from _json_lines(path)
        return
    for record in CsvTransactionFile(path).records():
        if record.fields is None:  # not even fields: ship the raw line and why it is unreadable
            yield None, unreadable_event(record.raw, record.parse_error, record.parse_reason)
            continue
        source_id = source_id_of(record)
        key = str(transaction_uuid(source_id)) if source_id else None
        event = {
            "id": key,
            "source_id": source_id,
            **{f: record.fields.get(f) for f in EVENT_FIELDS},
        }
        if event["merchant"] == "":
            event["merchant"] = None
        yield key, orjson.dumps(event)


def unreadable_event(raw: str, error: str | None, reason: str) -> bytes:
    """The event of a row the source could not read: the consumer dead-letters it with the
    same reason and payload as the batch pipeline would."""
    text = raw.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return orjson.dumps({UNREADABLE: {"raw": text, "error": error, "reason": str(reason)}})


def _json_lines(path: Path) -> Iterator[Event]:
    with open(path, "rb") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            key = None
            try:
                event = orjson.loads(line)
                source = raw_source_id(event) if isinstance(event, dict) else None
                key = str(transaction_uuid(str(source))) if source not in (None, "") else None
            except orjson.JSONDecodeError:
                pass
            yield key, line
