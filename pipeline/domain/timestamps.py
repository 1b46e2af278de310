"""Timestamps as columns: ISO 8601 text to UTC microseconds, as `datetime.fromisoformat` reads it.

Three tiers, each exact where it applies: the spelling nearly every file uses (date and time to
the second, naive) is parsed by polars in one call; the common ISO variants (a fraction, `Z` or
an offset) by string slices; anything else by Python's `datetime.fromisoformat` one row at a
time: it accepts a dozen more ISO forms (week dates, basic format, any separator…) that have
no column form, and it is what decides that a timestamp is not ISO 8601.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal
from zoneinfo import ZoneInfo

import polars as pl

EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MICROSECOND = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - _EPOCH
_YEAR_2100_US = (datetime(2100, 1, 1, tzinfo=UTC) - _EPOCH) // _ONE_MICROSECOND
_PLAIN_LENGTH = len("2024-01-31 10:00:00")
PLAIN = r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}\z"
COMMON = (
    r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?"
    r"(?:Z|[+-][0-9]{2}:[0-9]{2})?\z"
)


Plan = Literal["plain_first", "all_at_once", "row_by_row"]
# Under this many rows of variants, Python's parser row by row costs less than planning
# polars' tiers in one query (~2-3 ms whatever the size): a small stream batch.
ROW_BY_ROW_BELOW = 1000


def timestamp_plan(stamps: pl.Series) -> Plan:
    """The cheapest plan for a chunk's timestamps, from how its first one is spelled; it
    never changes the result. To the second and naive (a file): the plain tier first, cheap
    at any size. Anything else (events stamped with a fraction and an offset): every tier in
    one query, or row by row for a small chunk."""
    first = stamps[0] if stamps.len() else None
    if first is None or len(first.strip()) == _PLAIN_LENGTH:
        return "plain_first"
    return "row_by_row" if stamps.len() < ROW_BY_ROW_BELOW else "all_at_once"


def micros(moment: datetime) -> int:
    """An aware datetime as microseconds since the epoch."""
    return (moment - _EPOCH) // _ONE_MICROSECOND


def parse_timestamps(
    frame: pl.DataFrame | pl.LazyFrame, zone: str, *, plan: Plan = "plain_first"
) -> pl.DataFrame:
    """Add `occurred_at_us` (UTC microseconds, null when not ISO 8601) and `utc_offset_s` (the
    offset the text gave or the zone had) from the stripped `timestamp_text`.

    `plan` only chooses how, never the result (see `timestamp_plan`): `plain_first` parses
    the plain spelling and then the variants for the few rows that need them; `all_at_once`
    computes every tier in the same query, which saves a batch of variants two queries and a
    join; `row_by_row` asks `datetime.fromisoformat` for every row, which a small batch does
    faster than polars can plan the tiers.
    """
    if plan == "row_by_row":
        return _row_by_row(frame.lazy().collect(), ZoneInfo(zone))
    stamp = pl.col("timestamp_text")
    local = _local_us(stamp)
    plain = stamp.str.contains(PLAIN) & (stamp.str.slice(17, 2) != "60")
    naive = _naive_in(local, zone)
    offset_s = _offset_s(local, naive)
    if plan == "plain_first":
        parsed = frame.lazy().with_columns(
            occurred_at_us=pl.when(plain).then(naive),
            utc_offset_s=pl.when(plain).then(offset_s),
        )
        return _iso_fallback(_common(parsed.collect(), zone), ZoneInfo(zone))
    parts = _common_parts(frame.lazy(), zone)
    common = stamp.str.contains(COMMON) & pl.col("_exact")
    parsed = parts.with_columns(
        occurred_at_us=pl.when(plain).then(naive).when(common).then(pl.col("_utc")),
        utc_offset_s=pl.when(plain)
        .then(offset_s)
        .when(common)
        .then(_offset_s(pl.col("_local"), pl.col("_utc"))),
    ).drop(_PARTS)
    return _iso_fallback(parsed.collect(), ZoneInfo(zone))


def _offset_s(local_us: pl.Expr, utc_us: pl.Expr) -> pl.Expr:
    """The UTC offset in seconds of a wall time and the moment it names."""
    return ((local_us - utc_us) // 1_000_000).cast(pl.Int32)


def _local_us(stamp: pl.Expr) -> pl.Expr:
    """Date and time to the second (the first 19 characters) as naive microseconds."""
    moment = stamp.str.slice(0, _PLAIN_LENGTH).str.replace("T", " ", literal=True, n=1)
    parsed = moment.str.strptime(pl.Datetime("us"), "%Y-%m-%d %H:%M:%S", strict=False)
    return parsed.dt.epoch("us")


def _common(frame: pl.DataFrame, zone: str) -> pl.DataFrame:
    """The rows the plain spelling missed, when they carry a fraction, `Z` or an offset."""
    # Usually nothing is left: a column keeps its null count, so that costs no query.
    if not frame["occurred_at_us"].null_count():
        return frame
    todo = frame.filter(
        pl.col("occurred_at_us").is_null() & pl.col("timestamp_text").str.contains(COMMON)
    )
    if todo.is_empty():
        return frame
    parts = _common_parts(todo.lazy().select("row", "timestamp_text"), zone)
    fixed = parts.select(
        "row",
        occurred_at_us=pl.when("_exact").then(pl.col("_utc")),
        utc_offset_s=pl.when("_exact").then(_offset_s(pl.col("_local"), pl.col("_utc"))),
    )
    return frame.update(fixed.collect(), on="row")


_PARTS = (
    "_size", "_zulu", "_local", "_signed", "_fraction_chars", "_hours", "_minutes",
    "_negative", "_offset_us", "_exact", "_utc",
)  # fmt: skip


def _common_parts(frame: pl.LazyFrame, zone: str) -> pl.LazyFrame:
    """The parts of the fraction/`Z`/offset spelling as columns (`_PARTS`), exact where the
    text has the COMMON shape: `_utc` the moment, `_local` the wall time, `_exact` false for a
    leap second or an offset out of range. Fixed positions give the parts (no pattern per
    part: compiling patterns costs more than a small stream batch), and the parts are columns
    before they are combined (one expression tree for all of it costs polars more to plan than
    to run on a small batch)."""
    stamp = pl.col("timestamp_text")
    size = pl.col("_size")
    parts = frame.with_columns(
        _size=stamp.str.len_chars(),
        _zulu=stamp.str.ends_with("Z"),
        _local=_local_us(stamp),
    ).with_columns(_signed=stamp.str.slice(size - 6, 1).is_in(["+", "-"]) & (size >= 25))
    zone_chars = pl.when("_zulu").then(1).when("_signed").then(6).otherwise(0)
    parts = parts.with_columns(
        _fraction_chars=(size - 20 - zone_chars).clip(lower_bound=0),
        _hours=stamp.str.slice(size - 5, 2).cast(pl.Int64, strict=False),
        _minutes=stamp.str.slice(size - 2, 2).cast(pl.Int64, strict=False),
        _negative=stamp.str.slice(size - 6, 1) == "-",
    )
    fraction = stamp.str.slice(20, pl.col("_fraction_chars")).str.pad_end(6, "0")
    offset_us = (pl.col("_hours") * 3600 + pl.col("_minutes") * 60) * 1_000_000
    parts = parts.with_columns(
        _local=pl.col("_local")
        + pl.when(pl.col("_fraction_chars") > 0)
        .then(fraction.cast(pl.Int64, strict=False))
        .otherwise(0),
        _offset_us=pl.when("_negative").then(-offset_us).otherwise(offset_us),
        _exact=(stamp.str.slice(17, 2) != "60")
        & (~pl.col("_signed") | ((pl.col("_hours") <= 23) & (pl.col("_minutes") <= 59))),
    )
    local = pl.col("_local")
    utc = (
        pl.when("_zulu")
        .then(local)
        .when("_signed")
        .then(local - pl.col("_offset_us"))
        .otherwise(_naive_in(local, zone))
    )
    return parts.with_columns(_utc=utc)


def _naive_in(local_us: pl.Expr, zone: str) -> pl.Expr:
    """Naive local time in `zone` as UTC microseconds; null where Python decides: in a DST
    gap, and from 2100 on, where polars' time zone data has no daylight saving time any more
    while Python's zoneinfo goes on applying the zone's rule (an hour apart in summer)."""
    if zone == "UTC":
        return local_us
    moment = local_us.cast(pl.Datetime("us")).dt.replace_time_zone(
        zone, ambiguous="earliest", non_existent="null"
    )
    return pl.when(local_us < _YEAR_2100_US).then(moment.dt.epoch("us"))


def _iso_fallback(frame: pl.DataFrame, zone: ZoneInfo) -> pl.DataFrame:
    if not frame["occurred_at_us"].null_count():
        return frame
    todo = frame.filter(pl.col("occurred_at_us").is_null() & (pl.col("timestamp_text") != ""))
    if todo.is_empty():
        return frame
    fixed = pl.DataFrame([todo["row"], *_parsed_by_python(todo["timestamp_text"], zone)])
    return frame.update(fixed, on="row")


def _row_by_row(frame: pl.DataFrame, zone: ZoneInfo) -> pl.DataFrame:
    return frame.with_columns(_parsed_by_python(frame["timestamp_text"], zone))


def _parsed_by_python(stamps: pl.Series, zone: ZoneInfo) -> list[pl.Series]:
    """`occurred_at_us` and `utc_offset_s` of each stamp, from `datetime.fromisoformat`."""
    parsed = [_iso_micros(s, zone) if s else (None, None) for s in stamps.to_list()]
    return [
        pl.Series("occurred_at_us", [p[0] for p in parsed], dtype=pl.Int64),
        pl.Series("utc_offset_s", [p[1] for p in parsed], dtype=pl.Int32),
    ]


def _iso_micros(stamp: str, zone: ZoneInfo) -> tuple[int | None, int | None]:
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return None, None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    offset = moment.utcoffset()
    return micros(moment), int(offset.total_seconds()) if offset is not None else 0
