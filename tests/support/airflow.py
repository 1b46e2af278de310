"""Drive Apache Airflow from tests through a child process (tests/support/airflow_worker.py)."""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa

from tests.support.services import ROOT

DAGS_FOLDER = ROOT / "dags"


@dataclass(frozen=True)
class DagTestRun:
    """What `dag.test()` left: the run's state and (task_id, map_index, state, try) per task."""

    run_id: str
    state: str
    tasks: list[tuple[str, int, str, int]]

    def states(self, task_id: str) -> list[str]:
        return [state for task, _, state, _ in self.tasks if task == task_id]


class AirflowWorker:
    """An Airflow process of its own: AIRFLOW_HOME in `home`, metadata in `metadata_url`."""

    def __init__(self, home: Path, metadata_url: str | None = None) -> None:
        self.home = home
        self.log_path = home / "worker.log"
        env = {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "PYTHONPATH": str(ROOT),
        }
        if metadata_url:
            env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = metadata_url
            # Airflow would derive an asyncpg URL; psycopg 3 does async as well.
            async_url = sa.make_url(metadata_url).set(drivername="postgresql+psycopg_async")
            env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"] = async_url.render_as_string(False)
        else:  # describing the DagBag needs no metadata database; keep Airflow off ~/airflow
            env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{home / 'unused.db'}"
        self.env = {**os.environ, **env}
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> AirflowWorker:
        self.home.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.airflow_worker"],
            cwd=ROOT,
            env=self.env,
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
        )
        log.close()
        return self

    def describe(self, timeout: float = 120) -> dict[str, Any]:
        """The DagBag: ``{"import_errors": …, "dags": {dag_id: {"params", "tasks"}}}``."""
        return self._ask({"op": "describe"}, timeout)

    def test_dag(
        self, dag_id: str, conf: dict[str, Any], env: dict[str, str], timeout: float = 420
    ) -> DagTestRun:
        """Run `dag.test()` with `conf`; `env` is what the tasks read (DATABASE_URL…)."""
        reply = self._ask({"op": "test", "dag_id": dag_id, "conf": conf, "env": env}, timeout)
        tasks = [(t[0], int(t[1]), t[2], int(t[3])) for t in reply["tasks"]]
        return DagTestRun(reply["run_id"], reply["state"], tasks)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.stdin:
            self.process.stdin.close()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout:
            self.process.stdout.close()

    def _ask(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        assert self.process and self.process.stdin and self.process.stdout, "worker not started"
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = _read_line(self.process.stdout, timeout)
        if not line:
            raise RuntimeError(f"Airflow worker gave no answer; its log:\n{self.log_tail()}")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"Airflow worker failed:\n{reply['error']}\n{self.log_tail()}")
        return reply

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _read_line(stream: IO[str], timeout: float) -> str:
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise TimeoutError(f"no answer from the Airflow worker within {timeout:g}s")
    return stream.readline()
