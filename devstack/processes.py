"""Stopping and probing processes by pid, and reading the end of their logs."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

logger = logging.getLogger(__name__)

_POLL_S = 0.05


def terminate(pid: int, timeout: float, is_alive: Callable[[], bool]) -> bool:
    """SIGTERM, then SIGKILL after ``timeout`` seconds; ``True`` if it exited on SIGTERM.

    ``is_alive`` must reap the process if it is our child (``Popen.poll``), else use
    :func:`pid_alive`.
    """
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if wait_gone(is_alive, timeout):
        return True
    logger.warning("pid %d still running %gs after SIGTERM; killing it", pid, timeout)
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait_gone(is_alive, 10.0)
    return False


def wait_gone(is_alive: Callable[[], bool], timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``is_alive()`` to turn false; whether it did."""
    deadline = time.monotonic() + timeout
    while is_alive():
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_S)
    return True


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is running (reaping it if it is our exited child; zombies are not)."""
    with suppress(ChildProcessError):  # raised when it is not our child: ask the kernel instead
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # an exited child of another process lingers as a zombie until reaped
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a (possibly large or missing) log file."""
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, handle.seek(0, os.SEEK_END) - 64 * 1024))
            text = handle.read().decode(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:])
