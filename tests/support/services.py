"""Real services for tests: the ML API on a free loopback port, with fault injection on."""

from __future__ import annotations

from pathlib import Path

from pipeline.dev.ml_api_server import ROOT, MlApiServer
from pipeline.dev.ports import free_port

__all__ = ["ROOT", "MlApiProcess", "free_port"]


class MlApiProcess(MlApiServer):
    """The ML API with its test-only fault endpoint enabled."""

    def __init__(self, log_path: Path, port: int | None = None, **env: str) -> None:
        super().__init__(log_path, port, ML_API_ENABLE_FAULTS="true", **env)
