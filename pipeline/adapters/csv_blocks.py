"""Parsing a CSV byte block into a columnar chunk, exactly as Python's csv module would.

The fast path: numpy finds the record boundaries (newlines outside quotes, by quote parity) and
counts each record's fields; polars parses the well-formed records in Rust. It applies only
where the parity model is exact: valid UTF-8, every quote opening a field, closing one or
doubled, no bare carriage return. Any other block takes the slow path: Python's csv reader,
record by record, with the same line numbers, payloads and errors as the row-by-row reader
had, so a dirty block costs what it always did and a clean one a fraction of it.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl

from pipeline.domain.chunks import FIELDS, RAW_SCHEMA, RawChunk, fields_of, raw_frame, records_frame
from pipeline.domain.model import RawRecord, Reason, SourcePosition

csv.field_size_limit(1 << 20)
_QUOTE, _LF, _CR = 34, 10, 13
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Header:
    """The file's columns (lower-cased), its delimiter and where its data starts."""

    names: tuple[str, ...]
    delimiter: str
    data_start: int

    def index(self, name: str) -> int | None:
        """The last column of that name (a repeated name: the last wins, as in a dict)."""
        found = [i for i, column in enumerate(self.names) if column == name]
        return found[-1] if found else None


@dataclass(frozen=True)
class Block:
    """A parsed block: its chunk, how many bytes and physical lines it covered."""

    chunk: RawChunk
    size: int
    covered_lines: int  # physical lines the block spans (the next block starts after them)
    lines: np.ndarray  # the line each record starts on


def parse_fast(
    data: bytes, header: Header, first_line: int, source: str, final: bool, max_records: int
) -> Block | None:
    """The records of `data` up to its last complete one (at most `max_records`), or None when
    the block is not one the fast path reads exactly (the caller takes the slow path)."""
    if b"\r" in data and data.count(b"\r") != data.count(b"\r\n"):
        return None
    codes = np.frombuffer(data, np.uint8)
    delimiter = ord(header.delimiter)
    # The quotes, newlines and delimiters, in order, each with the parity of the quotes before
    # it: one scan of the bytes, then work on these few positions only.
    special = np.flatnonzero((codes == _QUOTE) | (codes == _LF) | (codes == delimiter))
    kinds = codes[special]
    is_quote = kinds == _QUOTE
    outside = (np.cumsum(is_quote, dtype=np.int32) - is_quote) & 1 == 0
    is_newline = kinds == _LF
    quotes = special[is_quote]
    newlines = special[is_newline]
    ends = special[is_newline & outside]  # record ends, outside quotes
    if final and len(quotes) % 2 == 0 and (not len(codes) or codes[-1] != _LF):
        ends = np.append(ends, len(codes))  # the last record has no newline
    if not len(ends):
        return None
    ends = ends[:max_records]
    size = min(int(ends[-1]) + 1, len(codes))
    body = codes[:size]
    quotes = quotes[quotes < size]
    if not _quoting_is_plain(body, quotes, delimiter):
        return None
    if int(body.max(initial=0)) >= 0x80:  # not ASCII: check it is UTF-8 (else the slow path)
        try:
            data[:size].decode("utf-8")
        except UnicodeDecodeError:
            return None
    starts = np.concatenate(([0], ends[:-1] + 1))
    fields = _field_counts(special, kinds == delimiter, outside, is_newline & outside, ends)
    ends_clean = np.minimum(ends, size)
    text_end = ends_clean - ((ends_clean > starts) & (body[np.maximum(ends_clean - 1, 0)] == _CR))
    blank = text_end == starts
    width = len(header.names)
    good = ~blank & (fields == width)
    frame = _frame(data, header, starts, ends_clean, good, blank, fields)
    if frame is None:
        return None
    keep = ~blank
    lines = first_line + np.searchsorted(newlines, starts[keep])
    spans = (starts[keep], ends_clean[keep])
    covered = int(np.searchsorted(newlines, size))  # newlines before `size`
    return Block(_chunk(frame, data[:size], spans, lines, source), size, covered, lines)


def _quoting_is_plain(body: np.ndarray, quotes: np.ndarray, delimiter: int) -> bool:
    """Every quote opens a field (after a delimiter or a newline), closes one (before a
    delimiter, a newline or the end) or is one of a doubled pair inside a quoted field."""
    if not len(quotes):
        return True
    if len(quotes) % 2:
        return False
    # Quote 2k opens (or is the second of a doubled pair: a quote before it), quote 2k+1
    # closes (or is the first of a pair: a quote after it).
    opening, closing = quotes[0::2], quotes[1::2]
    may_precede = np.zeros(256, bool)
    may_precede[[delimiter, _LF, _QUOTE]] = True
    may_follow = np.zeros(256, bool)
    may_follow[[delimiter, _LF, _CR, _QUOTE]] = True
    before = may_precede[body[np.maximum(opening - 1, 0)]] | (opening == 0)
    after_index = closing + 1
    after = may_follow[body[np.minimum(after_index, len(body) - 1)]] | (after_index >= len(body))
    return bool(before.all() and after.all())


def _field_counts(
    special: np.ndarray,
    is_delimiter: np.ndarray,
    outside: np.ndarray,
    is_end: np.ndarray,
    ends: np.ndarray,
) -> np.ndarray:
    """Fields per record: the delimiters outside quotes, counted per record end before them."""
    record = np.cumsum(is_end, dtype=np.int32) - is_end  # ends before each position: its record
    counted = is_delimiter & outside & (special <= ends[-1])
    return np.bincount(record[counted], minlength=len(ends))[: len(ends)] + 1


def _frame(
    data: bytes,
    header: Header,
    starts: np.ndarray,
    ends: np.ndarray,
    good: np.ndarray,
    blank: np.ndarray,
    fields: np.ndarray,
) -> pl.DataFrame | None:
    width = len(header.names)
    if good.all():
        body = data[: int(ends[-1]) + 1]
    else:
        body = b"".join(data[s : e + 1] for s, e in zip(starts[good], ends[good], strict=True))
        if body and not body.endswith(b"\n"):
            body += b"\n"
    if body.startswith(_BOM):  # polars would drop it from the first field: the slow path
        return None
    schema = {f"c{i}": pl.String for i in range(width)}
    try:
        parsed = pl.read_csv(
            body, has_header=False, separator=header.delimiter, quote_char='"', schema=schema
        ) if body else pl.DataFrame(schema=schema)  # fmt: skip
    except pl.exceptions.PolarsError:
        return None
    if parsed.height != int(good.sum()):
        return None
    frame = _named(parsed, header)
    kept = ~blank
    if good[kept].all():
        return frame
    order = np.flatnonzero(good[kept])
    bad = ~good[kept]
    found = fields[kept][bad]
    errors = pl.DataFrame(
        {
            "order": np.flatnonzero(bad),
            "parse_error": [f"expected {width} fields, found {n}" for n in found],
            "parse_reason": [str(Reason.MALFORMED_ROW)] * int(bad.sum()),
        }
    )
    frame = frame.with_columns(order=pl.Series(order))
    merged = pl.concat([frame, errors], how="diagonal_relaxed").sort("order")
    return raw_frame(merged.drop("order"))


def _named(parsed: pl.DataFrame, header: Header) -> pl.DataFrame:
    """The header's fields by name; an event-style `source_id` column names the record first."""
    columns = {}
    for name in FIELDS:
        index = header.index(name)
        columns[name] = pl.col(f"c{index}") if index is not None else pl.lit(None, pl.String)
    source = header.index("source_id")
    if source is not None:
        given = pl.col(f"c{source}")
        columns["id"] = (
            pl.when(given.is_null() | (given == "")).then(columns["id"]).otherwise(given)
        )
    return raw_frame(parsed.select(**columns))


def _chunk(
    frame: pl.DataFrame,
    data: bytes,
    spans: tuple[np.ndarray, np.ndarray],
    lines: np.ndarray,
    source: str,
) -> RawChunk:
    starts, ends = spans

    def record(row: int) -> RawRecord:
        raw = data[int(starts[row]) : int(ends[row]) + 1].decode("utf-8").rstrip("\r\n")
        values = frame.row(row, named=True)
        position = SourcePosition(source, line=int(lines[row]))
        if values["parse_error"] is not None:
            return RawRecord(position, raw, None, values["parse_error"])
        fields = fields_of(frame, row) or {}
        return RawRecord(position, raw, {name: value or "" for name, value in fields.items()})

    return RawChunk(frame, record)


def parse_slow(
    lines: Iterator[bytes],
    header: Header,
    first_line: int,
    source: str,
    target: int,
    max_records: int,
) -> Block:
    """Python's csv reader over physical lines, until a record ends at or past `target` bytes
    (or the lines run out). Rows keep the starting line, raw text and errors they always had."""
    tap = _LineTap(lines)
    reader = csv.reader(tap, delimiter=header.delimiter, strict=True)
    records: list[RawRecord] = []
    line = first_line
    width = len(header.names)
    while tap.consumed < target and len(records) < max_records:
        tap.taken.clear()
        try:
            row = next(reader)
            error = None
        except StopIteration:
            break
        except csv.Error as exc:
            row, error = [], f"unparseable CSV: {exc}"
        start, line = line, line + len(tap.taken)
        if not row and error is None:
            continue
        raw = "".join(tap.taken).rstrip("\r\n")
        records.append(_record(source, start, raw, header, row, width, error))
    frame = records_frame(records) if records else pl.DataFrame(schema=RAW_SCHEMA)
    starts = np.array([record.position.line or 0 for record in records], dtype=np.int64)
    return Block(RawChunk(frame, records.__getitem__), tap.consumed, tap.count, starts)


class _LineTap:
    """Decoded lines for the csv reader, remembering those one row took and the bytes read."""

    def __init__(self, lines: Iterator[bytes]) -> None:
        self._lines = lines
        self.taken: list[str] = []
        self.consumed = 0
        self.count = 0

    def __iter__(self) -> _LineTap:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.consumed += len(line)
        self.count += 1
        text = line.decode("utf-8", "surrogateescape")
        self.taken.append(text)
        return text


def _record(
    source: str, line: int, raw: str, header: Header, row: list[str], width: int, error: str | None
) -> RawRecord:
    position = SourcePosition(source, line=line)
    try:
        raw.isascii() or raw.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: bytes that were not UTF-8 in the file
        safe = raw.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        return RawRecord(position, safe, None, "row is not valid UTF-8")
    if error is None and len(row) != width:
        error = f"expected {width} fields, found {len(row)}"
    if error is not None:
        return RawRecord(position, raw, None, error)
    return RawRecord(position, raw, dict(zip(header.names, row, strict=True)))
