"""A consumed batch parsed together: all its events decoded by polars into columns at once.

The producer writes every event in one canonical form: a flat JSON object, keys in a fixed
order, text or null values, no spaces (`orjson.dumps`, see pipeline.adapters.event_files).
A batch of such events is decoded in one call, and each event is checked byte for byte against
the canonical JSON of what was decoded: equal bytes prove that decoding the event alone gives
the same fields (no repeated key, no number or object read as text, no escape read another
way, one object per event). Any other batch (an event not JSON or not an object, a number for
a text field, keys in another order, an extra key) gives None: the consumer then decodes its
events one by one, as before, and each undecodable event is isolated with its reason.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from functools import cache

import orjson
import polars as pl

from pipeline.adapters.event_files import EVENT_FIELDS
from pipeline.domain.chunks import FIELDS, RAW_COLUMNS

# The two shapes an event may have: from a file (with the file's id as `source_id`, the
# derived UUID as `id`) or born as an event (its own id only).
WITH_SOURCE_ID = ("id", "source_id", *EVENT_FIELDS)
WITHOUT_SOURCE_ID = ("id", *EVENT_FIELDS)


def events_frame(values: Sequence[bytes | None]) -> pl.DataFrame | None:
    """The raw frame of a batch of event values parsed together, or None when any event is
    not in the canonical form (decode them one by one instead)."""
    if not values or not all(values):  # an empty message has its own reason
        return None
    keys = WITH_SOURCE_ID if b'"source_id"' in (values[0] or b"") else WITHOUT_SOURCE_ID
    lines = pl.Series(values, dtype=pl.Binary)
    try:
        events = lines.cast(pl.String).str.json_decode(pl.Struct(dict.fromkeys(keys, pl.String)))
    except pl.exceptions.PolarsError:  # not UTF-8, not JSON: the one-by-one path says why
        return None
    if events.len() != lines.len():  # a blank event, or two in one: not one object each
        return None
    event = pl.col("event")
    # A JSON null decodes to a null struct, which encodes back to "null": not an object.
    same = event.struct.json_encode().cast(pl.Binary).eq_missing(pl.col("line"))
    canonical = (same & event.is_not_null()).all()
    frame = pl.DataFrame({"line": lines, "event": events}).select(
        canonical.alias("canonical"), *_raw_columns(keys)
    )
    return frame.drop("canonical") if frame["canonical"][0] else None


@cache
def _raw_columns(keys: tuple[str, ...]) -> list[pl.Expr]:
    """The raw frame's columns from the decoded event: every field is text, so the `_type`
    columns and the parse error are null."""
    fields = [pl.col("event").struct.field(name) for name in EVENT_FIELDS]
    nulls = [pl.lit(None, pl.String).alias(name) for name in RAW_COLUMNS[len(FIELDS) :]]
    return [_source_id(keys).alias("id"), *fields, *nulls]


def _source_id(keys: tuple[str, ...]) -> pl.Expr:
    """The record's source id: `source_id` unless null or empty, else `id` (raw_source_id)."""
    event_id = pl.col("event").struct.field("id")
    if "source_id" not in keys:
        return event_id
    source_id = pl.col("event").struct.field("source_id")
    return pl.when(source_id.is_null() | (source_id == "")).then(event_id).otherwise(source_id)


class JsonFields(Mapping[str, object]):
    """An event's JSON object, decoded on first use: a batch parsed together needs one
    event's fields only for its dead letter, if it is rejected."""

    __slots__ = ("_fields", "_value")

    def __init__(self, value: bytes) -> None:
        self._value = value
        self._fields: dict[str, object] | None = None

    def _decoded(self) -> dict[str, object]:
        if self._fields is None:
            self._fields = orjson.loads(self._value)
        return self._fields

    def __getitem__(self, key: str) -> object:
        return self._decoded()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._decoded())

    def __len__(self) -> int:
        return len(self._decoded())

    def __repr__(self) -> str:
        return repr(self._decoded())
