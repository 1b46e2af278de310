"""CSV files read as planned byte windows: the fast path reads what Python's csv module reads,
each window reads only its own bytes, and a file changed since its plan is refused."""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pipeline.adapters.csv_blocks import parse_slow
from pipeline.adapters.csv_source import CsvTransactionFile, _physical_lines
from pipeline.domain.errors import FileChanged
from pipeline.domain.model import RawRecord

HEADER = "id;description;amount;timestamp;merchant;operation_type;side"


def write(path: Path, rows: list[str], newline: str = "\n") -> Path:
    path.write_bytes((newline.join([HEADER, *rows]) + newline).encode("utf-8", "surrogateescape"))
    return path


def row(n: int | str, description: str = "d") -> str:
    return f'{n};"{description}";-1,00;2024-01-01 10:00:00;m;payment;debit'


def slow_records(path: Path) -> list[RawRecord]:
    """Every record by Python's csv module alone (the row-by-row reader's way)."""
    file = CsvTransactionFile(path)
    header = file._header()
    with open(path, "rb") as handle:
        lines = _physical_lines(handle, header.data_start, path.stat().st_size)
        block = parse_slow(lines, header, 2, str(path), 1 << 62, 1 << 62)
    return [block.chunk.record(n) for n in range(block.chunk.height)]


def test_a_file_replaced_after_its_plan_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "f.csv", [row(n) for n in range(1, 10)])
    file = CsvTransactionFile(path)
    plan = file.plan(3)
    assert [w.rows for w in plan.windows] == [3, 3, 3]
    write(path, [row(n, "e") for n in range(1, 10)])  # same size, other bytes
    with pytest.raises(FileChanged, match="changed since it was planned"):
        list(file.chunks(plan, plan.windows[1], 10))
    write(path, [row(n) for n in range(1, 11)])  # appended to
    with pytest.raises(FileChanged):
        list(file.chunks(plan, plan.windows[0], 10))


def test_each_window_reads_its_own_rows_and_gets_the_file_s_repeats(tmp_path: Path) -> None:
    path = write(tmp_path / "f.csv", [row(1), row(2), row(3), row(4), row(" 1 "), row(6)])
    file = CsvTransactionFile(path)
    plan = file.plan(2)
    assert [(w.first_line, w.last_line, w.repeated) for w in plan.windows] == [
        (2, 3, ()),
        (4, 5, ()),
        (6, 7, (6,)),  # " 1 " is id 1 again, first met on line 2
    ]
    ids = []
    for window in plan.windows:
        for chunk in file.chunks(plan, window, 10):
            ids.append(chunk.frame["id"].to_list())
            assert chunk.repeated is not None
    assert ids == [["1", "2"], ["3", "4"], [" 1 ", "6"]]
    [last] = file.chunks(plan, plan.windows[2], 10)
    assert last.repeated is not None and last.repeated.to_list() == [True, False]


FIELD = st.text(
    alphabet=st.sampled_from(list('ab é;,"\n\r\t') + ["\x00", "\ufeff", "☕"]), max_size=8
)


@st.composite
def dirty_files(draw: st.DrawFn) -> list[str]:
    """Rows written by csv.writer (quoted as needed) and raw lines of every shape."""
    lines = []
    for _ in range(draw(st.integers(1, 25))):
        kind = draw(st.integers(0, 5))
        if kind == 0:
            lines.append(draw(FIELD))  # a raw line: blank, ragged, stray quotes…
            continue
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=";", lineterminator="")
        width = 7 if kind > 1 else draw(st.integers(1, 9))
        writer.writerow([draw(FIELD) for _ in range(width)])
        lines.append(buffer.getvalue())
    return lines


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dirty_files(), st.sampled_from(["\n", "\r\n"]), st.sampled_from([64, 256, 1 << 20]))
@example(["", "", "", "", "\ufeff;;;;;;"], "\n", 64)  # a block opening on U+FEFF kept it
def test_the_block_reader_reads_what_python_csv_reads(
    lines: list[str], newline: str, block_bytes: int
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = write(Path(folder) / "f.csv", lines, newline)
        file = CsvTransactionFile(path, block_bytes=block_bytes)
        got = list(file.records())
        want = slow_records(path)
    assert [(r.position.line, r.raw, r.fields, r.parse_error) for r in got] == [
        (r.position.line, r.raw, r.fields, r.parse_error) for r in want
    ]
