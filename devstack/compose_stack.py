"""`make all|status|logs|down|clean` on docker compose: the same steps and report as the native
stack (devstack/stack.py), with the services in containers.

`all`: .env (random secrets on first run), `up --build --wait` with a time limit (the failing
services' logs on failure), the DAG unpaused and triggered on the demo file through Airflow's
REST API, the same file replayed through Kafka by the producer, both waited for, then the status
table. Every step is idempotent: a second `all` only checks and reports. Standard library only.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from pathlib import Path

from devstack import compose_env
from devstack.airflow_api import AirflowApi, AirflowApiError
from devstack.compose import Compose, DockerError

DAG_ID = "categorise_transactions"
DEMO_FILE = "data/transactions.csv"  # relative to the project, as the image holds it (/app)
ADMIN_USER = "admin"
KAFKA_BIN = "/opt/kafka/bin"
KAFKA_LOCAL = "localhost:9092"
# Shown first in the status table, in this order; one-shots after them.
LONG_RUNNING = (
    "postgres",
    "kafka",
    "ml-api",
    "consumer",
    "airflow-api-server",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
)


class StackError(Exception):
    """A step of the compose stack failed; the message is one line."""


def run(command: str, compose: Compose) -> None:
    """One of env, all, up, status, logs, down, clean."""
    project = compose.project
    if command == "logs":
        compose.run("logs", "--tail", "50")
    elif command == "down":
        compose.run("down")  # named volumes, hence the data, stay
    elif command == "clean":
        compose.run("down", "--volumes", "--remove-orphans")
    elif command == "status":
        status(compose, _env(project, announce=False))
    else:
        values = _env(project, announce=True)
        if command in ("all", "up"):
            began = time.monotonic()
            up(compose, _timeout())
            if command == "all":
                demo(compose, values, project / DEMO_FILE)
            status(compose, values)
            print(f"stack ready in {time.monotonic() - began:.1f}s")


def _env(project: Path, announce: bool) -> dict[str, str]:
    values, created = compose_env.ensure(project)
    if created and announce:
        print(f"wrote {project / '.env'} with random secrets (mode 0600, git-ignored)")
    return values


def _timeout() -> float:
    return float(os.environ.get("STACK_TIMEOUT_S", "900"))


def up(compose: Compose, timeout: float) -> None:
    """Build and start every service and wait until each is healthy or completed."""
    print("→ docker compose up --build --wait (first run: image build and pulls, minutes)")
    wait = f"{int(timeout)}"
    status = compose.run("up", "--detach", "--build", "--wait", "--wait-timeout", wait, check=False)
    if status == 0:
        return
    failing = [
        row
        for row in compose.services()
        if row.get("Health") == "unhealthy"
        or (row.get("State") == "exited" and int(row.get("ExitCode") or 0) != 0)
        or row.get("State") in ("created", "restarting", "dead")
    ]
    for row in failing:
        print(f"--- last lines of {row['Service']} ({_state(row)}) ---")
        compose.run("logs", "--tail", "60", "--no-log-prefix", str(row["Service"]), check=False)
    names = ", ".join(f"{row['Service']} ({_state(row)})" for row in failing) or "see above"
    raise StackError(f"docker compose up did not get healthy within {wait}s: {names}")


def demo(compose: Compose, values: dict[str, str], path: Path) -> None:
    """The DAG on the demo file and the same file through Kafka, each done once."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    run_id = f"make_all__{path.stem}__{digest}"
    base = f"http://127.0.0.1:{compose_env.setting(values, 'AIRFLOW_HOST_PORT', '8080')}"
    password = values["AIRFLOW_ADMIN_PASSWORD"]
    timeout = _timeout()
    try:
        print("→ Airflow: DAG, unpause, trigger")
        api = AirflowApi(base, ADMIN_USER, password)
        api.wait_for_dag(DAG_ID)
        api.unpause(DAG_ID)
        print(f"  DAG run {run_id}: {api.run_once(DAG_ID, run_id, {'path': DEMO_FILE})}")
        print("→ Kafka: replay the file")
        topic = compose_env.setting(values, "KAFKA_TOPIC", "transactions")
        held = topic_size(compose, topic)
        if held:
            print(f"  topic {topic} already holds {held} records: replay skipped")
        else:
            compose.run("--profile", "producer", "run", "--rm", "producer")
        print("→ waiting for the DAG run and the consumer")
        state = api.wait_for_run(DAG_ID, run_id, timeout)
        print(f"  DAG run {run_id}: {state} {api.task_states(DAG_ID, run_id)}")
    except AirflowApiError as error:
        raise StackError(f"Airflow at {base}: {error}") from error
    group = compose_env.setting(values, "KAFKA_GROUP_ID", "txcat-categoriser")
    total, lag = wait_for_consumer(compose, topic, group, timeout)
    print(f"  topic {topic}: {total} records, consumer lag {lag}")
    if state != "success":
        raise StackError(f"DAG run failed: see {base}/dags/{DAG_ID}/runs/{run_id}")


def topic_size(compose: Compose, topic: str) -> int:
    """Records in `topic` (sum of its partitions' end offsets)."""
    text = compose.exec(
        "kafka",
        [f"{KAFKA_BIN}/kafka-get-offsets.sh", "--bootstrap-server", KAFKA_LOCAL, "--topic", topic],
    )
    return sum(int(line.rsplit(":", 1)[1]) for line in text.split() if line.count(":") == 2)


def consumer_lag(compose: Compose, topic: str, group: str) -> tuple[int, int]:
    """(records in `topic`, records the group has not committed yet), from kafka-consumer-groups."""
    text = compose.exec(
        "kafka",
        [
            f"{KAFKA_BIN}/kafka-consumer-groups.sh",
            *("--bootstrap-server", KAFKA_LOCAL, "--describe", "--group", group),
        ],
    )
    header: list[str] = []
    total = lag = 0
    for line in text.splitlines():
        fields = line.split()
        if "LOG-END-OFFSET" in fields:
            header = fields
        elif header and len(fields) >= len(header) - 3 and fields[1] == topic:
            row = dict(zip(header, fields, strict=False))
            end = int(row["LOG-END-OFFSET"])
            committed = row["CURRENT-OFFSET"]
            total += end
            lag += end - (int(committed) if committed.isdigit() else 0)
    return total, lag


def wait_for_consumer(compose: Compose, topic: str, group: str, timeout: float) -> tuple[int, int]:
    """Poll until the group has committed every record of a non-empty topic."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            total, lag = consumer_lag(compose, topic, group)
        except DockerError:  # e.g. the group does not exist until the consumer has joined
            total, lag = 0, -1
        if total > 0 and lag == 0:
            return total, lag
        if time.monotonic() > deadline:
            raise StackError(f"the consumer still lags by {lag} records: see `make logs`")
        time.sleep(2)


def status(compose: Compose, values: dict[str, str]) -> None:
    """Each service with its state and address, the Airflow login, the categorised counts."""
    rows = {str(row["Service"]): row for row in compose.services()}
    addresses = _addresses(values)
    order = [name for name in LONG_RUNNING if name in rows]
    order += sorted(set(rows) - set(order))
    table = [(name, _state(rows[name]), addresses.get(name, "-")) for name in order]
    for name in LONG_RUNNING:
        if name not in rows:
            table.append((name, "down", addresses.get(name, "-")))
    print(_table("txcat compose stack", ("service", "state", "address"), table))
    print(f"Airflow login: user {ADMIN_USER}, password {values.get('AIRFLOW_ADMIN_PASSWORD')}")
    if rows.get("postgres", {}).get("State") == "running":
        print(_table("Categorised data", ("", "rows"), counts(compose)))


def counts(compose: Compose) -> list[tuple[str, str]]:
    """Rows stored and dead-lettered, and per category, read as the analysts' role."""
    query = (
        "SELECT 'rows in categorised_transactions', count(*) FROM categorised_transactions "
        "UNION ALL SELECT 'dead letters', count(*) FROM dead_letters "
        "UNION ALL (SELECT 'category ' || category, count(*) FROM categorised_transactions "
        "GROUP BY category ORDER BY 2 DESC, 1 LIMIT 15)"
    )
    psql = ["psql", "-U", "txcat_analyst", "-d", "txcat", "-AtX", "-F", "\t", "-c", query]
    try:
        text = compose.exec("postgres", psql)
    except DockerError as error:  # e.g. the schema is not there yet: the table says so
        return [("counts unavailable", str(error)[:100])]
    return [tuple(line.split("\t", 1)) for line in text.splitlines() if "\t" in line]  # type: ignore[misc]


def _addresses(values: dict[str, str]) -> dict[str, str]:
    airflow = compose_env.setting(values, "AIRFLOW_HOST_PORT", "8080")
    ml = compose_env.setting(values, "ML_API_HOST_PORT", "8000")
    return {
        "airflow-api-server": f"http://127.0.0.1:{airflow}",
        "ml-api": f"http://127.0.0.1:{ml}/docs",
        "consumer": "metrics on :9108 in the network (docker compose exec consumer …)",
        "kafka": "kafka:9092 in the network",
        "postgres": "docker compose exec postgres psql -U txcat_analyst txcat",
    }


def _state(row: dict[str, object]) -> str:
    state = str(row.get("State") or "?")
    health = str(row.get("Health") or "")
    if state == "running":
        return "up" if health in ("", "healthy") else health
    if state == "exited":
        code = int(str(row.get("ExitCode") or 0))
        return "done" if code == 0 else f"exited {code}"
    return state


def _table(title: str, columns: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    """A plain-text table (the host may have no `rich`)."""
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([title, line(columns), rule, *(line(row) for row in rows)])
