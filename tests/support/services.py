"""Real services for tests: the ML API on a free loopback port, with fault injection on."""

from __future__ import annotations

import secrets
from pathlib import Path

from devstack.loopback import free_port
from devstack.ml_api_server import ROOT, MlApiServer

__all__ = ["ROOT", "MlApiProcess", "free_port"]


class MlApiProcess(MlApiServer):
    """The ML API with its test-only fault endpoint enabled."""

    def __init__(self, log_path: Path, port: int | None = None, **env: str) -> None:
        faults = {"ML_API_ENABLE_FAULTS": "true", "ML_API_FAULTS_TOKEN": secrets.token_urlsafe(16)}
        super().__init__(log_path, port, env={**faults, **env})
