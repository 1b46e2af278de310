"""The generated configuration of the dev broker: loopback ports, server.properties, log4j2."""

from __future__ import annotations

import base64
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from devstack.loopback import HOST, free_port

_LISTENERS = re.compile(r"^listeners=(.*)$", re.MULTILINE)
_LISTENER = re.compile(rf"(\w+)://{re.escape(HOST)}:(\d+)")


@dataclass(frozen=True)
class BrokerPorts:
    """The client (PLAINTEXT) and KRaft controller ports, both on loopback.

    ``direct`` is a second client listener that advertises itself, present only when the
    PLAINTEXT listener advertises another address (a proxy in front of the broker): the broker
    talks to itself and test probes reach it there, whatever the proxy does.
    """

    broker: int
    controller: int
    direct: int | None = None


def choose_ports(properties: Path, requested: int | None, *, direct: bool = False) -> BrokerPorts:
    """Reuse the ports of an existing ``server.properties`` so a restart keeps its address."""
    recorded = _recorded_ports(properties)
    taken = set() if recorded is None else {recorded.broker, recorded.controller}
    if recorded is not None and recorded.direct is not None:
        taken.add(recorded.direct)
    broker = requested or (recorded.broker if recorded else _another_port(taken))
    controller = recorded.controller if recorded else _another_port(taken | {broker})
    direct_port = None
    if direct:
        direct_port = (recorded and recorded.direct) or _another_port(taken | {broker, controller})
    return BrokerPorts(broker, controller, direct_port)


def _another_port(taken: set[int]) -> int:
    port = free_port()
    while port in taken:
        port = free_port()
    return port


def _recorded_ports(properties: Path) -> BrokerPorts | None:
    try:
        match = _LISTENERS.search(properties.read_text())
    except FileNotFoundError:
        return None
    ports = {} if match is None else {n: int(p) for n, p in _LISTENER.findall(match.group(1))}
    if "PLAINTEXT" not in ports or "CONTROLLER" not in ports:
        return None
    return BrokerPorts(ports["PLAINTEXT"], ports["CONTROLLER"], ports.get("DIRECT"))


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes in URL-safe base64, as ``kafka-storage random-uuid``."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):  # Kafka's tools would read it as an option
            return cluster_id


def server_properties(ports: BrokerPorts, log_dir: Path, advertised_port: int | None = None) -> str:
    """A single-node KRaft (broker + controller) configuration sized for tests.

    With ``advertised_port``, clients of the PLAINTEXT listener are told to connect to that
    loopback port (a proxy forwarding to ``ports.broker``), and the broker itself uses the
    DIRECT listener (``ports.direct``), which advertises its own address.
    """
    controller = f"CONTROLLER://{HOST}:{ports.controller}"
    listeners = {
        "listeners": f"PLAINTEXT://{HOST}:{ports.broker},{controller}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{ports.broker}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
    }
    if advertised_port is not None:
        if ports.direct is None:
            raise ValueError("an advertised port needs a direct listener port")
        direct = f"DIRECT://{HOST}:{ports.direct}"
        listeners = {
            "listeners": f"PLAINTEXT://{HOST}:{ports.broker},{direct},{controller}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{advertised_port},{direct}",
            "listener.security.protocol.map": (
                "PLAINTEXT:PLAINTEXT,DIRECT:PLAINTEXT,CONTROLLER:PLAINTEXT"
            ),
            "inter.broker.listener.name": "DIRECT",
        }
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{HOST}:{ports.controller}",
        **listeners,
        "controller.listener.names": "CONTROLLER",
        "log.dirs": str(log_dir),
        "num.partitions": "6",
        "auto.create.topics.enable": "false",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        # Internal topics: one replica, and fewer partitions than the default 50 so the first
        # consumer group or transaction does not wait for 50 partitions to be created.
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "6",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "6",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # After a crash the new incarnation cannot register until the old session expires
        # (default 9 s); heartbeats stay well inside the shorter timeout.
        "broker.session.timeout.ms": "5000",
        "broker.heartbeat.interval.ms": "1000",
        # Retention is by record timestamp: records produced with old timestamps expire early.
        "log.retention.hours": "168",
        "log.retention.bytes": str(1024**3),
        "log.segment.bytes": str(64 * 1024**2),
        "log.retention.check.interval.ms": "300000",
        "num.network.threads": "2",
        "num.io.threads": "4",
        "num.recovery.threads.per.data.dir": "2",
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def log4j_properties(log_file: Path) -> str:
    """Log4j 2 configuration: everything to a size-capped rolling file, nothing on stdout."""
    return f"""\
status = warn
shutdownHook = disable
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = {log_file}
appender.file.filePattern = {log_file}.%i
appender.file.append = true
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.state.name = state.change.logger
logger.state.level = warn
logger.request.name = kafka.request.logger
logger.request.level = warn
"""
