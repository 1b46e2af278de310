"""The duplicate-id rule for a file of any size: ids spilled to disk, partitioned by hash.

At plan time every row's transaction id (with its line) is appended to one of N partition
files on local disk; each partition is then small enough to sort in memory, and the lines
whose id appeared on an earlier line come out. Memory stays flat in the file's size: at most
one buffer and one partition at a time.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from types import TracebackType

import numpy as np
import polars as pl

from pipeline.domain.ids import transaction_keys
from pipeline.domain.validation import stripped

_FLUSH_ROWS = 100_000


class IdSpill:
    """Partitioned (key, line) files in a temporary folder, removed on exit."""

    def __init__(self, partitions: int) -> None:
        self.partitions = min(max(partitions, 1), 256)
        self._folder = Path(tempfile.mkdtemp(prefix="txcat-ids-"))
        self._buffer: list[pl.DataFrame] = []
        self._buffered = 0
        self._flushes = 0

    def __enter__(self) -> IdSpill:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        shutil.rmtree(self._folder, ignore_errors=True)

    def add(self, raw: pl.DataFrame, lines: np.ndarray) -> None:
        """Remember the ids of these raw rows (those that name a transaction) at their lines."""
        frame = raw.with_columns(line=pl.Series(lines, dtype=pl.Int64))
        named = frame.filter(pl.col("parse_error").is_null() & (stripped("id") != ""))
        if named.is_empty():
            return
        keys = transaction_keys(named.select(stripped("id")).to_series())
        self._buffer.append(pl.DataFrame({"key": keys, "line": named["line"]}))
        self._buffered += named.height
        if self._buffered >= _FLUSH_ROWS:
            self._flush()

    def repeated_lines(self) -> np.ndarray:
        """The sorted lines whose id appeared on an earlier line."""
        self._flush()
        found = []
        for partition in range(self.partitions):
            files = sorted(self._folder.glob(f"p{partition}-*.arrow"))
            if not files:
                continue
            keys = pl.concat([pl.read_ipc(f) for f in files]).sort("line")
            found.append(keys.filter(~pl.col("key").is_first_distinct())["line"].to_numpy())
        return np.sort(np.concatenate(found)) if found else np.empty(0, np.int64)

    def _flush(self) -> None:
        if not self._buffer:
            return
        frame = pl.concat(self._buffer).with_columns(
            part=pl.col("key").str.slice(0, 6).str.to_integer(base=16) % self.partitions
        )
        for (partition,), rows in frame.partition_by("part", as_dict=True).items():
            path = self._folder / f"p{partition}-{self._flushes}.arrow"
            rows.drop("part").write_ipc(path)
        self._flushes += 1
        self._buffer, self._buffered = [], 0
