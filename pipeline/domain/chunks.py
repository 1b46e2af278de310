"""A chunk of raw records as columns: what every source hands the categorise use case.

The raw frame has one row per record, in source order, and one text column per field
(`FIELDS`; null when absent). A record that could not be split into fields has its
`parse_error` and `parse_reason` set instead. A field whose value was not text (an event's
number, object, list, boolean) has the Python type name in `<field>_type`: numbers are kept
as their text, anything else is refused by the rules. A chunk also rebuilds any one of its
rows as a RawRecord, which only rejected rows need (for their dead letters).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

import polars as pl

from pipeline.domain.model import RawRecord, raw_source_id

FIELDS = ("id", "description", "amount", "timestamp", "merchant", "operation_type", "side")
TEXT_FIELDS = ("id", "description", "timestamp", "merchant", "operation_type", "side")
TYPE_COLUMNS = tuple(f"{name}_type" for name in FIELDS)
RAW_COLUMNS = (*FIELDS, *TYPE_COLUMNS, "parse_error", "parse_reason")
RAW_SCHEMA = dict.fromkeys(RAW_COLUMNS, pl.String)


@dataclass(frozen=True)
class RawChunk:
    """Raw records as columns, with a way back to any one record (for its dead letter).

    `repeated`, when the source knows it (a planned file), flags the rows whose id appeared on
    an earlier row of the file; without it the use case remembers the ids it has met.
    """

    frame: pl.DataFrame
    record: Callable[[int], RawRecord]
    repeated: pl.Series | None = None

    @property
    def height(self) -> int:
        return self.frame.height


def raw_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """The raw frame with every column of RAW_SCHEMA (absent ones all null), text typed."""
    if frame.schema == RAW_SCHEMA:  # as read: every column there, in order, typed
        return frame
    missing = [pl.lit(None, pl.String).alias(c) for c in RAW_COLUMNS if c not in frame.columns]
    lazy = frame.lazy().with_columns(missing).select(RAW_COLUMNS).cast(RAW_SCHEMA)  # type: ignore[arg-type]
    return lazy.collect()


class RecordBatch(list[RawRecord]):
    """Records consumed together with their raw frame, parsed together by the source (row i
    is record i). A slice or a filtered copy is a plain list: the frame goes with the whole
    batch only, and a part of it is framed again from its records."""

    def __init__(self, records: Iterable[RawRecord], frame: pl.DataFrame) -> None:
        super().__init__(records)
        if frame.height != len(self) or frame.schema != RAW_SCHEMA:
            raise ValueError("a batch's frame must be the raw frame of its records, row for row")
        self.frame = frame


def chunk_of_records(records: Iterable[RawRecord]) -> RawChunk:
    """A chunk built from records already in hand (a consumed stream batch, tests)."""
    if isinstance(records, RecordBatch):
        return RawChunk(records.frame, records.__getitem__)
    listed = records if isinstance(records, list) else list(records)
    return RawChunk(records_frame(listed), listed.__getitem__)


def records_frame(records: Sequence[RawRecord]) -> pl.DataFrame:
    """The raw frame of records already decoded one by one, built one column at a time.

    The one per-record step is reading each field's Python value into text (an event's values
    may be numbers, objects or lists: no column form for that); a field that is text in every
    record takes a shorter way. A source that parses a batch together hands over a
    RecordBatch with its frame instead (the Kafka consumer, for canonical events).
    """
    parsed = [record.fields for record in records]
    columns: dict[str, list[str | None]] = {}
    for name in FIELDS:
        if name == "id":
            values = [None if f is None else raw_source_id(f) for f in parsed]
        else:
            values = [None if f is None else f.get(name) for f in parsed]
        if all(v.__class__ is str or v is None for v in values):
            columns[name] = [_storable(v) if v is not None else None for v in values]  # type: ignore[arg-type]
            columns[f"{name}_type"] = [None] * len(values)
            continue
        texts = [_as_text(v, name == "amount") for v in values]
        columns[name] = [text for text, _ in texts]
        columns[f"{name}_type"] = [kind for _, kind in texts]
    columns["parse_error"] = [
        None if f is not None else (r.parse_error or "record could not be parsed")
        for r, f in zip(records, parsed, strict=True)
    ]
    columns["parse_reason"] = [
        None if f is not None else str(r.parse_reason) for r, f in zip(records, parsed, strict=True)
    ]
    return pl.DataFrame(columns, schema=RAW_SCHEMA)


def _as_text(value: object, amount: bool) -> tuple[str | None, str | None]:
    """(text, None) for text and numbers; (None, type name) for anything else."""
    if value.__class__ is str:
        return _storable(value), None
    if value is None:
        return None, None
    if isinstance(value, bool):
        return None, "bool"
    if isinstance(value, int | float) or (amount and isinstance(value, Decimal)):
        kind = None if amount else type(value).__name__
        return str(value), kind
    return None, type(value).__name__


def _storable(text: str) -> str:
    """Text polars can hold: a lone surrogate (only Python callers can pass one) becomes NUL,
    one character for one, so the length and the `invalid_text` rule see what they would."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "".join("\x00" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)
    return text


def fields_of(frame: pl.DataFrame, row: int) -> Mapping[str, object] | None:
    """The fields of one row of a raw frame, as a record would carry them."""
    values = frame.row(row, named=True)
    if values.get("parse_error") is not None:
        return None
    return {name: values.get(name) for name in FIELDS if name in frame.columns}
