from pathlib import Path

from pipeline.entrypoints.orchestration import inspect_file

HEADER = "id;description;amount;timestamp;merchant;operation_type;side"


def test_file_report_counts_repeated_ids_as_a_run_rejects_them(tmp_path: Path) -> None:
    rows = [
        '5;"bad amount first";abc;"2023-01-01 00:00:00";"M";"payment";"debit"',
        '5;"same id, valid";-1,00;"2023-01-01 00:00:00";"M";"payment";"debit"',
        '6;"fine";-1,00;"2023-01-01 00:00:00";"M";"payment";"debit"',
        ' 6;"same id, spaced";-1,00;"2023-01-01 00:00:00";"M";"payment";"debit"',
    ]
    path = tmp_path / "f.csv"
    path.write_text("\n".join([HEADER, *rows]))
    report = inspect_file(str(path))
    assert report["rows"] == 4
    assert report["invalid_by_reason"] == {"invalid_amount": 1}
    assert report["duplicate_ids"] == 2
    assert report["valid"] == 1
