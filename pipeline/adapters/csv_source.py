"""Stream raw records from a CSV file, whatever its delimiter, BOM, line endings or encoding."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterator
from pathlib import Path

from pipeline.domain.errors import ConfigurationError
from pipeline.domain.model import FileFacts, RawRecord, SourcePosition
from pipeline.domain.validation import REQUIRED_FIELDS

logger = logging.getLogger(__name__)

csv.field_size_limit(1 << 20)


class _LineTap:
    """Iterate over text lines while remembering those the csv reader consumed for one row."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines
        self.taken: list[str] = []

    def __iter__(self) -> _LineTap:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.taken.append(line)
        return line


class CsvTransactionFile:
    """A TransactionFile over a CSV file, read as a stream (memory stays flat).

    Rows are numbered by the physical line they start on (the header is line 1).
    A row with the wrong number of fields or bytes that are not UTF-8 becomes a RawRecord
    with a parse error, never an abort.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def facts(self) -> FileFacts:
        """Exists, readable, a usable header: cheap checks that read one line."""
        with _open(self.path) as handle:
            header, _ = _header(self.path, handle)
        return FileFacts(str(self.path), self.path.stat().st_size, tuple(header))

    def records(self, first_line: int = 0, last_line: int | None = None) -> Iterator[RawRecord]:
        """Yield every data row whose starting line lies in [first_line, last_line]."""
        with _open(self.path) as handle:
            header, delimiter = _header(self.path, handle)
            yield from self._rows(handle, header, delimiter, first_line, last_line)

    def estimate_rows(self) -> int:
        """Physical lines minus the header: a quick total for progress bars."""
        return estimate_rows(self.path)

    def _rows(
        self,
        handle: io.TextIOWrapper,
        header: list[str],
        delimiter: str,
        first_line: int,
        last_line: int | None,
    ) -> Iterator[RawRecord]:
        tap = _LineTap(handle)
        reader = csv.reader(tap, delimiter=delimiter, strict=True)
        source, width, line = str(self.path), len(header), 2
        while True:
            tap.taken.clear()
            try:
                row = next(reader)
                error = None
            except StopIteration:
                return
            except csv.Error as exc:
                row, error = [], f"unparseable CSV: {exc}"
            start, line = line, line + len(tap.taken)
            if last_line is not None and start > last_line:
                return
            if start < first_line or (not row and error is None):
                continue
            raw = "".join(tap.taken).rstrip("\r\n")
            yield _record(source, start, raw, header, row, width, error)


def _header(path: Path, handle: io.TextIOWrapper) -> tuple[list[str], str]:
    header_line = handle.readline()
    delimiter = sniff_delimiter(header_line)
    header = [name.strip().lower() for name in next(csv.reader([header_line], delimiter=delimiter))]
    _check_header(path, header)
    return header, delimiter


def sniff_delimiter(header_line: str) -> str:
    """`;` or `,`, whichever the header uses more."""
    return ";" if header_line.count(";") >= header_line.count(",") else ","


def count_rows(path: Path) -> int:
    """Count data rows (not physical lines) without validating them."""
    return sum(1 for _ in CsvTransactionFile(path).records())


def _open(path: Path) -> io.TextIOWrapper:
    if not path.is_file():
        raise ConfigurationError(f"input file not found: {path}")
    try:
        # surrogateescape keeps undecodable bytes so that the row, not the file, gets rejected.
        return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")
    except OSError as exc:
        raise ConfigurationError(f"input file not readable: {path}: {exc.strerror}") from exc


def _check_header(path: Path, header: list[str]) -> None:
    missing = [name for name in (*REQUIRED_FIELDS, "merchant") if name not in header]
    if missing:
        raise ConfigurationError(
            f"{path}: header {header} lacks the column(s) {missing}; "
            "expected id;description;amount;timestamp;merchant;operation_type;side"
        )


def _record(
    source: str,
    line: int,
    raw: str,
    header: list[str],
    row: list[str],
    width: int,
    error: str | None,
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
    return RawRecord(position, raw, dict(zip(header, row, strict=True)))


def estimate_rows(path: Path) -> int:
    """Physical lines minus the header: a quick total for progress bars."""
    with open(path, "rb") as handle:
        newlines = sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))
    with open(path, "rb") as handle:
        handle.seek(max(path.stat().st_size - 1, 0))
        unterminated = handle.read(1) not in (b"\n", b"")
    return max(newlines + int(unterminated) - 1, 0)
