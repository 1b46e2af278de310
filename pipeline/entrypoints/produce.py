"""The producer: replay a CSV or JSON-lines file onto the topic as events, at a chosen rate."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from pipeline.adapters.csv_source import CsvTransactionSource, estimate_rows
from pipeline.adapters.kafka_producer import EventPublisher, make_producer
from pipeline.config import KafkaSettings
from pipeline.domain.ids import transaction_uuid
from pipeline.entrypoints.progress import progress

logger = logging.getLogger(__name__)

EVENT_FIELDS = ("description", "amount", "timestamp", "merchant", "operation_type", "side")


@dataclass
class ProduceResult:
    """What the producer did."""

    read: int
    sent: int
    failed: int
    seconds: float


def events(path: Path) -> Iterator[tuple[str | None, bytes]]:
    """(key, JSON value) per row, as it is: dirty rows included, validation is the consumer's."""
    if path.suffix in {".jsonl", ".ndjson"}:
        yield from _json_lines(path)
        return
    for record in CsvTransactionSource(path).records():
        if record.fields is None:  # not even fields: ship the raw line, the consumer rejects it
            yield None, orjson.dumps({"raw": record.raw, "source": str(record.position)})
            continue
        source_id = str(record.fields.get("id", "")).strip()
        key = str(transaction_uuid(source_id)) if source_id else None
        event = {
            "id": key,
            "source_id": source_id,
            **{f: record.fields.get(f) for f in EVENT_FIELDS},
        }
        if event["merchant"] == "":
            event["merchant"] = None
        yield key, orjson.dumps(event)


def _json_lines(path: Path) -> Iterator[tuple[str | None, bytes]]:
    with open(path, "rb") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            key = None
            try:
                event = orjson.loads(line)
                source = (
                    event.get("source_id") or event.get("id") if isinstance(event, dict) else None
                )
                key = str(transaction_uuid(str(source))) if source not in (None, "") else None
            except orjson.JSONDecodeError:
                pass
            yield key, line


def produce(
    path: Path,
    settings: KafkaSettings,
    rate: float | None = None,
    limit: int | None = None,
    show_progress: bool = False,
) -> ProduceResult:
    """Publish the file's events; `rate` events/s (None: as fast as possible)."""
    publisher = EventPublisher(make_producer(settings), settings.topic)
    started = time.monotonic()
    read = 0
    total = min(estimate_rows(path), limit) if limit else estimate_rows(path)
    with progress(f"producing {path.name}", total, show_progress) as advance:
        publisher.on_sent = lambda: advance(1)
        for key, value in events(path):
            if limit is not None and read >= limit:
                break
            if rate:
                _pace(started, read, rate)
            publisher.publish(key, value)
            read += 1
        unacknowledged = publisher.flush()
    failed = publisher.failed + unacknowledged
    return ProduceResult(read, publisher.sent, failed, time.monotonic() - started)


def _pace(started: float, sent: int, rate: float) -> None:
    ahead = started + sent / rate - time.monotonic()
    if ahead > 0:
        time.sleep(ahead)
