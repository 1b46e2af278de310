"""Airflow's REST API (v2) as the dev stack uses it: token, pool, unpause, trigger once, wait."""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx

logger = logging.getLogger(__name__)

FINISHED = ("success", "failed")


class AirflowApiError(RuntimeError):
    """Airflow answered something the stack cannot go on with."""


class AirflowApi:
    """A logged-in client of one Airflow api-server."""

    def __init__(self, base_url: str, username: str, password: str) -> None:
        self._client = httpx.Client(base_url=base_url, timeout=30)
        login = {"username": username, "password": password}
        response = self._client.post("/auth/token", json=login)
        if response.status_code != 201:
            status = response.status_code
            raise AirflowApiError(f"login as {username}: HTTP {status} {response.text}")
        self._client.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def close(self) -> None:
        self._client.close()

    def health(self) -> dict[str, str]:
        """Each component's status: metadatabase, scheduler, triggerer, dag_processor."""
        body = self._client.get("/api/v2/monitor/health").json()
        return {name: str((body.get(name) or {}).get("status")) for name in body}

    def ensure_pool(self, name: str, slots: int, description: str) -> None:
        if self._client.get(f"/api/v2/pools/{name}").status_code == 200:
            return
        body = {"name": name, "slots": slots, "description": description, "include_deferred": False}
        self._check(self._client.post("/api/v2/pools", json=body), f"creating pool {name}")

    def wait_for_dag(self, dag_id: str, timeout: float = 120.0) -> None:
        """Wait until the dag-processor has parsed the DAG; fail fast on an import error."""
        deadline = time.monotonic() + timeout
        while self._client.get(f"/api/v2/dags/{dag_id}").status_code != 200:
            errors = self._client.get("/api/v2/importErrors").json().get("import_errors", [])
            if errors:
                raise AirflowApiError(f"the DAGs folder has import errors: {errors}")
            if time.monotonic() > deadline:
                raise AirflowApiError(f"DAG {dag_id} not parsed within {timeout:g}s")
            time.sleep(1)

    def unpause(self, dag_id: str) -> None:
        response = self._client.patch(f"/api/v2/dags/{dag_id}", json={"is_paused": False})
        self._check(response, f"unpausing {dag_id}")

    def run_once(self, dag_id: str, run_id: str, conf: dict[str, Any]) -> str:
        """Make sure run `run_id` exists and has not failed; return its state.

        A run that succeeded is left alone (nothing to redo); a failed one is cleared, so it
        runs again under the same id; a missing one is triggered.
        """
        response = self._client.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
        if response.status_code == 404:
            body = {"dag_run_id": run_id, "logical_date": None, "conf": conf}
            response = self._client.post(f"/api/v2/dags/{dag_id}/dagRuns", json=body)
            self._check(response, f"triggering {dag_id}")
            logger.info("triggered %s/%s", dag_id, run_id)
            return "queued"
        self._check(response, f"reading run {run_id}")
        state = str(response.json()["state"])
        if state == "failed":
            path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/clear"
            self._check(self._client.post(path, json={"dry_run": False}), f"clearing {run_id}")
            logger.info("cleared failed run %s/%s", dag_id, run_id)
            return "queued"
        return state

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float) -> str:
        """Poll the run until it succeeds or fails; return the final state."""
        deadline = time.monotonic() + timeout
        while True:
            response = self._client.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
            self._check(response, f"reading run {run_id}")
            state = str(response.json()["state"])
            if state in FINISHED:
                return state
            if time.monotonic() > deadline:
                raise AirflowApiError(f"run {run_id} still {state} after {timeout:g}s")
            time.sleep(2)

    def task_states(self, dag_id: str, run_id: str) -> dict[str, int]:
        """How many task instances of the run are in each state."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        response = self._client.get(path, params={"limit": 100})
        self._check(response, "listing task instances")
        counts: dict[str, int] = {}
        for item in response.json()["task_instances"]:
            counts[str(item["state"])] = counts.get(str(item["state"]), 0) + 1
        return counts

    @staticmethod
    def _check(response: httpx.Response, action: str) -> None:
        if response.status_code >= 400:
            raise AirflowApiError(f"{action}: HTTP {response.status_code} {response.text[:500]}")
