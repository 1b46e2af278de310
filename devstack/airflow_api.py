"""Airflow's REST API (v2) as the dev stack uses it: token, pool, unpause, trigger once, wait.

Standard library only: the Docker flavour of `make all` runs it with the host's Python, before
(and without) any virtualenv.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from typing import Any

logger = logging.getLogger(__name__)

FINISHED = ("success", "failed")


class AirflowApiError(RuntimeError):
    """Airflow answered something the stack cannot go on with."""


class AirflowApi:
    """A logged-in client of one Airflow api-server."""

    def __init__(self, base_url: str, username: str, password: str, timeout: float = 30) -> None:
        self._base = base_url.rstrip("/")
        self._timeout = timeout
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        # The api-server is on loopback: never through a proxy of the environment.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        status, body = self._call(
            "POST", "/auth/token", {"username": username, "password": password}
        )
        if status != 201:
            raise AirflowApiError(f"login as {username}: HTTP {status} {_text(body)}")
        self._headers["Authorization"] = f"Bearer {body['access_token']}"

    def close(self) -> None:
        """Nothing to release (one connection per call); kept for the callers' `finally`."""

    def health(self) -> dict[str, str]:
        """Each component's status: metadatabase, scheduler, triggerer, dag_processor."""
        _, body = self._call("GET", "/api/v2/monitor/health")
        return {name: str((body.get(name) or {}).get("status")) for name in body}

    def ensure_pool(self, name: str, slots: int, description: str) -> None:
        if self._call("GET", f"/api/v2/pools/{name}")[0] == 200:
            return
        body = {"name": name, "slots": slots, "description": description, "include_deferred": False}
        self._check(self._call("POST", "/api/v2/pools", body), f"creating pool {name}")

    def wait_for_dag(self, dag_id: str, timeout: float = 120.0) -> None:
        """Wait until the dag-processor has parsed the DAG; fail fast on an import error."""
        deadline = time.monotonic() + timeout
        while self._call("GET", f"/api/v2/dags/{dag_id}")[0] != 200:
            body = self._call("GET", "/api/v2/importErrors")[1]
            errors = body.get("import_errors", []) if isinstance(body, dict) else []
            if errors:
                raise AirflowApiError(f"the DAGs folder has import errors: {errors}")
            if time.monotonic() > deadline:
                raise AirflowApiError(f"DAG {dag_id} not parsed within {timeout:g}s")
            time.sleep(1)

    def unpause(self, dag_id: str) -> None:
        answer = self._call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
        self._check(answer, f"unpausing {dag_id}")

    def run_once(self, dag_id: str, run_id: str, conf: dict[str, Any]) -> str:
        """Make sure run `run_id` exists and has not failed; return its state.

        A run that succeeded is left alone (nothing to redo); a failed one is cleared, so it
        runs again under the same id; a missing one is triggered.
        """
        answer = self._call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
        if answer[0] == 404:
            body = {"dag_run_id": run_id, "logical_date": None, "conf": conf}
            answer = self._call("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)
            self._check(answer, f"triggering {dag_id}")
            logger.info("triggered %s/%s", dag_id, run_id)
            return "queued"
        self._check(answer, f"reading run {run_id}")
        state = str(answer[1]["state"])
        if state == "failed":
            path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/clear"
            self._check(self._call("POST", path, {"dry_run": False}), f"clearing {run_id}")
            logger.info("cleared failed run %s/%s", dag_id, run_id)
            return "queued"
        return state

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float) -> str:
        """Poll the run until it succeeds or fails; return the final state."""
        deadline = time.monotonic() + timeout
        while True:
            answer = self._call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
            self._check(answer, f"reading run {run_id}")
            state = str(answer[1]["state"])
            if state in FINISHED:
                return state
            if time.monotonic() > deadline:
                raise AirflowApiError(f"run {run_id} still {state} after {timeout:g}s")
            time.sleep(2)

    def task_states(self, dag_id: str, run_id: str) -> dict[str, int]:
        """How many task instances of the run are in each state."""
        counts: dict[str, int] = {}
        for item in self.task_instances(dag_id, run_id):
            counts[str(item["state"])] = counts.get(str(item["state"]), 0) + 1
        return counts

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """The run's task instances as Airflow lists them (id, task_id, map_index, state,
        try_number…)."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=100"
        answer = self._call("GET", path)
        self._check(answer, "listing task instances")
        return list(answer[1]["task_instances"])

    def _call(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        """(status, decoded JSON body or the text); HTTP errors are answers, not exceptions."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self._base + path, data=data, method=method, headers=self._headers
        )
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                return response.status, _decode(response.read())
        except urllib.error.HTTPError as error:
            return error.code, _decode(error.read())
        except (urllib.error.URLError, OSError) as error:
            raise AirflowApiError(f"{method} {self._base}{path}: {error}") from error

    @staticmethod
    def _check(answer: tuple[int, Any], action: str) -> None:
        status, body = answer
        if status >= 400:
            raise AirflowApiError(f"{action}: HTTP {status} {_text(body)[:500]}")


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return raw.decode(errors="replace")


def _text(body: Any) -> str:
    return body if isinstance(body, str) else json.dumps(body)
