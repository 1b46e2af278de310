"""supervisord for the native stack: one generated config, programs started, updated, stopped."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

VENV_BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Program:
    """One long-running service: its command, the address a person opens, a health probe."""

    name: str
    command: str
    url: str
    health: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    stop_wait_s: int = 30  # SIGTERM, then SIGKILL after this long


class Supervisor:
    """The supervisord of one state folder (`<data>/supervisor`), driven by supervisorctl."""

    def __init__(self, data_dir: Path, workdir: Path) -> None:
        self.folder = data_dir / "supervisor"
        self.logs = data_dir / "logs"
        self.conf = self.folder / "supervisord.conf"
        self.workdir = workdir

    def log_file(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def apply(self, programs: Sequence[Program]) -> None:
        """Write the config; start supervisord, or restart the programs whose config changed."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(self._config(programs))
        self.conf.chmod(0o600)
        if self.running():
            self.ctl("reread")
            self.ctl("update")  # a no-op for unchanged programs: nothing restarts
        else:
            subprocess.run(
                [str(VENV_BIN / "supervisord"), "-c", str(self.conf)], check=True, cwd=self.workdir
            )

    def running(self) -> bool:
        return self.conf.exists() and self.ctl("pid", check=False).returncode == 0

    def states(self) -> dict[str, str]:
        """Each program's supervisord state (RUNNING, STARTING, BACKOFF, FATAL, STOPPED…)."""
        if not self.running():
            return {}
        lines = self.ctl("status", check=False).stdout.splitlines()
        return {parts[0]: parts[1] for parts in (line.split() for line in lines) if len(parts) > 1}

    def shutdown(self, timeout: float = 90.0) -> bool:
        """Stop every program, then supervisord itself; whether it was running."""
        if not self.running():
            return False
        pid = self.ctl("pid").stdout.strip()
        self.ctl("shutdown", check=False)
        deadline = time.monotonic() + timeout
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        return True

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(VENV_BIN / "supervisorctl"), "-c", str(self.conf), *args],
            capture_output=True,
            text=True,
            check=check,
        )

    def _config(self, programs: Sequence[Program]) -> str:
        sections = [
            f"[unix_http_server]\nfile={self.folder}/supervisor.sock\nchmod=0700\n",
            f"[supervisord]\nlogfile={self.logs}/supervisord.log\npidfile={self.folder}/supervisord.pid\n"
            f"directory={self.workdir}\n",
            "[rpcinterface:supervisor]\n"
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n",
            f"[supervisorctl]\nserverurl=unix://{self.folder}/supervisor.sock\n",
        ]
        for item in programs:
            lines = [
                f"[program:{item.name}]",
                f"command={item.command}",
                f"directory={self.workdir}",
                "autorestart=true",
                "startsecs=3",
                "startretries=10",
                # Airflow and uvicorn fork workers: signal the whole group so none is orphaned.
                "stopasgroup=true",
                "killasgroup=true",
                f"stopwaitsecs={item.stop_wait_s}",
                "redirect_stderr=true",
                f"stdout_logfile={self.log_file(item.name)}",
                "stdout_logfile_maxbytes=20MB",
                "stdout_logfile_backups=2",
            ]
            if item.env:
                pairs = (f"{key}={_quote(value)}" for key, value in item.env.items())
                lines.append("environment=" + ",".join(pairs))
            sections.append("\n".join(lines) + "\n")
        return "\n".join(sections)


def _quote(value: str) -> str:
    # supervisord expands %(name)s in its config: a literal % (as in %2F) must be doubled.
    escaped = value.replace("%", "%%").replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
