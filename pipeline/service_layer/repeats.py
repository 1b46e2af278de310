"""Repeated ids: in a file (the later row is `duplicate_id`) and in a stream batch (re-seen)."""

from __future__ import annotations

import polars as pl

from pipeline.domain.chunks import raw_frame
from pipeline.domain.ids import transaction_keys
from pipeline.domain.validation import stripped

# The id of a row that fails validation still counts as met when it is text or an integer (a
# float id is only a transaction's id once valid), as the row-by-row rule always had it.
_REMEMBERED_TYPES = ("int",)


class RepeatedIds:
    """Ids met on earlier rows of a run that has no file plan (records handed in directly).

    Kept in memory: a planned file (`pipeline.service_layer.files`) brings its repeats with
    each chunk instead, so a file of any size runs in flat memory.
    """

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def met_before(
        self, raw: pl.DataFrame, rejected: pl.DataFrame, valid: pl.DataFrame
    ) -> pl.DataFrame:
        """The valid rows whose id appeared on an earlier row (valid or not); remembers all."""
        keys = pl.concat(
            [
                valid.select("row", key="id_hex", valid=pl.lit(True)),
                invalid_keys(raw, rejected).with_columns(valid=pl.lit(False)),
            ]
        ).sort("row")
        earlier = keys["key"].is_in(list(self.seen)) | ~keys["key"].is_first_distinct()
        repeated = keys.filter(earlier & keys["valid"]).select("row")
        self.seen.update(keys["key"].to_list())
        return valid.join(repeated, on="row")


def invalid_keys(raw: pl.DataFrame, rejected: pl.DataFrame) -> pl.DataFrame:
    """(row, key) of the rejected rows that name a transaction: parsed, with a text id."""
    frame = raw_frame(raw).with_row_index("row").join(rejected.select("row"), on="row")
    kind = pl.col("id_type")
    named = frame.filter(
        pl.col("parse_error").is_null()
        & (kind.is_null() | kind.is_in(_REMEMBERED_TYPES))
        & (stripped("id") != "")
    )
    ids = named.select(stripped("id")).to_series()
    return pl.DataFrame({"row": named["row"], "key": transaction_keys(ids)})


def reseen_in_chunk(valid: pl.DataFrame) -> pl.DataFrame:
    """The later rows of a stream batch whose id an earlier row has (the first one wins), with
    the first one's fingerprint as `content_sha256_stored`."""
    first = pl.col("id").is_first_distinct()
    firsts = valid.filter(first).select("id", content_sha256_stored="content_sha256")
    return valid.filter(~first).join(firsts, on="id")
