"""Content fingerprints of a chunk's transactions, to tell a replay from a conflict.

The same digest as `model.content_fingerprint` (the tests hold them equal), for a column of
transactions: the normalised text is built as columns, then hashed by the polars-hash plugin
(SHA-256 over the UTF-8 bytes, in Rust, off the GIL: a Python loop over hashlib cost ~1.5 µs a
row on the thread that reads the file).
"""

from __future__ import annotations

from functools import cache

import polars as pl
import polars_hash as plh


def normalised_amount(cents: pl.Expr) -> pl.Expr:
    """The amount as `Decimal.normalize()` then `format(…, "f")` spells it ("0" for zero): the
    two-place text without its trailing zeros, then without a trailing point."""
    return amount_text(cents).str.strip_chars_end("0").str.strip_chars_end(".")


def amount_text(cents: pl.Expr) -> pl.Expr:
    """Cents as a decimal with two places ("-720.98"), exactly (no float on the way)."""
    return pl.concat_str(
        [
            pl.when(cents < 0).then(pl.lit("-")).otherwise(pl.lit("")),
            (cents.abs() // 100).cast(pl.String),
            pl.lit("."),
            (cents.abs() % 100).cast(pl.String).str.pad_start(2, "0"),
        ]
    )


def iso_utc(moment: pl.Expr) -> pl.Expr:
    """The instant as `datetime.astimezone(UTC).isoformat()` spells it."""
    micros = moment.dt.microsecond()
    fraction = (
        pl.when(micros == 0)
        .then(pl.lit(""))
        .otherwise(pl.concat_str([pl.lit("."), micros.cast(pl.String).str.pad_start(6, "0")]))
    )
    return pl.concat_str([moment.dt.strftime("%Y-%m-%dT%H:%M:%S"), fraction, pl.lit("+00:00")])


@cache  # one immutable expression: built (~0.2 ms) once, not for every stream batch
def content_sha256() -> pl.Expr:
    """The column `content_sha256`: SHA-256 (hex) of each valid row's normalised content."""
    text = pl.concat_str(
        [
            pl.col("source_id"),
            pl.col("description"),
            normalised_amount(pl.col("amount_cents")),
            iso_utc(pl.col("occurred_at")),
            pl.col("merchant").fill_null(""),
            pl.col("operation_type"),
            pl.col("side"),
        ],
        separator="\x1f",  # unit separator: no valid field holds it
    )
    return plh.CryptographicHashingNameSpace(text).sha2_256().alias("content_sha256")
