"""A real single-node Apache Kafka broker (KRaft) run from Kafka's own jars, without Docker.

``KafkaBroker`` is a child process for tests; ``up()``/``down()`` manage a detached broker for
local development, recorded in ``<state_dir>/broker.json``. Data and ports survive restarts.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from devstack.kafka_config import (
    BrokerPorts,
    choose_ports,
    log4j_properties,
    new_cluster_id,
    server_properties,
)
from devstack.kafka_dist import (
    BrokerError,
    ClassArchive,
    KafkaDistribution,
    ensure_distribution,
    file_lock,
    kafka_version,
)
from devstack.loopback import HOST, port_is_free, port_is_open
from devstack.processes import pid_alive, tail, terminate

__all__ = ["BrokerError", "KafkaBroker", "down", "up"]

logger = logging.getLogger(__name__)

STATE_FILE = "broker.json"
_HEAP = ("-Xms256m", "-Xmx512m")
_STOP_TIMEOUT_S = 30.0
_FORMAT_TIMEOUT_S = 120.0
_POLL_S = 0.05
# Detached brokers started by this process, kept so that down() can reap them and so that
# Popen does not warn about a child still running when it is garbage-collected.
_DETACHED: dict[int, subprocess.Popen[bytes]] = {}


class KafkaBroker:
    """A single-node KRaft broker whose data lives in ``data_dir`` and survives restarts.

    A restarted broker reuses the ports written in ``data_dir/server.properties``, so clients
    keep their bootstrap address. The Kafka log goes to ``log_file`` (``data_dir/kafka.log``).
    With ``advertised_port``, clients are sent to that loopback port (a proxy such as
    Toxiproxy forwarding to ``listener_port``), so every client connection goes through it;
    ``direct_bootstrap`` bypasses it (probes that must see the broker during a network fault).
    """

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        cache_dir: Path | None = None,
        *,
        log_file: Path | None = None,
        advertised_port: int | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.log_file = Path(log_file).resolve() if log_file else self.data_dir / "kafka.log"
        self._requested_port = port
        self.advertised_port = advertised_port
        self._cache_dir = cache_dir
        self._ports: BrokerPorts | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._archive: ClassArchive | None = None
        self._properties = self.data_dir / "server.properties"
        self._logging_flag = f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}"

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:PORT`` for ``bootstrap.servers`` (the advertised port when one is set)."""
        return f"{HOST}:{self.advertised_port or self.listener_port}"

    @property
    def listener_port(self) -> int:
        """The port the PLAINTEXT listener binds (what a proxy forwards to); known once started
        or once ``ports()`` chose it."""
        if self._ports is None:
            raise BrokerError("the Kafka broker has not been started")
        return self._ports.broker

    @property
    def direct_bootstrap(self) -> str:
        """An address that reaches the broker without the proxy (the listener itself if none)."""
        if self._ports is None:
            raise BrokerError("the Kafka broker has not been started")
        return f"{HOST}:{self._ports.direct or self._ports.broker}"

    def ports(self) -> BrokerPorts:
        """Choose (or read back) the ports before a start, e.g. to point a proxy at them."""
        if self._ports is None:  # chosen once: a restart keeps them
            self.data_dir.mkdir(parents=True, exist_ok=True)
            direct = self.advertised_port is not None
            self._ports = choose_ports(self._properties, self._requested_port, direct=direct)
        return self._ports

    @property
    def pid(self) -> int | None:
        """The JVM's process id while this object runs it."""
        return None if self._process is None else self._process.pid

    def start(self, timeout: float = 60.0) -> str:
        """Start the broker, formatting ``data_dir`` the first time; return once it answers."""
        return self._start(timeout, detached=False)

    def stop(self, timeout: float = _STOP_TIMEOUT_S) -> None:
        """Shut down cleanly (SIGTERM), SIGKILL after ``timeout`` seconds; no-op if not running."""
        process, self._process = self._process, None
        if process is None:
            return
        clean = terminate(process.pid, timeout, is_alive=lambda: process.poll() is None)
        if self._archive is not None:
            self._archive.adopt(clean_exit=clean)

    def __enter__(self) -> KafkaBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _start(self, timeout: float, *, detached: bool) -> str:
        if self._process is not None and self._process.poll() is None:
            return self.bootstrap
        dist = ensure_distribution(self._cache_dir)
        ports = self._configure(dist)
        self._archive = dist.class_archive(record=True)
        jvm = (*_HEAP, *self._archive.jvm_flags, self._logging_flag)
        argv = dist.command("kafka.Kafka", str(self._properties), jvm=jvm)
        with self.log_file.open("ab") as out:
            process = self._process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=detached,
            )
        logger.info("Kafka %s starting on %s (pid %d)", kafka_version(), self.bootstrap, self.pid)
        if not detached:  # never leak a JVM when the owner forgets stop() or the interpreter exits
            weakref.finalize(self, _stop_child, process)
        ready_port = ports.direct or ports.broker  # the proxy may not forward yet
        try:
            _wait_until_ready(ready_port, lambda: process.poll() is None, timeout, self.log_file)
        except BaseException:
            self.stop()
            raise
        return self.bootstrap

    def _configure(self, dist: KafkaDistribution) -> BrokerPorts:
        """Write server.properties and the log4j2 config, format storage if new."""
        ports = self.ports()
        for port in (ports.broker, ports.controller, ports.direct):
            if port is not None and not port_is_free(port):
                raise BrokerError(f"port {port} on {HOST} is already in use; Kafka cannot bind it")
        properties = server_properties(ports, self.data_dir / "logs", self.advertised_port)
        self._properties.write_text(properties)
        (self.data_dir / "log4j2.properties").write_text(log4j_properties(self.log_file))
        self._format_storage(dist)
        return ports

    def _detach(self) -> dict[str, Any]:
        """Let go of the running process (``down()`` stops it); return what to record about it."""
        process, ports, archive = self._process, self._ports, self._archive
        if process is None or ports is None or archive is None:
            raise BrokerError("the Kafka broker is not running")
        self._process = None
        _DETACHED[process.pid] = process
        return {
            "pid": process.pid,
            "port": ports.broker,
            "controller_port": ports.controller,
            "bootstrap": self.bootstrap,
            "kafka_version": kafka_version(),
            "data_dir": str(self.data_dir),
            "log_file": str(self.log_file),
            "class_archive": str(archive.path),
            "class_archive_recording": archive.recording and str(archive.recording),
            "started_at": datetime.now(UTC).isoformat(),
        }

    def _format_storage(self, dist: KafkaDistribution) -> None:
        # meta.properties (with the cluster id) marks a formatted log dir: format only once so
        # that topics and records survive a restart.
        if (self.data_dir / "logs" / "meta.properties").is_file():
            return
        jvm = (*dist.class_archive(record=False).jvm_flags, self._logging_flag)
        format_args = ("format", "-t", new_cluster_id(), "-c", str(self._properties))
        argv = dist.command("kafka.tools.StorageTool", *format_args, jvm=jvm)
        try:
            result = subprocess.run(
                argv, capture_output=True, text=True, timeout=_FORMAT_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise BrokerError(f"formatting {self.data_dir} timed out") from exc
        if result.returncode != 0:
            output = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
            raise BrokerError(f"formatting Kafka storage in {self.data_dir} failed:\n{output}")


def _stop_child(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        terminate(process.pid, 10.0, is_alive=lambda: process.poll() is None)


def up(state_dir: Path, port: int | None = None, *, timeout: float = 60.0) -> str:
    """Start a detached broker for ``state_dir`` and return its bootstrap address.

    Idempotent: if the broker recorded in ``state_dir/broker.json`` is alive, wait until it
    answers and return its address. The broker outlives the caller; stop it with ``down()``.
    """
    state_dir = Path(state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(state_dir / ".lock"):
        state = _read_state(state_dir)
        if state is not None and _is_recorded_broker(state):
            pid = int(state["pid"])
            log_file = Path(state["log_file"])
            _wait_until_ready(int(state["port"]), lambda: pid_alive(pid), timeout, log_file)
            return str(state["bootstrap"])
        broker = KafkaBroker(state_dir / "data", port, log_file=state_dir / "kafka.log")
        bootstrap = broker._start(timeout, detached=True)
        _write_state(state_dir, broker._detach())
        return bootstrap


def down(state_dir: Path, *, timeout: float = _STOP_TIMEOUT_S) -> bool:
    """Stop the broker recorded in ``state_dir`` (data is kept); ``False`` if none was running."""
    state_dir = Path(state_dir).resolve()
    if not state_dir.is_dir():
        return False
    with file_lock(state_dir / ".lock"):
        state = _read_state(state_dir)
        if state is None:
            return False
        running = _is_recorded_broker(state)
        if running:
            pid = int(state["pid"])
            child = _DETACHED.pop(pid, None)
            is_alive = (lambda: child.poll() is None) if child else (lambda: pid_alive(pid))
            clean = terminate(pid, timeout, is_alive)
            recording = state.get("class_archive_recording")
            archive = ClassArchive(Path(state["class_archive"]), recording and Path(recording))
            archive.adopt(clean_exit=clean)
        (state_dir / STATE_FILE).unlink(missing_ok=True)
        return running


def _wait_until_ready(
    port: int, is_alive: Callable[[], bool], timeout: float, log_file: Path
) -> None:
    deadline = time.monotonic() + timeout
    admin: AdminClient | None = None
    while True:
        if not is_alive():
            raise BrokerError(f"Kafka exited during startup. {_log_excerpt(log_file)}")
        # Connect the client only once the port is open: librdkafka backs off after refusals.
        if admin is None and port_is_open(port):
            # A probe: its failures are expected until the broker is up, so keep it silent.
            admin = AdminClient({"bootstrap.servers": f"{HOST}:{port}", "log_level": 0})
        remaining = deadline - time.monotonic()
        if admin is not None and _answers(admin, max(0.1, min(2.0, remaining))):
            return
        if remaining <= 0:
            raise BrokerError(
                f"Kafka did not answer on {HOST}:{port} within {timeout:g}s. "
                f"{_log_excerpt(log_file)}"
            )
        time.sleep(_POLL_S)


def _log_excerpt(log_file: Path) -> str:
    # The cause (an ERROR line and the exception under it) is often buried above the tail by
    # shutdown messages: show it first.
    lines = tail(log_file, 300).splitlines()
    errors = [
        f"{line}\n{next_line}"
        for line, next_line in zip(lines, [*lines[1:], ""], strict=True)
        if "] ERROR " in line
    ]
    cause = "Errors:\n" + "\n".join(errors[-3:]) + "\n" if errors else ""
    return f"{cause}End of {log_file}:\n" + "\n".join(lines[-25:])


def _answers(admin: AdminClient, timeout: float) -> bool:
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException:
        return False
    return bool(metadata.brokers)


def _is_recorded_broker(state: dict[str, Any]) -> bool:
    """Whether the pid in ``state`` is alive and still our broker (pids get reused)."""
    pid = int(state["pid"])
    if not pid_alive(pid):
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc: trust the pid
    properties = str(Path(state["data_dir"]) / "server.properties").encode()
    return b"kafka.Kafka" in argv and properties in argv


def _read_state(state_dir: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads((state_dir / STATE_FILE).read_text())
    except FileNotFoundError:
        return None
    except (ValueError, OSError) as exc:
        raise BrokerError(f"unreadable {state_dir / STATE_FILE}: {exc}") from exc
    return state


def _write_state(state_dir: Path, state: dict[str, Any]) -> None:
    tmp = state_dir / f"{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, state_dir / STATE_FILE)
