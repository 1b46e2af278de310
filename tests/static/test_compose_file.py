"""docker-compose.yml: loaded by compose-go (tools/composecheck) as `docker compose` would, and its
resolved model held to the rules that make `make all` work without anyone watching: pinned
images, healthchecks that test what dependants need, one-shots that `up --wait` accepts, an
init process where processes fork, least-privilege database URLs, named volumes."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.adapters.postgres.embedded import SERVER_SETTINGS
from tests.support.compose_model import COMPOSE, ENV_EXAMPLE, ROOT, environment, run_check

Services = dict[str, dict[str, Any]]
Mutation = Callable[[dict[str, Any]], None]
PULLED = {"postgres", "kafka"}


def test_compose_go_accepts_the_compose_file_with_env_example(composecheck: Path) -> None:
    result = run_check(composecheck, COMPOSE, ENV_EXAMPLE)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: ")


def _unknown_key(compose: dict[str, Any]) -> None:
    compose["services"]["migrate"]["retsart"] = "no"


def _missing_dependency(compose: dict[str, Any]) -> None:
    compose["services"]["consumer"]["depends_on"]["ml-apii"] = {"condition": "service_healthy"}


def _unpinned_image(compose: dict[str, Any]) -> None:
    compose["services"]["kafka"]["image"] = "apache/kafka:latest"


def _untagged_image(compose: dict[str, Any]) -> None:
    compose["services"]["postgres"]["image"] = "postgres"


def _undeclared_secret(compose: dict[str, Any]) -> None:
    compose["services"]["migrate"]["secrets"] = [{"source": "txcat_ownr_password"}]


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (_unknown_key, "retsart"),
        (_missing_dependency, "ml-apii"),
        (_unpinned_image, "not pinned"),
        (_untagged_image, "not pinned"),
        (_undeclared_secret, "txcat_ownr_password"),
    ],
    ids=["unknown-key", "depends-on-missing-service", "latest-tag", "no-tag", "unknown-secret"],
)
def test_compose_go_rejects_a_broken_copy(
    composecheck: Path, tmp_path: Path, mutate: Mutation, reason: str
) -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    mutate(compose)
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(yaml.safe_dump(compose, sort_keys=False))
    (tmp_path / "deploy").symlink_to(ROOT / "deploy")

    result = run_check(composecheck, broken, ENV_EXAMPLE)

    assert result.returncode == 1
    assert reason in result.stderr


# --- the resolved model --------------------------------------------------------------------------


def _one_shots(services: Services) -> set[str]:
    return {name for name, service in services.items() if service.get("restart") == "no"}


def test_every_pulled_image_is_pinned_and_the_rest_is_built(services: Services) -> None:
    for name, service in services.items():
        if name in PULLED:
            assert "build" not in service, name
            tag = service["image"].rsplit("/", 1)[-1].partition(":")[2]
            assert tag and tag != "latest", f"{name}: {service['image']} is not pinned"
        else:
            assert service["build"]["dockerfile"] == "Dockerfile", name


def test_every_service_has_a_healthcheck_or_is_a_one_shot(services: Services) -> None:
    one_shots = _one_shots(services)

    assert one_shots == {"check-secrets", "kafka-init", "migrate", "producer", "airflow-init"}
    for name, service in services.items():
        if name not in one_shots:
            assert service.get("restart") == "unless-stopped", name
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_every_one_shot_is_awaited_by_a_long_running_service(services: Services) -> None:
    # `docker compose up --wait` fails on a one-shot that exited unless a running service
    # depends on it with service_completed_successfully.
    one_shots = _one_shots(services)
    awaited = {
        target
        for name, service in services.items()
        if name not in one_shots
        for target, rule in (service.get("depends_on") or {}).items()
        if rule["condition"] == "service_completed_successfully"
    }
    started_by_up = {name for name in one_shots if not services[name].get("profiles")}

    assert started_by_up <= awaited


def test_dependencies_wait_for_health_or_completion(services: Services) -> None:
    one_shots = _one_shots(services)
    for name, service in services.items():
        for target, rule in (service.get("depends_on") or {}).items():
            done = "service_completed_successfully"
            expected = done if target in one_shots else "service_healthy"
            assert rule["condition"] == expected, f"{name} -> {target}"


def test_postgres_is_healthy_only_once_it_listens_on_tcp(services: Services) -> None:
    test = services["postgres"]["healthcheck"]["test"]

    assert test[:2] == ["CMD", "pg_isready"]
    assert test[test.index("-h") + 1] == "127.0.0.1"


def test_postgres_runs_with_the_embedded_servers_settings(services: Services) -> None:
    command = services["postgres"]["command"]
    assert command[0] == "postgres"
    assert set(command[1::2]) == {"-c"}
    settings = dict(setting.split("=", 1) for setting in command[2::2])
    assert settings == SERVER_SETTINGS


def test_kafka_is_healthy_when_its_client_listener_answers(services: Services) -> None:
    test = " ".join(services["kafka"]["healthcheck"]["test"])

    assert "--bootstrap-server localhost:9092" in test
    assert "PLAINTEXT://:9092" in str(environment(services["kafka"])["KAFKA_LISTENERS"])


def test_http_services_are_healthy_when_their_endpoint_answers(services: Services) -> None:
    probes = {
        "ml-api": "http://127.0.0.1:8000/health",
        "consumer": "http://127.0.0.1:9108/metrics",
        "airflow-api-server": "http://127.0.0.1:8080/api/v2/monitor/health",
        "airflow-scheduler": "http://127.0.0.1:8974/health",
    }
    for name, url in probes.items():
        assert url in " ".join(services[name]["healthcheck"]["test"]), name


def test_migrations_wait_for_postgres_and_run_before_the_pipeline(services: Services) -> None:
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("consumer", "airflow-scheduler"):
        assert "migrate" in services[name]["depends_on"], name
    assert set(services["consumer"]["depends_on"]) == {"kafka-init", "migrate", "ml-api"}


def test_every_service_of_the_image_runs_under_an_init_process(services: Services) -> None:
    for name, service in services.items():
        if name not in PULLED:
            assert service.get("init") is True, f"{name}: processes it forks need a reaper"


def test_consumer_can_be_scaled(services: Services) -> None:
    consumer = services["consumer"]

    assert "container_name" not in consumer
    assert "ports" not in consumer
    assert consumer["expose"] == [environment(consumer)["METRICS_PORT"]]
    assert not [name for name, service in services.items() if "container_name" in service]


def test_producer_runs_only_under_its_profile(services: Services) -> None:
    assert services["producer"]["profiles"] == ["producer"]
    assert [name for name, service in services.items() if service.get("profiles")] == ["producer"]


def test_published_ports_are_on_loopback_only(services: Services) -> None:
    published = {
        name: [port["host_ip"] for port in service.get("ports", [])]
        for name, service in services.items()
    }

    assert {name for name, ips in published.items() if ips} == {"ml-api", "airflow-api-server"}
    assert all(ip == "127.0.0.1" for ips in published.values() for ip in ips)


# --- database roles ------------------------------------------------------------------------------


def _url_user(url: str) -> tuple[str, str]:
    match = re.fullmatch(r"postgresql\+psycopg(?:_async)?://([a-z_]+)@postgres:5432/([a-z]+)", url)
    assert match, f"{url}: a URL on the postgres service with a user and no password"
    return match[1], match[2]


def test_only_the_services_that_store_data_get_a_database_url(services: Services) -> None:
    roles = {
        name: _url_user(str(environment(service)["DATABASE_URL"]))
        for name, service in services.items()
        if "DATABASE_URL" in environment(service)
    }

    assert roles == {
        "migrate": ("txcat_owner", "txcat"),
        "consumer": ("txcat_app", "txcat"),
        "airflow-scheduler": ("txcat_app", "txcat"),
    }


def test_airflow_metadata_lives_in_its_own_database_and_role(services: Services) -> None:
    init_sql = (ROOT / "deploy" / "postgres-init" / "01-roles-and-databases.sql").read_text()
    for name, service in services.items():
        env = environment(service)
        if name.startswith("airflow-"):
            sync = _url_user(str(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]))
            asynchronous = _url_user(str(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"]))
            assert sync == asynchronous == ("airflow", "airflow"), name
            assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        else:
            assert not any(key.startswith("AIRFLOW__") for key in env), name
    assert "CREATE DATABASE airflow OWNER airflow;" in init_sql
    assert "CREATE DATABASE txcat OWNER txcat_owner;" in init_sql


def test_each_service_gets_only_the_passwords_of_its_roles(services: Services) -> None:
    for name, service in services.items():
        entries = str(environment(service).get("TXCAT_PGPASS") or "").split()
        mounted = {secret["target"] for secret in service.get("secrets", [])}
        users = set()
        for entry in entries:
            database, user, path = entry.split(":")
            assert path in mounted, f"{name}: {path} is not mounted"
            assert path == f"/run/secrets/{user.replace('airflow', 'airflow_db')}_password"
            users.add(user)
        urls = [
            value
            for key, value in environment(service).items()
            if key in ("DATABASE_URL", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
        ]
        assert users == {_url_user(str(url))[0] for url in urls}, name


# --- state -------------------------------------------------------------------------------------


def test_state_lives_on_named_volumes(resolved: dict[str, Any]) -> None:
    declared = set(resolved["volumes"])
    state = {
        "postgres": "/var/lib/postgresql/data",
        "kafka": "/var/lib/kafka/data",
        "airflow-api-server": "/opt/airflow",
        "airflow-scheduler": "/opt/airflow",
    }
    mounts = {
        name: {volume["target"]: volume for volume in service.get("volumes", [])}
        for name, service in resolved["services"].items()
    }

    for name, target in state.items():
        volume = mounts[name][target]
        assert volume["type"] == "volume" and volume["source"] in declared, name
    for name, by_target in mounts.items():
        assert "tmpfs" not in resolved["services"][name], name
        for volume in by_target.values():
            if volume["type"] == "bind":
                assert volume.get("read_only") is True, f"{name}: {volume['source']}"
                assert Path(volume["source"]).is_relative_to(ROOT), name


# --- the image ---------------------------------------------------------------------------------


def test_dockerfile_pins_python_drops_root_and_installs_the_lock() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()

    assert len(re.findall(r"^FROM python:3\.11\.\d+-slim-bookworm", dockerfile, re.M)) == 2
    assert "pip install --require-hashes -r /tmp/requirements.txt" in dockerfile  # uv.lock
    assert "WORKDIR /app" in dockerfile
    assert 'ENTRYPOINT ["txcat-entrypoint"]' in dockerfile
    users = re.findall(r"^USER (\S+)$", dockerfile, re.MULTILINE)
    assert users and users[-1] not in {"root", "0"}


def test_dockerignore_keeps_local_state_and_secrets_out_of_the_image() -> None:
    ignored = (ROOT / ".dockerignore").read_text().splitlines()

    assert {".venv", ".data", ".cache", ".git", "tests", ".env", "devstack"} <= set(ignored)
    assert "!deploy/image" in ignored
