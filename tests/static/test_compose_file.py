"""docker-compose.yml: loaded by compose-go (tools/composecheck) as `docker compose` would, and held
to the house rules (pinned images, healthchecks, named volumes, no committed secret)."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

import ml_api.settings
import pipeline.config

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
CHECKER_SRC = ROOT / "tools" / "composecheck"
CHECKER = ROOT / "tools" / "bin" / "composecheck"

ONE_SHOT = {"kafka-init", "migrate", "producer", "airflow-init"}
SECRETS = {
    "POSTGRES_PASSWORD",
    "AIRFLOW_ADMIN_PASSWORD",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__API__SECRET_KEY",
}
# Read outside the settings classes (typer options, the streaming entry point, the dev stack).
OTHER_VARIABLES = {
    "LOG_FORMAT",
    "LOG_LEVEL",
    "METRICS_PORT",
    "REDRIVE_MAX_REPLAYS",
    "ML_API_PORT",
    "STACK_DATA_DIR",
    "KAFKA_CACHE_DIR",
}
REQUIRED = re.compile(r"^\$\{[A-Z0-9_]+:\?[^}]+\}$")
URL_PASSWORD = re.compile(r"://[^:/@\s]+:([^@\s]+)@")

Mutation = Callable[[dict[str, Any]], None]


# --- the checker -----------------------------------------------------------------------------


def _stale(binary: Path) -> bool:
    if not binary.exists():
        return True
    sources = [*CHECKER_SRC.glob("*.go"), CHECKER_SRC / "go.mod", CHECKER_SRC / "go.sum"]
    return any(src.stat().st_mtime > binary.stat().st_mtime for src in sources)


@pytest.fixture(scope="module")
def composecheck() -> Path:
    """tools/bin/composecheck, built with the Go toolchain when missing or older than its source."""
    go = shutil.which("go")
    if go is None:
        if CHECKER.exists():
            return CHECKER
        pytest.skip("go is not installed: cannot build tools/composecheck (compose-go)")
    if _stale(CHECKER):
        build = subprocess.run(
            [go, "-C", str(CHECKER_SRC), "build", "-o", str(CHECKER), "."],
            timeout=600,
            capture_output=True,
            text=True,
        )
        if build.returncode != 0:
            pytest.fail(f"go build of tools/composecheck failed:\n{build.stderr}")
    return CHECKER


def _check(checker: Path, compose: Path, env_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(checker), "-f", str(compose), "-env-file", str(env_file)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=compose.parent,
    )


def test_compose_go_accepts_the_compose_file_with_env_example(composecheck: Path) -> None:
    result = _check(composecheck, COMPOSE, ENV_EXAMPLE)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok:")


def _unknown_key(compose: dict[str, Any]) -> None:
    compose["services"]["migrate"]["retsart"] = "no"


def _missing_dependency(compose: dict[str, Any]) -> None:
    compose["services"]["consumer"]["depends_on"]["ml-apii"] = {"condition": "service_healthy"}


def _unpinned_image(compose: dict[str, Any]) -> None:
    compose["services"]["kafka"]["image"] = "apache/kafka:latest"


def _untagged_image(compose: dict[str, Any]) -> None:
    compose["services"]["postgres"]["image"] = "postgres"


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (_unknown_key, "retsart"),
        (_missing_dependency, "ml-apii"),
        (_unpinned_image, "not pinned"),
        (_untagged_image, "not pinned"),
    ],
    ids=["unknown-key", "depends-on-missing-service", "latest-tag", "no-tag"],
)
def test_compose_go_rejects_a_broken_copy(
    composecheck: Path, tmp_path: Path, mutate: Mutation, reason: str
) -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    mutate(compose)
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(yaml.safe_dump(compose, sort_keys=False))

    result = _check(composecheck, broken, ENV_EXAMPLE)

    assert result.returncode == 1
    assert reason in result.stderr


def test_compose_go_refuses_to_start_without_a_secret(composecheck: Path, tmp_path: Path) -> None:
    env = tmp_path / ".env"
    lines = ENV_EXAMPLE.read_text().splitlines()
    env.write_text("\n".join(line for line in lines if not line.startswith("POSTGRES_PASSWORD=")))

    result = _check(composecheck, COMPOSE, env)

    assert result.returncode == 1
    assert "required variable POSTGRES_PASSWORD is missing" in result.stderr


# --- the house rules, read from the YAML -------------------------------------------------------


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    """The services, with YAML anchors and merge keys resolved (interpolation left as written)."""
    return dict(yaml.safe_load(COMPOSE.read_text())["services"])


def _environment(service: dict[str, Any]) -> dict[str, Any]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "environment is written as a mapping"
    return env


def test_every_pulled_image_is_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if "build" in service:
            continue
        image = service["image"]
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        assert "@sha256:" in image or (tag and tag != "latest"), f"{name}: {image} is not pinned"


def test_project_services_are_built_from_the_dockerfile(
    services: dict[str, dict[str, Any]],
) -> None:
    built = {name for name, service in services.items() if "build" in service}

    assert built == set(services) - {"postgres", "kafka"}


def test_consumer_can_be_scaled(services: dict[str, dict[str, Any]]) -> None:
    consumer = services["consumer"]

    assert "container_name" not in consumer
    assert "ports" not in consumer
    metrics_port = str(_environment(consumer)["METRICS_PORT"])
    assert [str(port) for port in consumer["expose"]] == [metrics_port]


def test_producer_runs_only_under_its_profile(services: dict[str, dict[str, Any]]) -> None:
    assert services["producer"]["profiles"] == ["producer"]
    assert [name for name, service in services.items() if "profiles" in service] == ["producer"]


def test_long_running_services_restart_and_have_a_healthcheck(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        if name in ONE_SHOT:
            assert service.get("restart", "no") == "no", name
            continue
        assert service.get("restart") == "unless-stopped", name
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_dependencies_wait_for_health_or_completion(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for target, rule in (service.get("depends_on") or {}).items():
            condition = rule["condition"]
            if target in ONE_SHOT:
                assert condition == "service_completed_successfully", f"{name} -> {target}"
            else:
                assert condition == "service_healthy", f"{name} -> {target}"
                assert "healthcheck" in services[target], f"{name} waits for {target}'s health"


def test_consumer_starts_after_topics_schema_and_ml_api(
    services: dict[str, dict[str, Any]],
) -> None:
    assert set(services["consumer"]["depends_on"]) == {"kafka-init", "migrate", "ml-api"}


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source (a named volume, or a ./path bind mount)."""
    sources_and_targets = (volume.split(":")[:2] for volume in service.get("volumes", []))
    return {target: source for source, target in sources_and_targets}


def test_state_lives_on_named_volumes() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    declared = set(compose["volumes"])
    state = {
        "postgres": "/var/lib/postgresql/data",
        "kafka": "/var/lib/kafka/data",
        "airflow-api-server": "/opt/airflow",
        "airflow-scheduler": "/opt/airflow",
    }

    for name, target in state.items():
        source = _mounts(compose["services"][name]).get(target)
        assert source in declared, f"{name}: {target} is not on a named volume"
    for name, service in compose["services"].items():
        assert "tmpfs" not in service, name
        for source in _mounts(service).values():
            assert source.startswith("./") or source in declared, f"{name}: {source}"


def test_airflow_metadata_lives_in_its_own_database(services: dict[str, dict[str, Any]]) -> None:
    init_sql = ROOT / "deploy" / "postgres-init" / "01-airflow-db.sql"
    env = _environment(services["airflow-scheduler"])

    assert "CREATE DATABASE airflow;" in init_sql.read_text()
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg://")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@postgres:5432/airflow")
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["DATABASE_URL"].endswith("@postgres:5432/txcat")


# --- secrets and .env.example ------------------------------------------------------------------


def _all_environment_values(services: dict[str, dict[str, Any]]) -> Iterator[tuple[str, str, str]]:
    for name, service in services.items():
        for key, value in _environment(service).items():
            if value is not None:
                yield name, key, str(value)


def test_no_secret_is_written_in_the_compose_file(services: dict[str, dict[str, Any]]) -> None:
    for name, key, value in _all_environment_values(services):
        if re.search(r"PASSWORD|SECRET", key) and not key.endswith("_FILE"):
            assert REQUIRED.match(value), f"{name}.{key} must be ${{{key}:?...}} from .env"
        for password in URL_PASSWORD.findall(value):
            assert REQUIRED.match(password), f"{name}.{key} has a literal password in its URL"
    placeholders = {_documented()[name] for name in SECRETS}
    for text in _strings(yaml.safe_load(COMPOSE.read_text())):
        assert not any(placeholder in text for placeholder in placeholders), text


def _documented() -> dict[str, str]:
    """Variables of .env.example, set or commented out, with their example values."""
    pattern = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$")
    found = (pattern.match(line) for line in ENV_EXAMPLE.read_text().splitlines())
    return {match[1]: match[2] for match in found if match}


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif isinstance(node, str):
        yield node


def _compose_variables(services: dict[str, dict[str, Any]]) -> set[str]:
    """Variables compose interpolates (`$${X}` is the container's own) or passes through."""
    interpolated = {
        name
        for text in _strings(yaml.safe_load(COMPOSE.read_text()))
        for name in re.findall(r"(?<!\$)\$\{([A-Z0-9_]+)", text)
    }
    passed_through = {
        key
        for service in services.values()
        for key, value in _environment(service).items()
        if value is None
    }
    return interpolated | passed_through


def _settings_variables() -> set[str]:
    names: set[str] = set()
    for module in (pipeline.config, ml_api.settings):
        for cls in vars(module).values():
            if isinstance(cls, type) and issubclass(cls, BaseSettings) and cls is not BaseSettings:
                prefix = str(cls.model_config.get("env_prefix", ""))
                for field, info in cls.model_fields.items():
                    names.add(str(info.alias or prefix + field).upper())
    return names


def test_env_example_documents_every_variable(services: dict[str, dict[str, Any]]) -> None:
    documented = set(_documented())
    expected = _compose_variables(services) | _settings_variables() | OTHER_VARIABLES

    assert sorted(expected - documented) == []


def test_env_example_holds_placeholders_only() -> None:
    documented = _documented()
    set_lines = {
        line.split("=", 1)[0]
        for line in ENV_EXAMPLE.read_text().splitlines()
        if re.match(r"^[A-Z]", line)
    }

    assert set_lines == SECRETS, "only the secrets compose requires are set; the rest is commented"
    for name in SECRETS:
        assert documented[name].startswith("change-me"), name
    assert documented["KAFKA_SASL_PASSWORD"] == ""


def test_env_example_has_a_comment_above_each_variable() -> None:
    variable = re.compile(r"^#?\s*[A-Z][A-Z0-9_]*=")
    lines = ENV_EXAMPLE.read_text().splitlines()
    for above, line in pairwise(lines):
        if variable.match(line):
            assert above.startswith("# ") and not variable.match(above), line


# --- the image ---------------------------------------------------------------------------------


def test_dockerfile_pins_python_and_drops_root() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()

    assert re.search(r"^FROM python:3\.11\.\d+-slim-bookworm$", dockerfile, re.MULTILINE)
    assert "pip install --require-hashes -r /tmp/requirements.txt" in dockerfile  # uv.lock
    assert "WORKDIR /app" in dockerfile
    users = re.findall(r"^USER (\S+)$", dockerfile, re.MULTILINE)
    assert users and users[-1] not in {"root", "0"}


def test_dockerignore_keeps_local_state_and_secrets_out_of_the_image() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().splitlines())

    assert {".venv", ".data", ".cache", ".git", "tests", ".env"} <= ignored
