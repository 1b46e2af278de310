"""Secrets of the compose stack: files from .env, never literals or environment values; the
placeholders of .env.example refused by `make all` (devstack/compose_env.py) and by the stack
itself (deploy/image/txcat-check-secrets); the libpq password file of the image's entry point."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic_settings import BaseSettings

import ml_api.settings
import pipeline.config
from devstack import compose_env
from tests.support.compose_model import COMPOSE, ENV_EXAMPLE, ROOT, environment

Services = dict[str, dict[str, Any]]
CHECK_SECRETS = ROOT / "deploy" / "image" / "txcat-check-secrets"
ENTRYPOINT = ROOT / "deploy" / "image" / "txcat-entrypoint"
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


def _documented() -> dict[str, str]:
    """Variables of .env.example, set or commented out, with their example values."""
    pattern = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$")
    found = (pattern.match(line) for line in ENV_EXAMPLE.read_text().splitlines())
    return {match[1]: match[2] for match in found if match}


def _set_in_env_example() -> set[str]:
    lines = ENV_EXAMPLE.read_text().splitlines()
    return {line.split("=", 1)[0] for line in lines if line[:1].isupper()}


def test_the_secrets_are_the_same_in_compose_make_all_and_env_example(
    resolved: dict[str, Any],
) -> None:
    from_env = {name: secret["environment"] for name, secret in resolved["secrets"].items()}

    assert all(variable.lower() == name for name, variable in from_env.items())
    assert set(from_env.values()) == set(compose_env.SECRETS) == _set_in_env_example()
    for name in compose_env.SECRETS:
        assert _documented()[name].startswith(compose_env.PLACEHOLDER), name


def test_secrets_are_mounted_for_the_user_that_reads_them(services: Services) -> None:
    for name, service in services.items():
        owner = "999" if name == "postgres" else "10001"  # postgres image's user, ours (app)
        for secret in service.get("secrets", []):
            assert (secret["uid"], secret["gid"], secret["mode"]) == (owner, owner, "0400"), name
            assert secret["target"] == f"/run/secrets/{secret['source']}"


def test_nothing_starts_before_check_secrets_accepted_every_secret(
    services: Services, resolved: dict[str, Any]
) -> None:
    checked = {secret["source"] for secret in services["check-secrets"]["secrets"]}

    def waits_for_check(name: str) -> bool:
        targets = services[name].get("depends_on") or {}
        return "check-secrets" in targets or any(waits_for_check(t) for t in targets)

    assert checked == set(resolved["secrets"])
    for name, service in services.items():
        if service.get("secrets") and name != "check-secrets":
            assert waits_for_check(name), name


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif isinstance(node, str):
        yield node


def test_no_secret_is_in_the_file_nor_in_any_environment(
    services: Services, resolved: dict[str, Any]
) -> None:
    for name, service in services.items():
        for key, value in environment(service).items():
            if re.search(r"PASSWORD|SECRET|_KEY$", key) and value is not None:
                # A path (…_FILE) or a command that reads a mounted secret (Airflow's …_CMD).
                assert key.endswith(("_CMD", "_FILE")), f"{name}.{key} holds a value"
                if key.endswith("_CMD"):
                    assert value.startswith("cat /run/secrets/"), f"{name}.{key}"
            assert not re.search(r"://[^/@\s]*:[^/@\s]*@", str(value or "")), f"{name}.{key}"
    placeholders = {_documented()[name] for name in compose_env.SECRETS}
    for text in _strings(resolved):
        assert not any(placeholder in text for placeholder in placeholders), text


def _settings_variables() -> set[str]:
    names: set[str] = set()
    for module in (pipeline.config, ml_api.settings):
        for cls in vars(module).values():
            if isinstance(cls, type) and issubclass(cls, BaseSettings) and cls is not BaseSettings:
                prefix = str(cls.model_config.get("env_prefix", ""))
                for field, info in cls.model_fields.items():
                    names.add(str(info.alias or prefix + field).upper())
    return names


def test_env_example_documents_every_variable(services: Services) -> None:
    interpolated = set(re.findall(r"(?<!\$)\$\{([A-Z0-9_]+)", COMPOSE.read_text()))
    passed_through = {
        key
        for service in services.values()
        for key, value in environment(service).items()
        if value is None
    }
    expected = interpolated | passed_through | _settings_variables() | OTHER_VARIABLES

    assert sorted(expected - set(_documented())) == []


def test_env_example_has_a_comment_above_each_variable() -> None:
    variable = re.compile(r"^#?\s*[A-Z][A-Z0-9_]*=")
    lines = ENV_EXAMPLE.read_text().splitlines()
    for above, line in zip(lines, lines[1:], strict=False):
        if variable.match(line):
            assert above.startswith("# ") and not variable.match(above), line


# --- make all's .env -----------------------------------------------------------------------------


def test_make_all_writes_a_private_env_with_random_secrets(tmp_path: Path) -> None:
    shutil.copy(ENV_EXAMPLE, tmp_path / ".env.example")

    values, created = compose_env.ensure(tmp_path)
    again, created_again = compose_env.ensure(tmp_path)

    assert created and not created_again and again == values
    assert stat.S_IMODE((tmp_path / ".env").stat().st_mode) == 0o600
    assert compose_env.problems(values) == []
    secrets = [values[name] for name in compose_env.SECRETS]
    assert len(set(secrets)) == len(secrets)
    assert len(values["AIRFLOW_JWT_SECRET"]) >= 32
    commented = (tmp_path / ".env").read_text().count("\n# ")
    assert commented >= ENV_EXAMPLE.read_text().count("\n# ") - 1  # the documentation is kept


def test_make_all_refuses_the_placeholders_of_env_example(tmp_path: Path) -> None:
    shutil.copy(ENV_EXAMPLE, tmp_path / ".env.example")
    shutil.copy(ENV_EXAMPLE, tmp_path / ".env")

    with pytest.raises(compose_env.EnvFileError) as refused:
        compose_env.ensure(tmp_path)

    message = str(refused.value)
    assert "\n" not in message
    assert "POSTGRES_PASSWORD is the placeholder of .env.example (and 7 more)" in message


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"TXCAT_APP_PASSWORD": None}, "TXCAT_APP_PASSWORD is missing"),
        ({"AIRFLOW_DB_PASSWORD": ""}, "AIRFLOW_DB_PASSWORD is empty"),
        ({"AIRFLOW_JWT_SECRET": "x" * 31}, "AIRFLOW_JWT_SECRET is shorter than 32 bytes"),
    ],
)
def test_make_all_refuses_a_missing_empty_or_short_secret(
    change: dict[str, str | None], problem: str
) -> None:
    values = {name: make() for name, make in compose_env.SECRETS.items()}
    for name, value in change.items():
        values.pop(name)
        if value is not None:
            values[name] = value

    assert compose_env.problems(values) == [problem]


# --- the image's scripts -------------------------------------------------------------------------


def _secrets_dir(tmp_path: Path, **overrides: str) -> Path:
    folder = tmp_path / "secrets"
    folder.mkdir()
    for name, make in compose_env.SECRETS.items():
        (folder / name.lower()).write_text(overrides.get(name, make()))
    return folder


def _check_secrets(folder: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "SECRETS_DIR": str(folder)}
    return subprocess.run(["sh", str(CHECK_SECRETS)], env=env, capture_output=True, text=True)


def test_the_stack_starts_with_random_secrets(tmp_path: Path) -> None:
    result = _check_secrets(_secrets_dir(tmp_path))

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "check-secrets: 8 secrets set"


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("POSTGRES_PASSWORD", "change-me-postgres", "still holds the placeholder of .env.example"),
        ("TXCAT_APP_PASSWORD", "", "is empty"),
        ("AIRFLOW_JWT_SECRET", "too-short-for-hmac", "is 18 bytes long"),
        ("AIRFLOW_ADMIN_PASSWORD", "two\nlines", "contains a line break"),
    ],
)
def test_the_stack_refuses_a_placeholder_empty_or_short_secret(
    tmp_path: Path, name: str, value: str, problem: str
) -> None:
    result = _check_secrets(_secrets_dir(tmp_path, **{name: value}))

    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        line for line in result.stderr.splitlines() if line.startswith(f"check-secrets: {name} ")
    ]
    assert problem in result.stderr


def test_entrypoint_writes_a_private_password_file_and_runs_the_command(tmp_path: Path) -> None:
    (tmp_path / "app").write_text("pa:ss\\word")
    (tmp_path / "airflow").write_text("other")
    pgpass = tmp_path / "home" / ".pgpass"
    pgpass.parent.mkdir()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(pgpass.parent),
        "TXCAT_PGPASS": f"txcat:txcat_app:{tmp_path}/app  airflow:airflow:{tmp_path}/airflow",
    }

    result = subprocess.run(
        ["sh", str(ENTRYPOINT), "sh", "-c", 'echo "$PGPASSFILE"'],
        env=env,
        capture_output=True,
        text=True,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(pgpass)
    assert pgpass.read_text().splitlines() == [
        "*:*:txcat:txcat_app:pa\\:ss\\\\word",
        "*:*:airflow:airflow:other",
    ]
    assert stat.S_IMODE(pgpass.stat().st_mode) == 0o600


def test_entrypoint_stops_on_a_missing_secret(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "TXCAT_PGPASS": "txcat:u:/nope"}

    result = subprocess.run(
        ["sh", str(ENTRYPOINT), "true"], env=env, capture_output=True, text=True
    )

    assert result.returncode == 1
    assert "secret file /nope (for u on txcat) is missing" in result.stderr
