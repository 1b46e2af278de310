"""CSV files as columnar chunks: planned once into byte windows, each read alone.

Whatever the delimiter, BOM, line endings or encoding: rows are numbered by the physical line
they start on (the header is line 1); a row with the wrong number of fields or bytes that are
not UTF-8 becomes a record with a parse error, never an abort (see `csv_blocks`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.adapters.csv_blocks import Block, Header, parse_fast, parse_slow
from pipeline.adapters.id_spill import IdSpill
from pipeline.domain.chunks import RawChunk
from pipeline.domain.errors import ConfigurationError, FileChanged
from pipeline.domain.model import FileFacts, RawRecord
from pipeline.domain.plans import FilePlan, Window
from pipeline.domain.validation import REQUIRED_FIELDS

logger = logging.getLogger(__name__)

BLOCK_BYTES = 4 << 20
_MAX_GROWTH = 8  # a record longer than a block: up to 8 blocks, then the slow path reads it


class CsvTransactionFile:
    """A TransactionFile over a CSV file, read block by block (memory stays flat)."""

    def __init__(self, path: Path, block_bytes: int = BLOCK_BYTES) -> None:
        self.path = path
        self.block_bytes = block_bytes

    def facts(self) -> FileFacts:
        """Exists, readable, a usable header: cheap checks that read one line."""
        header = self._header()
        return FileFacts(str(self.path), self.path.stat().st_size, header.names)

    def estimate_rows(self) -> int:
        """Physical lines minus the header: a quick total for progress bars."""
        return estimate_rows(self.path)

    def plan(self, rows_per_window: int) -> FilePlan:
        """One pass: windows of `rows_per_window` records cut at record boundaries, each with
        its bytes' digest; the ids of every row spilled to disk to find, for the whole file,
        the lines whose id appeared earlier (memory stays flat whatever the file's size)."""
        header = self._header()
        size = self.path.stat().st_size
        cuts: list[tuple[int, int, int, int, int]] = []  # start, end, first, last, rows
        start, rows, first, last = header.data_start, 0, 2, 2
        blocks = self._blocks(header, header.data_start, size, 2, rows_per_window)
        with IdSpill(max(self.estimate_rows() // 200_000, 1)) as spill:
            for offset, line, block in blocks:
                if not rows:
                    start, first = offset, line
                if block.lines.size:
                    spill.add(block.chunk.frame, block.lines)
                    last = int(block.lines[-1])
                rows += block.chunk.height
                if rows >= rows_per_window:
                    cuts.append((start, offset + block.size, first, last, rows))
                    rows = 0
            if rows or not cuts:
                end_start = start if rows else header.data_start
                cuts.append((end_start, size, first, max(last, first), rows))
            repeated = spill.repeated_lines()
        windows = tuple(
            Window(s, e, first, last, n, self._digest(s, e), _between(repeated, first, last))
            for s, e, first, last, n in cuts
        )
        fingerprint = hashlib.sha256("".join(w.digest for w in windows).encode()).hexdigest()
        return FilePlan(str(self.path), size, fingerprint, windows)

    def chunks(self, plan: FilePlan, window: Window, chunk_rows: int) -> Iterator[RawChunk]:
        """The records of one window, `chunk_rows` at a time, after checking that the file is
        still the one planned (size and the window's digest): never a mix of two files."""
        self._check(plan, window)
        header = self._header()
        repeated = np.asarray(window.repeated, dtype=np.int64)
        blocks = self._blocks(header, window.start, window.end, window.first_line, chunk_rows)
        for _, _, block in blocks:
            flags = pl.Series("repeated", np.isin(block.lines, repeated), pl.Boolean)
            yield RawChunk(block.chunk.frame, block.chunk.record, flags)

    def records(self, first_line: int = 0, last_line: int | None = None) -> Iterator[RawRecord]:
        """Every record starting on a line in [first_line, last_line], as objects (the producer
        and tools; the pipelines read `chunks`)."""
        header = self._header()
        size = self.path.stat().st_size
        for _, _, block in self._blocks(header, header.data_start, size, 2, 50_000):
            for row, line in enumerate(block.lines.tolist()):
                if last_line is not None and line > last_line:
                    return
                if line >= first_line:
                    yield block.chunk.record(row)

    def _blocks(
        self, header: Header, start: int, end: int, first_line: int, max_records: int
    ) -> Iterator[tuple[int, int, Block]]:
        source = str(self.path)
        with _open_binary(self.path) as handle:
            offset, line, growth = start, first_line, 1
            per_record = 256.0  # bytes, learnt as blocks go: read about what a chunk needs
            while offset < end:
                wanted = min(self.block_bytes, int(max_records * per_record * 1.2) + 65536)
                handle.seek(offset)
                data = handle.read(min(wanted * growth, end - offset))
                final = offset + len(data) >= end
                block = parse_fast(data, header, line, source, final, max_records)
                if block is None and not final and growth < _MAX_GROWTH:
                    growth *= 2  # maybe one record longer than the block: read more first
                    continue
                if block is None:
                    lines = _physical_lines(handle, offset, end)
                    target = max(len(data), 1)
                    block = parse_slow(lines, header, line, source, target, max_records)
                yield offset, line, block
                if block.chunk.height:
                    per_record = block.size / block.chunk.height
                offset, line, growth = offset + block.size, line + block.covered_lines, 1

    def _header(self) -> Header:
        with _open(self.path) as handle:
            header_line = handle.readline()
        delimiter = sniff_delimiter(header_line)
        names = [n.strip().lower() for n in next(csv.reader([header_line], delimiter=delimiter))]
        _check_header(self.path, names)
        with _open_binary(self.path) as raw:
            bom = 3 if raw.read(3) == b"\xef\xbb\xbf" else 0
        data_start = bom + len(header_line.encode("utf-8", "surrogateescape"))
        return Header(tuple(names), delimiter, data_start)

    def _digest(self, start: int, end: int) -> str:
        digest = hashlib.sha256()
        with _open_binary(self.path) as handle:
            handle.seek(start)
            left = end - start
            while left > 0:
                data = handle.read(min(1 << 20, left))
                if not data:
                    break
                digest.update(data)
                left -= len(data)
        return digest.hexdigest()

    def _check(self, plan: FilePlan, window: Window) -> None:
        try:
            size = os.stat(self.path).st_size
        except OSError as exc:
            raise FileChanged(f"{self.path} is gone since it was planned: {exc.strerror}") from exc
        if size != plan.size or self._digest(window.start, window.end) != window.digest:
            raise FileChanged(
                f"{self.path} changed since it was planned (size {plan.size} then, {size} now,"
                f" or other bytes in lines {window.first_line}-{window.last_line}): not mixing"
                " two files; start a new run on the new file"
            )


def _between(lines: np.ndarray, first: int, last: int) -> tuple[int, ...]:
    return tuple(lines[(lines >= first) & (lines <= last)].tolist())


def _physical_lines(handle: io.BufferedReader, start: int, end: int) -> Iterator[bytes]:
    """Lines of bytes [start, end) as a text file with newline="" splits them (\\n, \\r, \\r\\n)."""
    handle.seek(start)
    offset, pending = start, b""
    while offset < end:
        data = handle.read(min(1 << 20, end - offset))
        if not data:
            break
        offset += len(data)
        lines = (pending + data).splitlines(keepends=True)
        pending = b""
        if offset < end and lines and (lines[-1].endswith(b"\r") or not lines[-1].endswith(b"\n")):
            pending = lines.pop()  # incomplete, or a \r whose \n may follow
        yield from lines
    if pending:
        yield pending


def sniff_delimiter(header_line: str) -> str:
    """`;` or `,`, whichever the header uses more."""
    return ";" if header_line.count(";") >= header_line.count(",") else ","


def count_rows(path: Path) -> int:
    """Count data rows (not physical lines) without validating them."""
    file = CsvTransactionFile(path)
    header = file._header()
    blocks = file._blocks(header, header.data_start, path.stat().st_size, 2, 50_000)
    return sum(block.chunk.height for _, _, block in blocks)


def _open(path: Path) -> io.TextIOWrapper:
    if not path.is_file():
        raise ConfigurationError(f"input file not found: {path}")
    try:
        # surrogateescape keeps undecodable bytes so that the row, not the file, gets rejected.
        return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")
    except OSError as exc:
        raise ConfigurationError(f"input file not readable: {path}: {exc.strerror}") from exc


def _open_binary(path: Path) -> io.BufferedReader:
    try:
        return open(path, "rb")
    except OSError as exc:
        raise ConfigurationError(f"input file not readable: {path}: {exc.strerror}") from exc


def _check_header(path: Path, header: list[str]) -> None:
    missing = [name for name in (*REQUIRED_FIELDS, "merchant") if name not in header]
    if missing:
        raise ConfigurationError(
            f"{path}: header {header} lacks the column(s) {missing}; "
            "expected id;description;amount;timestamp;merchant;operation_type;side"
        )


def estimate_rows(path: Path) -> int:
    """Physical lines minus the header: a quick total for progress bars."""
    with open(path, "rb") as handle:
        newlines = sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))
    with open(path, "rb") as handle:
        handle.seek(max(path.stat().st_size - 1, 0))
        unterminated = handle.read(1) not in (b"\n", b"")
    return max(newlines + int(unterminated) - 1, 0)
