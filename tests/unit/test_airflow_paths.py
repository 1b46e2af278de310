"""The Airflow `path` param is confined to the data folder, and secrets are named for masking."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.domain.errors import ConfigurationError
from pipeline.entrypoints.airflow_tasks import confine, secrets_to_mask


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "data" / "in").mkdir(parents=True)
    (tmp_path / "data" / "in" / "t.csv").write_text("id\n")
    (tmp_path / "secret.txt").write_text("password")
    return tmp_path


def test_a_file_inside_the_data_folder_is_resolved(project: Path) -> None:
    assert confine("data/in/t.csv", project, Path("data")) == project / "data" / "in" / "t.csv"
    absolute = str(project / "data" / "in" / "t.csv")
    assert confine(absolute, project, Path("data")) == Path(absolute)


@pytest.mark.parametrize(
    "raw", ["/proc/self/environ", "/etc/passwd", "data/../secret.txt", "secret.txt", "data/.."]
)
def test_paths_outside_the_data_folder_are_refused(project: Path, raw: str) -> None:
    with pytest.raises(ConfigurationError, match="outside the data folder"):
        confine(raw, project, Path("data"))


def test_a_symlink_out_of_the_data_folder_is_refused(project: Path) -> None:
    link = project / "data" / "in" / "escape.csv"
    os.symlink(project / "secret.txt", link)
    with pytest.raises(ConfigurationError, match="outside the data folder"):
        confine("data/in/escape.csv", project, Path("data"))


def test_the_database_url_and_its_password_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:s3cr%40t@db:5432/txcat")
    assert secrets_to_mask() == ["postgresql://app:s3cr%40t@db:5432/txcat", "s3cr%40t", "s3cr@t"]
    monkeypatch.delenv("DATABASE_URL")
    assert secrets_to_mask() == []


def test_a_file_needing_more_chunks_than_airflow_maps_gets_bigger_chunks(
    tmp_path: Path,
) -> None:
    from pipeline.entrypoints.airflow_tasks import MAX_MAPPED_CHUNKS, plan_chunks

    path = tmp_path / "many.csv"
    rows = 3 * MAX_MAPPED_CHUNKS + 7
    body = "".join(f"{n};d;1;2024-01-01 00:00:00;m;payment;debit\n" for n in range(rows))
    path.write_text("id;description;amount;timestamp;merchant;operation_type;side\n" + body)
    chunks = plan_chunks(str(path), chunk_size=1)
    assert len(chunks) <= MAX_MAPPED_CHUNKS
    assert sum(c["last_line"] - c["first_line"] + 1 for c in chunks) == rows
    assert chunks[0]["first_line"] == 2 and chunks[-1]["last_line"] == rows + 1
