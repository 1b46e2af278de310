"""A child process that imports Airflow and answers JSON requests, one per line, on stdin.

Airflow configures logging, settings and its ORM at import time and keeps them for the life of
the process, so the tests talk to it here instead of importing it into pytest's process: the
rest of the suite never sees Airflow. Requests:

    {"op": "describe"}                                 -> the DagBag: import errors, params, tasks
    {"op": "test", "dag_id": …, "conf": {…}, "env": {…}} -> dag.test(); the run's and tasks' states

Replies are one JSON line each on the original stdout; everything Airflow prints goes to stderr.
The environment (AIRFLOW_HOME, AIRFLOW__…) is set by the parent before this process starts.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any


def main() -> None:
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # Airflow's console logging must not interleave with the replies
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    migrated = False
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if request["op"] == "describe":
                reply: dict[str, Any] = describe(bag)
            else:
                if not migrated:
                    from airflow.utils import db

                    db.initdb()
                    migrated = True
                reply = run_test(bag, request)
        except Exception:  # noqa: BLE001 - reported to the test, which fails with it
            reply = {"error": traceback.format_exc()}
        replies.write(json.dumps(reply, default=str) + "\n")


def describe(bag: Any) -> dict[str, Any]:
    """The DAGs as plain data: params, and per task its pool, retries, trigger rule, upstreams."""
    dags = {}
    for dag_id, dag in bag.dags.items():
        params = {name: dag.params.get_param(name).dump() for name in dag.params}
        tasks = {
            task.task_id: {
                "pool": task.pool,
                "retries": task.retries,
                "trigger_rule": getattr(task.trigger_rule, "value", task.trigger_rule),
                "mapped": type(task).__name__ == "DecoratedMappedOperator",
                "upstream": sorted(task.upstream_task_ids),
            }
            for task in dag.tasks
        }
        dags[dag_id] = {"params": params, "tasks": tasks, "max_active_runs": dag.max_active_runs}
    return {"import_errors": dict(bag.import_errors), "dags": dags}


def run_test(bag: Any, request: dict[str, Any]) -> dict[str, Any]:
    """Set the pipeline's environment for this run, then `dag.test()` it in this process."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    os.environ.update(request.get("env", {}))
    dag = bag.dags[request["dag_id"]]
    run = dag.test(run_conf=request.get("conf") or {})
    with create_session() as session:
        instances = session.query(TaskInstance).filter(
            TaskInstance.dag_id == dag.dag_id, TaskInstance.run_id == run.run_id
        )
        tasks = sorted((ti.task_id, ti.map_index, str(ti.state), ti.try_number) for ti in instances)
    return {"run_id": run.run_id, "state": str(run.state), "tasks": tasks}


if __name__ == "__main__":
    main()
