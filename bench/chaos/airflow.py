"""A real Airflow for the fault matrix: api-server, scheduler (LocalExecutor), dag-processor.

Started once, when the first Airflow scenario needs it, in the services' folder; its metadata
is the database `airflow` of the chaos PostgreSQL (reached directly, not through the proxy).
The scheduler forks the tasks, so its environment carries the pipeline's settings: one
database for every Airflow scenario, each with source ids of its own.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from devstack.airflow_api import AirflowApi
from devstack.airflow_env import ADMIN_USER, AirflowHome
from devstack.loopback import free_port
from devstack.processes import terminate
from devstack.stack_report import airflow_components
from devstack.supervisor import VENV_BIN
from pipeline.adapters.postgres import embedded as embedded_pg

if TYPE_CHECKING:
    from bench.chaos.services import ChaosServices

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
DAG_ID = "categorise_transactions"
_COMPONENTS = ("scheduler", "dag_processor")


class ChaosAirflow:
    """Airflow's services as child processes; ``api`` is a logged-in REST client."""

    def __init__(self, services: ChaosServices) -> None:
        self.services = services
        self.home = AirflowHome(services.root / "airflow", free_port())
        self.database = services.new_database("chaos_airflow")
        self.processes: list[subprocess.Popen[bytes]] = []
        self._api: AirflowApi | None = None

    @property
    def api(self) -> AirflowApi:
        if self._api is None:
            raise RuntimeError("Airflow not started")
        return self._api

    def start(self, timeout: float = 300) -> ChaosAirflow:
        began = time.monotonic()
        self.home.prepare()
        metadata = embedded_pg.create_database(self.services.postgres.url(), "airflow")
        env = self.home.environment(metadata, ROOT / "dags", ROOT)
        self.home.finish_migration(self.home.migrate(env, ROOT))
        # Files live in the services' folder: the DAG's path param must lie in the data root.
        tasks = {
            **self.services.pipeline_env(self.database),
            "BATCH_DATA_ROOT": str(self.services.root),
            # A chunk task stores its window 1,000 rows at a time: killed, it has stored part.
            "BATCH_CHUNK_SIZE": "1000",
        }
        self._spawn("api-server", env)
        self._spawn("scheduler", {**env, **tasks})
        self._spawn("dag-processor", env)
        self._wait_healthy(timeout)
        self._api = AirflowApi(self.home.url, ADMIN_USER, self.home.password())
        self.api.ensure_pool("ml_api", 2, "ML API calls of categorise_transactions")
        self.api.wait_for_dag(DAG_ID, timeout)
        self.api.unpause(DAG_ID)
        logger.info("Airflow up in %.0fs at %s", time.monotonic() - began, self.home.url)
        return self

    def stop(self) -> None:
        for process in reversed(self.processes):
            # Airflow forks (executor workers, task supervisors): stop the whole family.
            children = _children(process.pid)
            terminate(process.pid, 30, is_alive=partial(_running, process))
            for child in children:
                if child.is_running():
                    child.kill()
        self.processes.clear()

    def task_process(self, task_instance_id: str) -> psutil.Process | None:
        """The process running a task instance (Airflow titles it with the instance's id)."""
        for process in psutil.process_iter(["cmdline"]):
            cmdline = " ".join(process.info["cmdline"] or ())
            if f"airflow worker -- {task_instance_id}" in cmdline:
                return process
        return None

    def task_logs(self) -> str:
        """Every task log of this Airflow, concatenated (to find a task's error line)."""
        return "\n".join(
            path.read_text(errors="replace") for path in (self.home.path / "logs").rglob("*.log")
        )

    def _spawn(self, name: str, env: dict[str, str]) -> None:
        log = (self.services.logs / f"airflow-{name}.log").open("ab")
        command = [str(VENV_BIN / "airflow"), name]
        self.processes.append(
            subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=log)
        )
        log.close()

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            components = airflow_components(self.home.url)
            if all(components.get(name) == "healthy" for name in _COMPONENTS):
                return
            dead = [p.args for p in self.processes if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"Airflow not healthy ({components}, exited: {dead})")
            time.sleep(1)


def _running(process: subprocess.Popen[bytes]) -> bool:
    return process.poll() is None


def _children(pid: int) -> list[psutil.Process]:
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.NoSuchProcess:
        return []
