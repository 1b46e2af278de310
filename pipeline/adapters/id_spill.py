"""The duplicate-id rule for a file of any size: ids spilled to disk, partitioned by hash.

At plan time every row's id (with its line) is appended to one of N partition files on local
disk; each partition is then small enough to sort in memory, and the lines whose id appeared
on an earlier line come out. Memory stays flat in the file's size: at most one buffer and one
partition at a time.

Two rows are the same transaction when their ids are: a UUID spelling is its own id, any other
text is mapped with uuid5, so two texts share an id exactly when they are equal (SHA-1 does not
collide). A text is therefore spilled as itself (up to 32 bytes; a longer one as its uuid5) and
no hash is computed for it; only a file mixing texts and UUID spellings, where a text's uuid5
could equal a UUID spelled elsewhere, has its texts hashed into transaction ids, partition by
partition, before the repeats are looked for.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from types import TracebackType

import numpy as np
import polars as pl

from pipeline.domain.ids import transaction_keys, uuid_spelled
from pipeline.domain.validation import stripped

_FLUSH_ROWS = 100_000
# A longer text is spilled as its transaction id (32 characters): memory stays flat however
# long the ids of a file are.
_TEXT_KEY_BYTES = 32


class IdSpill:
    """Partitioned (key, hashed, line) files in a temporary folder, removed on exit."""

    def __init__(self, partitions: int) -> None:
        self.partitions = min(max(partitions, 1), 256)
        self._folder = Path(tempfile.mkdtemp(prefix="txcat-ids-"))
        self._buffer: list[pl.DataFrame] = []
        self._buffered = 0
        self._flushes = 0
        self._generation = 0
        self._texts = self._uuids = False  # met: a text spilled as itself, a UUID spelling

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
        ids = named.select(stripped("id")).to_series()
        spelled = uuid_spelled(ids)
        final = spelled | (ids.str.len_bytes() > _TEXT_KEY_BYTES)  # keyed by transaction id
        self._uuids |= bool(spelled.any())
        self._texts |= not final.all()
        keys = _hashed_where(ids, final)
        self._add(pl.DataFrame({"key": keys, "hashed": final, "line": named["line"]}))

    def repeated_lines(self) -> np.ndarray:
        """The sorted lines whose id appeared on an earlier line."""
        self._flush()
        if self._texts and self._uuids:
            self._hash_texts()
        found = []
        for files in self._partitions():
            keys = pl.concat([pl.read_ipc(f) for f in files]).sort("line")
            found.append(keys.filter(~pl.col("key").is_first_distinct())["line"].to_numpy())
        return np.sort(np.concatenate(found)) if found else np.empty(0, np.int64)

    def _hash_texts(self) -> None:
        """Every text key replaced by its transaction id (uuid5), into a new generation of
        partitions, one old partition at a time."""
        old = list(self._partitions())
        self._generation += 1
        for files in old:
            for path in files:
                part = pl.read_ipc(path)
                keys = _hashed_where(part["key"], ~part["hashed"])
                self._add(part.with_columns(key=keys, hashed=pl.lit(True)))
                path.unlink()
        self._flush()

    def _partitions(self) -> list[list[Path]]:
        found = []
        for partition in range(self.partitions):
            files = sorted(self._folder.glob(f"g{self._generation}-p{partition}-*.arrow"))
            if files:
                found.append(files)
        return found

    def _add(self, frame: pl.DataFrame) -> None:
        self._buffer.append(frame)
        self._buffered += frame.height
        if self._buffered >= _FLUSH_ROWS:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        frame = pl.concat(self._buffer).with_columns(part=pl.col("key").hash() % self.partitions)
        for (partition,), rows in frame.partition_by("part", as_dict=True).items():
            path = self._folder / f"g{self._generation}-p{partition}-{self._flushes}.arrow"
            rows.drop("part").write_ipc(path)
        self._flushes += 1
        self._buffer, self._buffered = [], 0


def _hashed_where(keys: pl.Series, where: pl.Series) -> pl.Series:
    """The keys, those flagged in `where` replaced by their transaction id."""
    if not where.any():
        return keys
    return keys.scatter(np.flatnonzero(where.to_numpy()), transaction_keys(keys.filter(where)))
