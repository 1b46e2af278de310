"""Shared helpers of the end-to-end benchmarks: services, measured processes, tables."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import sqlalchemy as sa

# The benchmarks run as scripts (`python bench/…`): the project folder, where devstack lives
# (not in the wheel), goes on the path first.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devstack.ml_api_server import MlApiServer  # noqa: E402
from pipeline.adapters.postgres import embedded as embedded_pg  # noqa: E402
from pipeline.adapters.postgres import schema as postgres_schema  # noqa: E402
from pipeline.adapters.postgres.embedded import EmbeddedPostgres  # noqa: E402
from pipeline.adapters.postgres.store import make_engine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "bench"
SEED_FILE = ROOT / "data" / "transactions.csv"
PY = sys.executable
SAMPLE_S = 0.05
MB = 1024 * 1024


def load_average() -> str:
    """The 1/5/15-minute load averages, to judge how disturbed a measurement was."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} (on {os.cpu_count()} cores)"


def pipeline_cmd(*args: str) -> list[str]:
    """`python -m pipeline …` with the venv's interpreter."""
    return [PY, "-m", "pipeline", *args]


def knobs(names: Sequence[str]) -> str:
    """The tuning variables set in the environment, for the report (defaults when unset)."""
    found = [f"{name}={os.environ[name]}" for name in names if name in os.environ]
    return " ".join(found) or "defaults"


# --- CPU accounting --------------------------------------------------------------------------


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU of a process and of all its children, alive or already reaped."""
    if pid is None:
        return 0.0
    try:
        proc = psutil.Process(pid)
        times = proc.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
        for child in proc.children(recursive=True):
            try:
                child_times = child.cpu_times()
                total += child_times.user + child_times.system
            except psutil.NoSuchProcess:
                pass  # reaped meanwhile: now counted in children_* of its parent
        return float(total)
    except psutil.NoSuchProcess:
        return 0.0


def _own_cpu_seconds() -> float:
    """CPU of this benchmark process alone (its producer, its polling), children excluded."""
    times = psutil.Process().cpu_times()
    return float(times.user + times.system)


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores, every process) since boot."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


class CpuMeter:
    """CPU seconds spent by named long-lived services between `start()` and `stop()`.

    `machine` is what every core spent busy meanwhile; minus our own processes, it tells how
    much other work (someone else's tests) competed for the CPUs during the measurement.
    """

    def __init__(self, pids: dict[str, int | None]) -> None:
        self.pids = pids
        self.before: dict[str, float] = {}
        self.spent: dict[str, float] = {}

    def start(self) -> CpuMeter:
        self.before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self.before["bench"] = _own_cpu_seconds()
        self.before["machine"] = machine_busy_seconds()
        return self

    def stop(self) -> dict[str, float]:
        self.spent = {name: cpu_seconds(pid) - self.before[name] for name, pid in self.pids.items()}
        self.spent["bench"] = _own_cpu_seconds() - self.before["bench"]
        self.spent["machine"] = machine_busy_seconds() - self.before["machine"]
        return self.spent

    def others(self, *own_cpu_s: float) -> float:
        """Busy CPU seconds of processes not measured here (after `stop()`)."""
        ours = sum(v for k, v in self.spent.items() if k != "machine") + sum(own_cpu_s)
        return max(self.spent["machine"] - ours, 0.0)


# --- A measured child process ------------------------------------------------------------------


@dataclass
class Measured:
    """How a child process ran: exit code, wall time, exact and sampled peak RSS, CPU."""

    returncode: int
    seconds: float
    peak_rss_mb: float  # ru_maxrss from wait4(): the kernel's exact high-water mark
    sampled_rss_mb: float  # highest RSS seen when polling every 50 ms
    cpu_s: float
    log: Path

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


class MeasuredProcess:
    """A child process whose own peak RSS and CPU are measured (never another process's).

    The child is reaped with os.wait4(), whose rusage belongs to that child alone, so its
    ru_maxrss is the peak resident set of the pipeline process itself; a thread also samples
    its RSS every 50 ms as a cross-check.
    """

    def __init__(self, cmd: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with open(log, "wb") as out:
            self.started = time.monotonic()
            self.popen = subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        self.pid = self.popen.pid
        self.sampled_peak = 0
        self._result: Measured | None = None
        self._done = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        try:
            proc = psutil.Process(self.pid)
            while not self._done.is_set():
                self.sampled_peak = max(self.sampled_peak, proc.memory_info().rss)
                time.sleep(SAMPLE_S)
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            return

    def poll(self) -> Measured | None:
        """The result if the process has exited, without blocking."""
        return self._reap(os.WNOHANG)

    def wait(self, timeout: float | None = None) -> Measured:
        """Wait for the process to exit (killing it after `timeout` seconds)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (result := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                self.popen.kill()
                self._reap(0)
                raise TimeoutError(f"{self.popen.args!r} still running after {timeout}s; killed")
            time.sleep(SAMPLE_S)
        return result

    def stop(self, timeout: float = 60.0) -> Measured:
        """SIGTERM (a clean stop for the stream consumer), then wait."""
        if self.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
        return self.wait(timeout)

    def _reap(self, flags: int) -> Measured | None:
        if self._result is not None:
            return self._result
        pid, status, usage = os.wait4(self.pid, flags)
        if pid == 0:
            return None
        seconds = time.monotonic() - self.started
        self._done.set()
        self.popen.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        self._result = Measured(
            returncode=self.popen.returncode,
            seconds=seconds,
            peak_rss_mb=usage.ru_maxrss * 1024 / MB,  # ru_maxrss is in KiB on Linux
            sampled_rss_mb=self.sampled_peak / MB,
            cpu_s=usage.ru_utime + usage.ru_stime,
            log=self.log,
        )
        return self._result


# --- Services ----------------------------------------------------------------------------------


class MlApi(MlApiServer):
    """The real ML API: one worker, no access log, faults off."""

    def __init__(self, log: Path) -> None:
        super().__init__(log, env={"ML_API_FAIL_FIRST_N": "0", "ML_API_ENABLE_FAULTS": "false"})


def postmaster_pid(server: EmbeddedPostgres) -> int:
    """The PostgreSQL server's process id, from its postmaster.pid file."""
    return int((server.datadir / "postmaster.pid").read_text().split()[0])


def fresh_database(server: EmbeddedPostgres, name: str) -> str:
    """Create database `name` on `server`, migrate it to head, return its URL."""
    url = embedded_pg.create_database(server.url, name)
    engine = make_engine(url)
    try:
        postgres_schema.upgrade(engine)
    finally:
        engine.dispose()
    return url


def query(url: str, sql: str, **params: object) -> tuple[Any, ...]:
    """The first row of `sql` on the database at `url`."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return tuple(conn.execute(sa.text(sql), params).one())
    finally:
        engine.dispose()


def stored_counts(url: str) -> tuple[int, int]:
    """(rows in categorised_transactions, rows in dead_letters)."""
    row = query(
        url,
        "SELECT (SELECT count(*) FROM categorised_transactions),"
        " (SELECT count(*) FROM dead_letters)",
    )
    return int(row[0]), int(row[1])


# --- Input files -------------------------------------------------------------------------------


def data_rows(path: Path) -> int:
    """Data rows of a CSV file: non-empty lines after the header."""
    with open(path, "rb") as handle:
        return sum(1 for line in handle if line.strip()) - 1


def generated_file(rows: int) -> Path:
    """A `python -m devstack generate` file of `rows` rows, cached under .cache/bench/."""
    path = CACHE / f"generated-{rows}.csv"
    if path.is_file():
        print(f"using cached {path.relative_to(ROOT)}")
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    began = time.monotonic()
    command = [PY, "-m", "devstack", "generate", "--rows", str(rows), str(partial)]
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    partial.rename(path)  # only a complete file is ever cached
    print(f"generated {path.relative_to(ROOT)} in {time.monotonic() - began:.1f}s")
    return path


# --- Output ------------------------------------------------------------------------------------


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A plain fixed-width table: text left-aligned, numbers right-aligned."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    numeric = [all(isinstance(r[i], int | float) for r in rows) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        aligned = zip(values, widths, numeric, strict=True)
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in aligned)

    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print(line(row))


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if value < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
