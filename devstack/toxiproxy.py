"""Toxiproxy (Shopify's TCP fault proxy) for the fault matrix: built with Go, driven over HTTP.

The server is built once with ``go install`` (through the Go module proxy) into
``tools/bin/toxiproxy/`` (git-ignored). ``ToxiproxyServer`` runs it on a loopback port; its HTTP
API creates proxies (a loopback listen port forwarding to a service) and adds or removes
toxics on them: ``latency``, ``timeout`` (a black hole), ``reset_peer``, ``slicer``,
``bandwidth``; disabling a proxy closes its connections and refuses new ones.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import httpx

from devstack.loopback import HOST, free_port
from devstack.processes import tail, terminate

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
VERSION = "v2.5.0"
MODULE = "github.com/Shopify/toxiproxy/v2/cmd/server"
BIN_DIR = ROOT / "tools" / "bin" / "toxiproxy"
BINARY = BIN_DIR / "server"
_BUILD_TIMEOUT_S = 600.0

Stream = Literal["upstream", "downstream"]


class ToxiproxyError(RuntimeError):
    """Toxiproxy could not be built, started or driven."""


def ensure_binary() -> Path:
    """The server binary, built with ``go install MODULE@VERSION`` the first time."""
    if BINARY.is_file():
        return BINARY
    go = shutil.which("go")
    if go is None:
        raise ToxiproxyError("Go is needed to build Toxiproxy (go install): install Go first")
    BIN_DIR.mkdir(parents=True, exist_ok=True)
    logger.info("building Toxiproxy %s into %s", VERSION, BIN_DIR)
    env = {**os.environ, "GOBIN": str(BIN_DIR)}
    try:
        result = subprocess.run(
            [go, "install", f"{MODULE}@{VERSION}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=_BUILD_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ToxiproxyError(f"go install {MODULE}@{VERSION} timed out") from exc
    if result.returncode != 0 or not BINARY.is_file():
        raise ToxiproxyError(f"go install {MODULE}@{VERSION} failed:\n{result.stderr[-2000:]}")
    return BINARY


class ToxiproxyServer:
    """The Toxiproxy server as a child process on a loopback port; ``api`` drives it."""

    def __init__(self, log_file: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log_file = log_file
        self._process: subprocess.Popen[bytes] | None = None
        self.api = ToxiproxyApi(self.url)

    def start(self, timeout: float = 30.0) -> ToxiproxyServer:
        binary = ensure_binary()
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                [str(binary), "-host", HOST, "-port", str(self.port)],
                env={**os.environ, "LOG_LEVEL": "warn"},  # its default logs every packet
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while not self.api.answers():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise ToxiproxyError(f"Toxiproxy did not start: {tail(self.log_file, 20)}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        self.api.close()
        if process is not None:
            terminate(process.pid, 10.0, is_alive=lambda: process.poll() is None)

    def __enter__(self) -> ToxiproxyServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class ToxiproxyApi:
    """The server's HTTP API: proxies and their toxics."""

    def __init__(self, url: str) -> None:
        self.client = httpx.Client(base_url=url, timeout=10.0)

    def answers(self) -> bool:
        try:
            return self.client.get("/version").status_code == 200
        except httpx.TransportError:
            return False

    def create_proxy(self, name: str, upstream_port: int, listen_port: int | None = None) -> Proxy:
        """A proxy listening on a loopback port (free one by default) forwarding upstream."""
        listen = listen_port or free_port()
        body = {
            "name": name,
            "listen": f"{HOST}:{listen}",
            "upstream": f"{HOST}:{upstream_port}",
            "enabled": True,
        }
        self.call("POST", "/proxies", body)
        return Proxy(self, name, listen)

    def reset(self) -> None:
        """Every proxy enabled again and every toxic removed."""
        self.call("POST", "/reset")

    def close(self) -> None:
        self.client.close()

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self.client.request(method, path, json=body)
        if response.status_code >= 400:
            raise ToxiproxyError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response.json() if response.content else None


class Proxy:
    """One proxy: ``port`` is where clients connect instead of the service."""

    def __init__(self, api: ToxiproxyApi, name: str, port: int) -> None:
        self.api = api
        self.name = name
        self.port = port

    def set_enabled(self, enabled: bool) -> None:
        """Disabled: open connections are closed and new ones refused (the service is gone)."""
        self.api.call("POST", f"/proxies/{self.name}", {"enabled": enabled})

    def add_toxic(self, kind: str, stream: Stream = "downstream", **attributes: int) -> str:
        """Add a toxic (``latency=``, ``timeout=``, ``average_size=``…); returns its name."""
        name = f"{kind}_{stream}"
        body = {"name": name, "type": kind, "stream": stream, "toxicity": 1.0}
        self.api.call("POST", f"/proxies/{self.name}/toxics", {**body, "attributes": attributes})
        return name

    def remove_toxic(self, name: str) -> None:
        self.api.call("DELETE", f"/proxies/{self.name}/toxics/{name}")

    @contextmanager
    def toxic(self, kind: str, stream: Stream = "downstream", **attributes: int) -> Iterator[None]:
        """The toxic for the duration of the block."""
        name = self.add_toxic(kind, stream, **attributes)
        try:
            yield
        finally:
            self.remove_toxic(name)

    @contextmanager
    def disabled(self) -> Iterator[None]:
        """The proxy down for the duration of the block."""
        self.set_enabled(False)
        try:
            yield
        finally:
            self.set_enabled(True)
