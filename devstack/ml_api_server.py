"""The real ML API (`uvicorn ml_api.main:app`) as a subprocess on a loopback port.

Used by the tests and the benchmarks; it runs the service over HTTP and never imports it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

import httpx

from devstack.loopback import free_port

ROOT = Path(__file__).resolve().parents[1]


class MlApiServer:
    """One uvicorn worker; stop() and start() again keep the same URL (outage tests)."""

    def __init__(
        self,
        log_path: Path,
        port: int | None = None,
        access_log: bool = False,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.access_log = access_log
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def start(self, timeout: float = 30.0) -> Self:
        """Start and wait until /health answers."""
        command = [
            sys.executable, "-m", "uvicorn", "ml_api.main:app", "--host", "127.0.0.1",
            "--port", str(self.port), "--workers", "1", "--log-level", "warning",
        ]  # fmt: skip
        if not self.access_log:
            command.append("--no-access-log")
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ML API exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("ML API did not become healthy in time")

    def stop(self) -> None:
        """Terminate and reap the server (no-op when stopped)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def arm_faults(self, count: int, status: int = 503) -> int:
        """Make the next `count` /predict calls fail (needs ML_API_ENABLE_FAULTS=true and
        ML_API_FAULTS_TOKEN in the server's environment); returns how many are armed."""
        token = self.env.get("ML_API_FAULTS_TOKEN", "")
        response = httpx.post(
            f"{self.url}/admin/faults",
            json={"fail_next": count, "status": status},
            headers={"Authorization": f"Bearer {token}"},
        )
        response.raise_for_status()
        return int(response.json()["pending"])
