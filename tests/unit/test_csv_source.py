from pathlib import Path

import pytest

from pipeline.adapters.csv_source import CsvTransactionFile, count_rows
from pipeline.domain.errors import ConfigurationError

HEADER = "id;description;amount;timestamp;merchant;operation_type;side"


def write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "in.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_reads_the_challenge_format_without_trailing_newline(tmp_path: Path) -> None:
    path = write(
        tmp_path, f'{HEADER}\n1;"Card";-952,40;"2023-11-28 06:35:12";"EDF";"refund";"debit"'
    )
    [record] = CsvTransactionFile(path).records()
    assert record.fields is not None
    assert record.fields["amount"] == "-952,40"
    assert record.fields["merchant"] == "EDF"
    assert str(record.position) == f"{path}:2"


def test_bom_crlf_comma_delimiter_embedded_delimiters_and_unicode(tmp_path: Path) -> None:
    text = (
        "\ufeffid,description,amount,timestamp,merchant,operation_type,side\r\n"
        '1,"Café, crème ☕",12.5,2023-01-01T00:00:00Z,,payment,credit\r\n'
        '2,"multi\r\nline",-1.5,2023-01-01 00:00:00,Ünï,transfer,debit\r\n'
    )
    records = list(CsvTransactionFile(write(tmp_path, text)).records())
    assert [r.position.line for r in records] == [2, 3]
    assert records[0].fields is not None and records[0].fields["description"] == "Café, crème ☕"
    assert records[0].fields["merchant"] == ""
    assert records[1].fields is not None and records[1].fields["description"] == "multi\r\nline"


def test_wrong_field_count_and_bad_bytes_become_parse_errors_not_aborts(tmp_path: Path) -> None:
    body = f'{HEADER}\n1;a;b\n2;"\xff\xfe";1;2023-01-01;m;t;debit\n3;d;1;2023-01-01;m;t;debit\n'
    records = list(CsvTransactionFile(write(tmp_path, body.encode("latin-1"))).records())
    assert [r.parse_error for r in records] == [
        "expected 7 fields, found 3",
        "row is not valid UTF-8",
        None,
    ]
    assert records[0].raw == "1;a;b"
    assert "\\xff" in records[1].raw


def test_line_window_selects_rows_by_starting_line(tmp_path: Path) -> None:
    body = HEADER + "".join(f"\n{i};d;1;2023-01-01;m;t;debit" for i in range(1, 11))
    path = write(tmp_path, body)
    window = CsvTransactionFile(path).records(first_line=4, last_line=6)
    assert [r.fields["id"] for r in window if r.fields] == ["3", "4", "5"]
    assert count_rows(path) == 10


def test_missing_file_and_bad_header_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not found"):
        list(CsvTransactionFile(tmp_path / "nope.csv").records())
    with pytest.raises(ConfigurationError, match="lacks the column"):
        list(CsvTransactionFile(write(tmp_path, "a;b\n1;2")).records())
