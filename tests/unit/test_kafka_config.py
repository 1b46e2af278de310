"""The dev broker's configuration: a proxy's address advertised, ports kept across restarts."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack.kafka_config import BrokerPorts, choose_ports, server_properties


def properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def test_without_a_proxy_the_broker_advertises_its_own_listener(tmp_path: Path) -> None:
    config = properties(server_properties(BrokerPorts(9092, 9093), tmp_path))
    assert config["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert config["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9092"
    assert config["inter.broker.listener.name"] == "PLAINTEXT"


def test_with_a_proxy_clients_are_sent_to_it_and_the_broker_keeps_a_direct_listener(
    tmp_path: Path,
) -> None:
    config = properties(server_properties(BrokerPorts(9092, 9093, 9094), tmp_path, 19092))
    assert config["advertised.listeners"] == ("PLAINTEXT://127.0.0.1:19092,DIRECT://127.0.0.1:9094")
    assert "DIRECT://127.0.0.1:9094" in config["listeners"]
    assert config["inter.broker.listener.name"] == "DIRECT"
    assert "DIRECT:PLAINTEXT" in config["listener.security.protocol.map"]


def test_an_advertised_port_needs_a_direct_port(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="direct"):
        server_properties(BrokerPorts(9092, 9093), tmp_path, 19092)


def test_a_restart_reads_back_every_port_including_the_direct_one(tmp_path: Path) -> None:
    path = tmp_path / "server.properties"
    first = choose_ports(path, None, direct=True)
    assert first.direct is not None
    assert len({first.broker, first.controller, first.direct}) == 3
    path.write_text(server_properties(first, tmp_path, 19092))
    assert choose_ports(path, None, direct=True) == first
    assert choose_ports(path, None) == BrokerPorts(first.broker, first.controller, None)
