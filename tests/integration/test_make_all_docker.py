"""The Docker branch of `make all|down|clean`, end to end through the Makefile, on a copy of the
project: a recording stand-in for `docker` on PATH (no engine here) and a fake Airflow
api-server on 127.0.0.1. The host Python runs with -S (no site-packages): the branch needs the
standard library only and must build no virtualenv."""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from devstack import compose_env
from tests.support.fake_docker import FakeAirflow, calls, fake_airflow, install_stand_in

ROOT = Path(__file__).resolve().parents[2]
HOST_PYTHON = f"{getattr(sys, '_base_executable', sys.executable)} -S"
DEMO = "data/transactions.csv"
UP = ["compose", "up", "--detach", "--build", "--wait", "--wait-timeout", "60"]
PRODUCE = ["compose", "--profile", "producer", "run", "--rm", "producer"]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The files `make all` reads with Docker: the Makefile, devstack/, compose, env, data."""
    copy = tmp_path / "project"
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "devstack", copy / "devstack", ignore=ignore)
    for name in ("Makefile", "docker-compose.yml", ".env.example", DEMO):
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, copy / name)
    return copy


def _make(
    project: Path, bin_dir: Path, target: str, **env: str
) -> subprocess.CompletedProcess[str]:
    environment = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "HOME": str(project),
        "LANG": "C.UTF-8",
        "STACK_TIMEOUT_S": "60",
        **env,
    }
    return subprocess.run(
        ["make", "--no-print-directory", target, f"PYTHON={HOST_PYTHON}"],
        cwd=project,
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
    )


def _airflow_calls(fake: FakeAirflow) -> list[tuple[str, str]]:
    return [(method, path.split("?")[0]) for method, path, _ in fake.requests]


def test_make_all_with_docker_writes_secrets_waits_triggers_replays_and_reports(
    project: Path, tmp_path: Path
) -> None:
    log = tmp_path / "docker.log"
    install_stand_in(tmp_path / "bin", log, ps=_healthy_services())
    run_id = f"make_all__transactions__{_digest(project / DEMO)}"
    run_path = f"/api/v2/dags/categorise_transactions/dagRuns/{run_id}"

    with fake_airflow(project / ".env") as airflow:
        result = _make(project, tmp_path / "bin", "all", AIRFLOW_HOST_PORT=str(airflow.port))

    assert result.returncode == 0, result.stdout + result.stderr
    assert not (project / ".venv").exists(), "the Docker branch built a virtualenv"
    env = project / ".env"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    values = compose_env.read(env)
    assert compose_env.problems(values) == []
    assert calls(log) == [
        ["info"],
        ["compose", "version", "--short"],
        UP,
        ["compose", "exec", "-T", "kafka", "/opt/kafka/bin/kafka-get-offsets.sh",
         "--bootstrap-server", "localhost:9092", "--topic", "transactions"],
        PRODUCE,
        ["compose", "exec", "-T", "kafka", "/opt/kafka/bin/kafka-consumer-groups.sh",
         "--bootstrap-server", "localhost:9092", "--describe", "--group", "txcat-categoriser"],
        ["compose", "ps", "--all", "--format", "json"],
        ["compose", "exec", "-T", "postgres", "psql", "-U", "txcat_analyst", "-d", "txcat",
         "-AtX", "-F", "\t", "-c", calls(log)[-1][-1]],
    ]  # fmt: skip
    assert _airflow_calls(airflow)[:5] == [
        ("POST", "/auth/token"),
        ("GET", "/api/v2/dags/categorise_transactions"),
        ("PATCH", "/api/v2/dags/categorise_transactions"),
        ("GET", run_path),
        ("POST", "/api/v2/dags/categorise_transactions/dagRuns"),
    ]
    unpause, trigger = airflow.requests[2][2], airflow.requests[4][2]
    assert unpause == {"is_paused": False}
    assert trigger == {"dag_run_id": run_id, "logical_date": None, "conf": {"path": DEMO}}
    assert airflow.runs == {run_id: "success"}
    out = result.stdout
    assert f"wrote {env} with random secrets" in out
    assert f"DAG run {run_id}: success" in out
    assert "topic transactions: 10000 records, consumer lag 0" in out
    assert f"airflow-api-server     up     http://127.0.0.1:{airflow.port}" in out
    assert "ml-api                 up     http://127.0.0.1:8000/docs" in out
    assert "check-secrets          done" in out
    assert f"Airflow login: user admin, password {values['AIRFLOW_ADMIN_PASSWORD']}" in out
    assert "rows in categorised_transactions  9988" in out
    assert "category groceries                700" in out
    howto = (ROOT / "HOWTO.md").read_text().split("### With Docker")[1].split("\n## ")[0]
    for call in calls(log)[2:-1]:  # after the two checks of docker, before the counts query
        command = shlex.join(["docker", *call]).replace("--wait-timeout 60", "--wait-timeout 900")
        assert command in howto, f"HOWTO's Docker section does not show {command}"


def test_a_second_make_all_only_checks_and_reports(project: Path, tmp_path: Path) -> None:
    log = tmp_path / "docker.log"
    state = install_stand_in(tmp_path / "bin", log, ps=_healthy_services())
    with fake_airflow(project / ".env") as airflow:
        port = str(airflow.port)
        assert _make(project, tmp_path / "bin", "all", AIRFLOW_HOST_PORT=port).returncode == 0
        secrets_before = (project / ".env").read_text()
        log.unlink()
        airflow.requests.clear()

        again = _make(project, tmp_path / "bin", "all", AIRFLOW_HOST_PORT=port)

    assert again.returncode == 0, again.stdout + again.stderr
    assert (project / ".env").read_text() == secrets_before
    assert PRODUCE not in calls(log)
    assert "topic transactions already holds 10000 records: replay skipped" in again.stdout
    assert ("POST", "/api/v2/dags/categorise_transactions/dagRuns") not in _airflow_calls(airflow)
    assert state.exists()


def test_make_all_shows_the_failing_service_and_stops_when_up_fails(
    project: Path, tmp_path: Path
) -> None:
    log = tmp_path / "docker.log"
    failed = {"Service": "check-secrets", "State": "exited", "ExitCode": 1, "Health": ""}
    ps = [failed, {"Service": "kafka", "State": "running", "Health": "healthy", "ExitCode": 0}]
    install_stand_in(tmp_path / "bin", log, up_status=1, ps=ps)

    with fake_airflow(project / ".env") as airflow:
        result = _make(project, tmp_path / "bin", "all", AIRFLOW_HOST_PORT=str(airflow.port))

    assert result.returncode != 0
    assert "--- last lines of check-secrets (exited 1) ---" in result.stdout
    assert "(log of check-secrets)" in result.stdout
    assert ["compose", "logs", "--tail", "60", "--no-log-prefix", "check-secrets"] in calls(log)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: docker compose up did not get healthy within 60s: check-secrets (exited 1)"
    ]
    assert airflow.requests == []


def test_make_all_refuses_the_placeholders_before_calling_compose(
    project: Path, tmp_path: Path
) -> None:
    log = tmp_path / "docker.log"
    install_stand_in(tmp_path / "bin", log)
    shutil.copy(project / ".env.example", project / ".env")

    result = _make(project, tmp_path / "bin", "all")

    assert result.returncode != 0
    assert f"error: {project / '.env'}: POSTGRES_PASSWORD is the placeholder" in result.stderr
    assert UP not in calls(log)


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (
            {"engine": False},
            "error: STACK_BACKEND=docker, but the Docker engine does not answer "
            "(Cannot connect to the Docker daemon at unix:///var/run/docker.sock.): "
            "start the Docker engine",
        ),
        (
            {"compose": False},
            "error: STACK_BACKEND=docker, but the Docker engine answers but the compose plugin "
            "is missing: install docker-compose-plugin (`docker compose version` must work)",
        ),
        (
            {"compose_version": "2.20.2"},
            "error: STACK_BACKEND=docker, but docker compose 2.20.2 is too old: install 2.24 "
            "or newer",
        ),
    ],
    ids=["no-engine", "no-compose-plugin", "old-compose"],
)
def test_docker_without_engine_or_compose_is_one_clear_line(
    project: Path, tmp_path: Path, state: dict[str, object], expected: str
) -> None:
    install_stand_in(tmp_path / "bin", tmp_path / "docker.log", **state)

    result = _make(project, tmp_path / "bin", "all", STACK_BACKEND="docker")

    assert result.returncode != 0
    assert [line for line in result.stderr.splitlines() if not line.startswith("make")] == [
        expected
    ]
    assert not (project / ".venv").exists()


def test_auto_falls_back_to_native_when_the_engine_is_down_but_not_without_compose(
    project: Path, tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path)}
    backend = [*HOST_PYTHON.split(), "-m", "devstack.compose", "backend"]

    install_stand_in(bin_dir, tmp_path / "docker.log", engine=False)
    engine_down = subprocess.run(backend, cwd=project, env=env, capture_output=True, text=True)
    install_stand_in(bin_dir, tmp_path / "docker.log", compose=False)
    no_compose = subprocess.run(backend, cwd=project, env=env, capture_output=True, text=True)
    install_stand_in(bin_dir, tmp_path / "docker.log")
    ready = subprocess.run(backend, cwd=project, env=env, capture_output=True, text=True)

    assert (engine_down.returncode, engine_down.stdout) == (0, "native\n")
    assert "using the native stack" in engine_down.stderr
    assert no_compose.returncode == 1
    assert "STACK_BACKEND=native make all" in no_compose.stderr
    assert (ready.returncode, ready.stdout) == (0, "docker\n")


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("down", ["compose", "down"]),
        ("clean", ["compose", "down", "--volumes", "--remove-orphans"]),
        ("logs", ["compose", "logs", "--tail", "50"]),
    ],
)
def test_make_down_clean_and_logs_with_docker(
    project: Path, tmp_path: Path, target: str, expected: list[str]
) -> None:
    log = tmp_path / "docker.log"
    install_stand_in(tmp_path / "bin", log)

    result = _make(project, tmp_path / "bin", target)

    assert result.returncode == 0, result.stderr
    assert calls(log)[-1] == expected
    assert not (project / ".venv").exists()
    assert f"make {target}" in (ROOT / "HOWTO.md").read_text().split("### With Docker")[1]
    assert shlex.join(["docker", *expected]) in (ROOT / "HOWTO.md").read_text()


def _healthy_services() -> list[dict[str, object]]:
    running = [
        "postgres",
        "kafka",
        "ml-api",
        "consumer",
        "airflow-api-server",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
    ]
    rows: list[dict[str, object]] = [
        {"Service": name, "State": "running", "Health": "healthy", "ExitCode": 0}
        for name in running
    ]
    for name in ("check-secrets", "kafka-init", "migrate", "airflow-init"):
        rows.append({"Service": name, "State": "exited", "Health": "", "ExitCode": 0})
    return rows


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
