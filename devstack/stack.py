"""The whole stack for a demo: `python -m devstack.stack all|up|status|logs|down|clean`.

With a working Docker engine it is `docker compose`; without one it runs natively:
embedded PostgreSQL and the dev Kafka broker (their own helpers keep them in the background),
the ML API, the streaming consumer and Airflow's four services under supervisord. `all` also
runs the demo once: the DAG on data/transactions.csv and the same file replayed through Kafka.
Every step is idempotent, so a second `all` only checks and reports.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Literal

import sqlalchemy as sa
from pydantic_settings import BaseSettings, SettingsConfigDict
from rich.console import Console

from devstack import compose, kafka_broker, native_roles, stack_report
from devstack.airflow_api import AirflowApi
from devstack.airflow_env import ADMIN_USER, AirflowHome
from devstack.loopback import port_is_free
from devstack.processes import tail
from devstack.supervisor import VENV_BIN, Program, Supervisor
from pipeline.adapters.postgres import embedded as embedded_pg
from pipeline.config import KafkaSettings

ROOT = Path(__file__).resolve().parents[1]
DAG_ID = "categorise_transactions"
console = Console()
logger = logging.getLogger(__name__)


class StackSettings(BaseSettings):
    """Where the stack keeps its data and which loopback ports it uses."""

    model_config = SettingsConfigDict(env_prefix="STACK_", frozen=True, extra="ignore")

    backend: Literal["auto", "native", "docker"] = "auto"
    data_dir: Path = ROOT / ".data"
    ml_api_port: int = 8000
    airflow_port: int = 8080
    metrics_port: int = 9108
    kafka_port: int = 9092
    demo_file: Path = ROOT / "data" / "transactions.csv"
    timeout_s: float = 900.0


class NativeStack:
    """The native stack of one data folder."""

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.data = settings.data_dir.resolve()
        self.pg_dir = self.data / "postgres"
        self.kafka_dir = self.data / "kafka"
        self.airflow = AirflowHome(self.data / "airflow", settings.airflow_port)
        self.supervisor = Supervisor(self.data, ROOT)
        self.kafka = KafkaSettings()

    def up(self) -> tuple[str, str]:
        """Start everything (or check it runs); return the database URL and the Kafka address."""
        self.airflow.prepare()
        with _step("PostgreSQL (embedded): roles, databases, schema"):
            urls = native_roles.ensure(embedded_pg.up(self.pg_dir))
            _upgrade_schema(urls.owner)  # the schema belongs to txcat_owner
            airflow_env = self.airflow.environment(urls.airflow, ROOT / "dags", ROOT)
        migration = self.airflow.migrate(airflow_env, ROOT)  # in the background while Kafka starts
        with _step("Kafka broker and topics"):
            port = self.settings.kafka_port if port_is_free(self.settings.kafka_port) else None
            bootstrap = kafka_broker.up(self.kafka_dir, port)
            _run("topics", "create", env={"KAFKA_BOOTSTRAP_SERVERS": bootstrap})
        with _step("Airflow metadata database"):
            self.airflow.finish_migration(migration)
        # The consumer and the Airflow tasks write as txcat_app: DML only.
        pipeline_env = {
            "DATABASE_URL": urls.app,
            "ML_API_URL": f"http://127.0.0.1:{self.settings.ml_api_port}",
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        }
        with _step("services under supervisord"):
            self.supervisor.apply(self.programs(pipeline_env, airflow_env))
            self._wait_healthy()
        _write_env_file(self.data / "stack.env", pipeline_env)
        return urls.app, bootstrap

    def programs(self, pipeline_env: dict[str, str], airflow_env: dict[str, str]) -> list[Program]:
        ml, metrics = self.settings.ml_api_port, self.settings.metrics_port
        airflow = self.airflow.url

        def airflow_service(
            name: str, url: str = "-", health: str | None = None, env: dict[str, str] = airflow_env
        ) -> Program:
            # Only the scheduler has work to wind down (its tasks); the others may stop quickly.
            wait = 30 if name == "scheduler" else 10
            return Program(f"airflow-{name}", f"{VENV_BIN}/airflow {name}", url, health, env, wait)

        return [
            Program(
                "ml-api",
                f"{VENV_BIN}/uvicorn ml_api.main:app --host 127.0.0.1 --port {ml}",
                f"http://127.0.0.1:{ml}/docs",
                f"http://127.0.0.1:{ml}/health",
            ),
            Program(
                "consumer",
                f"{sys.executable} -m pipeline stream --metrics-port {metrics}",
                f"http://127.0.0.1:{metrics}/metrics",
                f"http://127.0.0.1:{metrics}/metrics",
                pipeline_env,
            ),
            # Its first /execution call takes seconds (that API is built lazily): probing it
            # gets the warm-up done before a task needs it.
            airflow_service("api-server", airflow, f"{airflow}/execution/health"),
            # Tasks run in processes forked by the scheduler: they need the pipeline's settings.
            airflow_service("scheduler", env={**airflow_env, **pipeline_env}),
            airflow_service("dag-processor"),
            airflow_service("triggerer"),
        ]

    def demo(self, database_url: str, bootstrap: str) -> None:
        """The DAG on the demo file and the same file through Kafka, each done once."""
        path = self.settings.demo_file
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        run_id = f"make_all__{path.stem}__{digest}"
        api = AirflowApi(self.airflow.url, ADMIN_USER, self.airflow.password())
        try:
            with _step("Airflow: pool, DAG, trigger"):
                api.ensure_pool("ml_api", 2, "ML API calls of categorise_transactions")
                api.wait_for_dag(DAG_ID)
                api.unpause(DAG_ID)
                conf = {"path": str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)}
                state = api.run_once(DAG_ID, run_id, conf)
                console.print(f"  DAG run {run_id}: {state}")
            with _step("Kafka: replay the file"):
                self._produce_once(path, digest, bootstrap)
            with _step("waiting for the DAG run and the consumer"):
                state = api.wait_for_run(DAG_ID, run_id, self.settings.timeout_s)
                console.print(f"  DAG run {run_id}: {state} {api.task_states(DAG_ID, run_id)}")
                total, lag = self._wait_consumer(bootstrap)
                metrics = f"http://127.0.0.1:{self.settings.metrics_port}/metrics"
                stored = stack_report.metric(metrics, "txcat_stream_records_categorised_total") or 0
                console.print(
                    f"  topic {self.kafka.topic}: {total} records, consumer lag {lag}, "
                    f"stored by the running consumer: {stored:.0f}",
                    soft_wrap=True,
                )
        finally:
            api.close()
        if state != "success":
            raise SystemExit(f"DAG run failed: see {self.airflow.url}/dags/{DAG_ID}/runs/{run_id}")

    def status(self) -> None:
        """Print each service (up or down, address), the Airflow login and the stored counts."""
        pg = embedded_pg.running_url(self.pg_dir)
        bootstrap = stack_report.kafka_bootstrap(self.kafka_dir)
        row = stack_report.ServiceRow
        rows = [
            row("postgres", "up" if pg else "down", f"socket in {self.pg_dir}" if pg else "-"),
            row("kafka", "up" if bootstrap else "down", bootstrap or "-"),
        ]
        states = self.supervisor.states()
        for item in self.programs({}, {}):
            state = states.get(item.name, "down").lower()
            if state == "running":
                ok = item.health is None or stack_report.healthy(item.health)
                state = "up" if ok else "starting"
            rows.append(row(item.name, state, item.url))
        for name, state in stack_report.airflow_components(self.airflow.url).items():
            rows.append(row(f"  airflow {name}", state, "api/v2/monitor/health"))
        login = None
        if self.airflow.password_file.exists():
            login = (ADMIN_USER, self.airflow.password())
        stack_report.render_status(console, rows, login)
        if pg:
            try:
                found = stack_report.counts(native_roles.urls(pg).owner)
            except sa.exc.SQLAlchemyError:
                console.print("no pipeline data yet: `make all` creates the database txcat")
            else:
                stack_report.render_counts(console, found)
            hint = f"Settings for `python -m pipeline …`: set -a; . {self.data / 'stack.env'}"
            console.print(hint, soft_wrap=True)

    def logs(self, lines: int = 40) -> None:
        files = sorted(self.supervisor.logs.glob("*.log"))
        files += [self.kafka_dir / "kafka.log", self.pg_dir / "log"]
        files.append(self.airflow.path / "migrate.log")
        for path in files:
            if path.exists():
                console.rule(str(path.relative_to(self.data.parent)))
                print(tail(path, lines))

    def down(self) -> None:
        """Stop every service; the data stays in the data folder."""
        stopped = self.supervisor.shutdown()
        kafka = kafka_broker.down(self.kafka_dir)
        pg = embedded_pg.down(self.pg_dir)
        console.print(f"stopped: supervisord {stopped}, kafka {kafka}, postgres {pg}")
        console.print(f"data kept in {self.data}")

    def clean(self) -> None:
        self.down()
        shutil.rmtree(self.data, ignore_errors=True)
        console.print(f"removed {self.data}")

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + 240
        for item in self.programs({}, {}):
            while item.health and not stack_report.healthy(item.health):
                state = self.supervisor.states().get(item.name, "?")
                if state in ("FATAL", "EXITED") or time.monotonic() > deadline:
                    log = self.supervisor.log_file(item.name)
                    raise SystemExit(f"{item.name} is {state}: see {log}")
                time.sleep(0.5)
        wanted = ("scheduler", "triggerer", "dag_processor")
        while True:
            components = stack_report.airflow_components(self.airflow.url)
            if all(components.get(name) == "healthy" for name in wanted):
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"Airflow is not healthy: see {self.supervisor.logs}")
            time.sleep(1)

    def _produce_once(self, path: Path, digest: str, bootstrap: str) -> None:
        stamp = self.kafka_dir / f"produced-{self.kafka.topic}-{digest}"
        if stamp.exists():
            console.print(f"  {path.name} already replayed into {self.kafka.topic}: skipped")
            return
        _run("produce", str(path), "--no-progress", env={"KAFKA_BOOTSTRAP_SERVERS": bootstrap})
        stamp.write_text(time.strftime("%Y-%m-%dT%H:%M:%S%z\n"))

    def _wait_consumer(self, bootstrap: str) -> tuple[int, int]:
        deadline = time.monotonic() + self.settings.timeout_s
        while True:
            total, lag = stack_report.consumer_lag(bootstrap, self.kafka.topic, self.kafka.group_id)
            if lag == 0 and total > 0:
                return total, lag
            if time.monotonic() > deadline:
                log = self.supervisor.log_file("consumer")
                raise SystemExit(f"the consumer still lags by {lag} records: see {log}")
            time.sleep(1)


class _step:  # noqa: N801 - used like a statement
    """Print a step's name, then its duration (or that it failed)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> None:
        console.print(f"[bold]→ {self.name}[/bold]")
        self.began = time.monotonic()

    def __exit__(self, exc_type: object, *_: object) -> None:
        mark = "[red]✗[/red]" if exc_type else "[green]✓[/green]"
        console.print(f"  {mark} {self.name} ({time.monotonic() - self.began:.1f}s)")


def _run(*args: str, env: dict[str, str]) -> None:
    command = [sys.executable, "-m", "pipeline", *args]
    subprocess.run(command, check=True, cwd=ROOT, env={**os.environ, **env})


def _upgrade_schema(database_url: str) -> None:
    from pipeline.adapters.postgres.schema import upgrade
    from pipeline.adapters.postgres.store import make_engine

    engine = make_engine(database_url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()


def _write_env_file(path: Path, env: dict[str, str]) -> None:
    path.write_text("".join(f"{key}='{value}'\n" for key, value in env.items()))


def main(argv: list[str]) -> None:
    commands = ("all", "up", "status", "logs", "down", "clean")
    if len(argv) != 1 or argv[0] not in commands:
        raise SystemExit(f"usage: python -m devstack.stack {{{'|'.join(commands)}}}")
    logging.basicConfig(level=logging.WARNING)
    settings, command = StackSettings(), argv[0]
    try:
        chosen = compose.backend(settings.backend)
    except compose.DockerError as error:
        raise SystemExit(f"error: {error}") from error
    if chosen == "docker":
        raise SystemExit(compose.main([command]))
    stack = NativeStack(settings)
    began = time.monotonic()
    if command in ("all", "up"):
        database_url, bootstrap = stack.up()
        if command == "all":
            stack.demo(database_url, bootstrap)
        stack.status()
        console.print(f"[bold]stack ready in {time.monotonic() - began:.1f}s[/bold]")
    else:
        getattr(stack, command)()


if __name__ == "__main__":
    main(sys.argv[1:])
