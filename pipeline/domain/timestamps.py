"""Timestamps as columns: ISO 8601 text to UTC microseconds, as `datetime.fromisoformat` reads it.

Three tiers, each exact where it applies: the spelling nearly every file uses (date and time to
the second, naive) is parsed by polars in one call; the common ISO variants (a fraction, `Z` or
an offset) by string slices; anything else by Python's `datetime.fromisoformat` one row at a
time: it accepts a dozen more ISO forms (week dates, basic format, any separator…) that have
no column form, and it is what decides that a timestamp is not ISO 8601.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import polars as pl

EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MICROSECOND = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - _EPOCH
PLAIN = r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}\z"
COMMON = (
    r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?"
    r"(?:Z|[+-][0-9]{2}:[0-9]{2})?\z"
)


def micros(moment: datetime) -> int:
    """An aware datetime as microseconds since the epoch."""
    return (moment - _EPOCH) // _ONE_MICROSECOND


def parse_timestamps(frame: pl.DataFrame | pl.LazyFrame, zone: str) -> pl.DataFrame:
    """Add `occurred_at_us` (UTC microseconds, null when not ISO 8601) and `utc_offset_s` (the
    offset the text gave or the zone had) from the stripped `timestamp_text`."""
    stamp = pl.col("timestamp_text")
    local = _local_us(stamp)
    plain = stamp.str.contains(PLAIN) & (stamp.str.slice(17, 2) != "60")
    naive = _naive_in(local, zone)
    parsed = frame.lazy().with_columns(
        occurred_at_us=pl.when(plain).then(naive),
        utc_offset_s=pl.when(plain).then(((local - naive) // 1_000_000).cast(pl.Int32)),
    )
    return _iso_fallback(_common(parsed.collect(), zone), ZoneInfo(zone))


def _local_us(stamp: pl.Expr) -> pl.Expr:
    """Date and time to the second (the first 19 characters) as naive microseconds."""
    moment = stamp.str.slice(0, 19).str.replace("T", " ", literal=True, n=1)
    parsed = moment.str.strptime(pl.Datetime("us"), "%Y-%m-%d %H:%M:%S", strict=False)
    return parsed.dt.epoch("us")


def _common(frame: pl.DataFrame, zone: str) -> pl.DataFrame:
    """The rows the plain spelling missed, when they carry a fraction, `Z` or an offset: one
    pattern checks the shape, fixed positions give the parts (no pattern per part: compiling
    patterns costs more than a small stream batch)."""
    todo = frame.filter(pl.col("occurred_at_us").is_null())  # usually none: no pattern run
    if not todo.is_empty():
        todo = todo.filter(pl.col("timestamp_text").str.contains(COMMON))
    if todo.is_empty():
        return frame
    stamp = pl.col("timestamp_text")
    size = pl.col("size")
    # Parts first, as columns, then combined: one expression tree for all of it costs polars
    # more to plan than to run on a small batch. The steps stay lazy and are collected once:
    # each eager step is a query of its own (~0.3 ms each on a stream batch of 100 events).
    parts = (
        todo.lazy()
        .select(
            "row",
            "timestamp_text",
            size=stamp.str.len_chars(),
            zulu=stamp.str.ends_with("Z"),
            local=_local_us(stamp),
        )
        .with_columns(signed=stamp.str.slice(size - 6, 1).is_in(["+", "-"]) & (size >= 25))
    )
    zone_chars = pl.when("zulu").then(1).when("signed").then(6).otherwise(0)
    parts = parts.with_columns(
        fraction_chars=(size - 20 - zone_chars).clip(lower_bound=0),
        hours=stamp.str.slice(size - 5, 2).cast(pl.Int64, strict=False),
        minutes=stamp.str.slice(size - 2, 2).cast(pl.Int64, strict=False),
        negative=stamp.str.slice(size - 6, 1) == "-",
    )
    fraction = stamp.str.slice(20, pl.col("fraction_chars")).str.pad_end(6, "0")
    offset_us = (pl.col("hours") * 3600 + pl.col("minutes") * 60) * 1_000_000
    parts = parts.with_columns(
        local=pl.col("local")
        + pl.when(pl.col("fraction_chars") > 0)
        .then(fraction.cast(pl.Int64, strict=False))
        .otherwise(0),
        offset_us=pl.when("negative").then(-offset_us).otherwise(offset_us),
        exact=(stamp.str.slice(17, 2) != "60")
        & (~pl.col("signed") | ((pl.col("hours") <= 23) & (pl.col("minutes") <= 59))),
    )
    local = pl.col("local")
    utc = (
        pl.when("zulu")
        .then(local)
        .when("signed")
        .then(local - pl.col("offset_us"))
        .otherwise(_naive_in(local, zone))
    )
    parts = parts.with_columns(utc=utc)
    fixed = parts.select(
        "row",
        occurred_at_us=pl.when("exact").then(pl.col("utc")),
        utc_offset_s=pl.when("exact").then(((local - pl.col("utc")) // 1_000_000).cast(pl.Int32)),
    )
    return frame.update(fixed.collect(), on="row")


def _naive_in(local_us: pl.Expr, zone: str) -> pl.Expr:
    """Naive local time in `zone` as UTC microseconds; null in a DST gap (Python decides)."""
    if zone == "UTC":
        return local_us
    moment = local_us.cast(pl.Datetime("us")).dt.replace_time_zone(
        zone, ambiguous="earliest", non_existent="null"
    )
    return moment.dt.epoch("us")


def _iso_fallback(frame: pl.DataFrame, zone: ZoneInfo) -> pl.DataFrame:
    todo = frame.filter(pl.col("occurred_at_us").is_null() & (pl.col("timestamp_text") != ""))
    if todo.is_empty():
        return frame
    parsed = [_iso_micros(stamp, zone) for stamp in todo["timestamp_text"].to_list()]
    fixed = pl.DataFrame(
        {
            "row": todo["row"],
            "occurred_at_us": pl.Series([p[0] for p in parsed], dtype=pl.Int64),
            "utc_offset_s": pl.Series([p[1] for p in parsed], dtype=pl.Int32),
        }
    )
    return frame.update(fixed, on="row")


def _iso_micros(stamp: str, zone: ZoneInfo) -> tuple[int | None, int | None]:
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return None, None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    offset = moment.utcoffset()
    return micros(moment), int(offset.total_seconds()) if offset is not None else 0
