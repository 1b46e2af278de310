"""A recording stand-in for the `docker` command line and a fake Airflow api-server on loopback,
for the Docker branch of `make all` on a machine without a Docker engine.

The stand-in is a script put first on PATH: it appends each argv to a log and answers from a
JSON state file (engine up or not, compose plugin or not, `up` succeeding or not, the topic's
records, the consumer's lag, the psql counts), so a test can assert the sequence of calls.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

STAND_IN = r"""
import json, sys
from pathlib import Path

state_path = Path(__file__).with_name("state.json")
state = json.loads(state_path.read_text())
args = sys.argv[1:]
with open(state["log"], "a") as log:
    log.write(json.dumps(args) + "\n")

def done(code=0, out="", err=""):
    sys.stdout.write(out)
    sys.stderr.write(err)
    sys.exit(code)

if args == ["info"]:
    if state["engine"]:
        done(0, "Server Version: 28.2.2\n")
    done(1, err="Cannot connect to the Docker daemon at unix:///var/run/docker.sock.\n")
if args[:1] != ["compose"]:
    done(2, err=f"stand-in: unexpected docker {args}\n")
if not state["compose"]:
    done(1, err="docker: unknown command: docker compose\n")
rest = args[1:]
if rest == ["version", "--short"]:
    done(0, state["compose_version"] + "\n")
if rest[:1] == ["up"]:
    done(state["up_status"], err="Container txcat-consumer-1  Healthy\n")
if rest[:1] == ["ps"]:
    done(0, "".join(json.dumps(row) + "\n" for row in state["ps"]))
if rest[:1] == ["logs"]:
    done(0, f"(log of {rest[-1]})\n")
if rest == ["--profile", "producer", "run", "--rm", "producer"]:
    state["produced"] = True
    state_path.write_text(json.dumps(state))
    done(0, "produced 10000 events\n")
if rest[:3] == ["exec", "-T", "kafka"] and rest[3].endswith("kafka-get-offsets.sh"):
    held = state["records"] if state["produced"] else 0
    done(0, f"transactions:0:{held // 2}\ntransactions:1:{held - held // 2}\n")
if rest[:3] == ["exec", "-T", "kafka"] and rest[3].endswith("kafka-consumer-groups.sh"):
    held = state["records"] if state["produced"] else 0
    head = "GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG CONSUMER-ID HOST CLIENT-ID\n"
    rows = "".join(
        f"txcat-categoriser transactions {p} {n} {n} 0 c-1 /10.0.0.5 c\n"
        for p, n in ((0, held // 2), (1, held - held // 2))
    )
    done(0, "\n" + head + rows)
if rest[:3] == ["exec", "-T", "postgres"]:
    done(0, state["counts"])
if rest[:1] == ["down"]:
    done(0)
done(2, err=f"stand-in: unexpected docker {args}\n")
"""


def install_stand_in(folder: Path, log: Path, **overrides: Any) -> Path:
    """Write `folder/docker` and its state; return the state file (JSON) to adjust later."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {
        "log": str(log),
        "engine": True,
        "compose": True,
        "compose_version": "2.29.7",
        "up_status": 0,
        "ps": [],
        "records": 10000,
        "produced": False,
        "counts": (
            "rows in categorised_transactions\t9988\ndead letters\t12\ncategory groceries\t700\n"
        ),
        **overrides,
    }
    (folder / "state.json").write_text(json.dumps(state))
    script = folder / "docker"
    script.write_text(f"#!{sys.executable}\n{STAND_IN}")
    script.chmod(0o755)
    return folder / "state.json"


def calls(log: Path) -> list[list[str]]:
    """Every docker command line the stand-in saw, in order."""
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


@dataclass
class FakeAirflow:
    """What the fake api-server was asked, and the password it accepts."""

    password_file: Path
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    runs: dict[str, str] = field(default_factory=dict)
    polls: int = 0
    port: int = 0


@contextmanager
def fake_airflow(password_file: Path) -> Iterator[FakeAirflow]:
    """An Airflow REST API (the calls `make all` makes) on 127.0.0.1, a free port."""
    fake = FakeAirflow(password_file)
    token = "token-of-the-fake"

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _answer(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            fake.requests.append((method, self.path, body))
            if self.path == "/auth/token":
                password = _env_value(fake.password_file, "AIRFLOW_ADMIN_PASSWORD")
                ok = body == {"username": "admin", "password": password}
                return self._answer(201 if ok else 401, {"access_token": token} if ok else {})
            if self.headers.get("Authorization") != f"Bearer {token}":
                return self._answer(401, {"detail": "not authenticated"})
            parts = self.path.split("?")[0].strip("/").split("/")
            if parts == ["api", "v2", "dags", "categorise_transactions"]:
                return self._answer(200, {"dag_id": parts[-1], "is_paused": method == "GET"})
            if parts[:5] == ["api", "v2", "dags", "categorise_transactions", "dagRuns"]:
                return self._runs(method, parts[5:], body)
            return self._answer(404, {"detail": f"no {self.path}"})

        def _runs(self, method: str, rest: list[str], body: Any) -> None:
            if method == "POST" and not rest:
                fake.runs[body["dag_run_id"]] = "queued"
                return self._answer(200, {"dag_run_id": body["dag_run_id"], "state": "queued"})
            run_id = rest[0]
            if run_id not in fake.runs:
                return self._answer(404, {"detail": "no such run"})
            if rest[1:] == ["taskInstances"]:
                states = ["success"] * 4
                return self._answer(200, {"task_instances": [{"state": s} for s in states]})
            fake.polls += 1
            if fake.runs[run_id] == "queued":
                fake.runs[run_id] = "running"
            elif fake.runs[run_id] == "running":
                fake.runs[run_id] = "success"
            return self._answer(200, {"dag_run_id": run_id, "state": fake.runs[run_id]})

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._handle("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._handle("POST")

        def do_PATCH(self) -> None:  # noqa: N802
            self._handle("PATCH")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


def _env_value(path: Path, name: str) -> str | None:
    if not path.exists():
        return None
    for line in path.read_text().splitlines():
        if line.startswith(f"{name}="):
            return line.split("=", 1)[1]
    return None
