"""The real services of the fault matrix, each behind its own Toxiproxy proxy.

PostgreSQL (the embedded wheel's server on a loopback TCP port), the Kafka broker (its client
listener advertises the proxy's port, so producers and consumers connect through it) and the
ML API (fault endpoint on) are started once; the pipeline's processes reach them only through
the proxies, the harness's probes directly.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import uuid4

import httpx

from devstack.kafka_broker import KafkaBroker
from devstack.loopback import free_port
from devstack.ml_api_server import MlApiServer
from devstack.postgres_tcp import TcpPostgres
from devstack.toxiproxy import Proxy, ToxiproxyServer
from pipeline.adapters.postgres import embedded as embedded_pg
from pipeline.adapters.postgres import schema as postgres_schema
from pipeline.adapters.postgres.store import make_engine

if TYPE_CHECKING:
    from bench.chaos.airflow import ChaosAirflow

logger = logging.getLogger(__name__)

TEMPLATE = "chaos_template"


@dataclass
class Proxies:
    """One proxy per dependency of the pipeline."""

    postgres: Proxy
    kafka: Proxy
    ml_api: Proxy


class ChaosServices:
    """Toxiproxy, PostgreSQL, Kafka and the ML API in a temporary folder, until ``stop()``."""

    def __init__(self, keep: bool = False) -> None:
        # mkdtemp, not a pytest folder: the server's OS user must traverse every parent.
        self.root = Path(tempfile.mkdtemp(prefix="txcat-chaos-"))
        self.logs = self.root / "logs"
        self.logs.mkdir()
        self.keep = keep
        self.toxiproxy = ToxiproxyServer(self.logs / "toxiproxy.log")
        self.postgres = TcpPostgres(self.root / "postgres")
        self.broker = KafkaBroker(
            self.root / "kafka", log_file=self.logs / "kafka.log", advertised_port=free_port()
        )
        self.faults_token = secrets.token_urlsafe(16)
        faults = {"ML_API_ENABLE_FAULTS": "true", "ML_API_FAULTS_TOKEN": self.faults_token}
        self.ml_api = MlApiServer(self.logs / "ml_api.log", env=faults)
        self.proxies: Proxies | None = None
        self._airflow: ChaosAirflow | None = None

    def start(self) -> ChaosServices:
        began = time.monotonic()
        api = self.toxiproxy.start().api
        self.postgres.start()
        assert self.broker.advertised_port is not None
        broker_port = self.broker.ports().broker
        self.proxies = Proxies(
            postgres=api.create_proxy("postgres", self.postgres.port),
            kafka=api.create_proxy("kafka", broker_port, self.broker.advertised_port),
            ml_api=api.create_proxy("ml_api", self.ml_api.port),
        )
        self.broker.start(timeout=180)
        self.ml_api.start()
        self._migrate_template()
        logger.info("services up in %.1fs under %s", time.monotonic() - began, self.root)
        return self

    def airflow(self) -> ChaosAirflow:
        """Airflow, started on first use (only its scenarios need it: it takes a minute)."""
        if self._airflow is None:
            from bench.chaos.airflow import ChaosAirflow

            self._airflow = ChaosAirflow(self)
            try:
                self._airflow.start()
            except BaseException:
                self._airflow.stop()
                raise
        return self._airflow

    def stop(self) -> None:
        stops = [self.ml_api.stop, self.broker.stop, self.postgres.stop, self.toxiproxy.stop]
        if self._airflow is not None:
            stops.insert(0, self._airflow.stop)
        for stop in stops:
            try:
                stop()
            except Exception:  # noqa: BLE001 - stop the others whatever happened
                logger.exception("stopping a service failed")
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> ChaosServices:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def proxy(self) -> Proxies:
        if self.proxies is None:
            raise RuntimeError("services not started")
        return self.proxies

    def heal(self) -> None:
        """Every proxy enabled and every toxic removed (between scenarios)."""
        self.toxiproxy.api.reset()

    def new_database(self, prefix: str) -> str:
        """A fresh database at the schema head; returns its name."""
        name = f"{prefix}_{uuid4().hex[:8]}".replace("-", "_")
        embedded_pg.create_database(self.postgres.url(), name, template=TEMPLATE)
        return name

    def pipeline_env(self, database: str) -> dict[str, str]:
        """What a pipeline process needs to reach everything through the proxies."""
        return {
            "DATABASE_URL": self.postgres.url(database, port=self.proxy.postgres.port),
            "ML_API_URL": f"http://127.0.0.1:{self.proxy.ml_api.port}",
            "KAFKA_BOOTSTRAP_SERVERS": self.broker.bootstrap,
        }

    def arm_ml_faults(self, count: int, status: int = 503) -> None:
        """The next ``count`` /predict calls answer ``status`` (the ML API's own fault hook)."""
        response = httpx.post(
            f"{self.ml_api.url}/admin/faults",
            json={"fail_next": count, "status": status},
            headers={"Authorization": f"Bearer {self.faults_token}"},
            timeout=10,
        )
        response.raise_for_status()

    def _migrate_template(self) -> None:
        url = embedded_pg.create_database(self.postgres.url(), TEMPLATE)
        engine = make_engine(url)
        try:
            postgres_schema.upgrade(engine)
        finally:
            engine.dispose()  # a template must have no open connection when it is copied
