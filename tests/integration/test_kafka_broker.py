"""The dev Kafka broker: a real KRaft broker from Kafka's jars, restartable and detachable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # re-exported without __all__
    AdminClient,
    NewTopic,
)

from devstack.kafka_broker import BrokerError, KafkaBroker, down, up

REPO = Path(__file__).resolve().parents[2]


def _create_topic(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    futures[topic].result(timeout=30)


def _produce(bootstrap: str, topic: str, key: bytes, value: bytes) -> None:
    delivered: list[Message] = []
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    producer.produce(topic, key=key, value=value, on_delivery=lambda _, msg: delivered.append(msg))
    assert producer.flush(30) == 0
    assert [msg.error() for msg in delivered] == [None]


def _first_message(consumer: Consumer, timeout: float = 30.0) -> Message:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        error = msg.error()
        if error is None:
            return msg
        assert error.code() == KafkaError._PARTITION_EOF, error
    raise AssertionError(f"no message within {timeout}s")


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # Exited but not yet reaped by init: a zombie is not running.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"


@pytest.mark.kafka
def test_records_and_committed_offsets_survive_a_broker_restart(tmp_path: Path) -> None:
    topic, group = "transactions.restart-check", "restart-check"
    with KafkaBroker(tmp_path / "kafka") as broker:
        bootstrap = broker.bootstrap
        _create_topic(bootstrap, topic)
        _produce(bootstrap, topic, b"tx-1", b'{"amount": "12.50"}')
        consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        consumer.subscribe([topic])
        msg = _first_message(consumer)
        assert (msg.key(), msg.value()) == (b"tx-1", b'{"amount": "12.50"}')
        consumer.commit(message=msg, asynchronous=False)
        consumer.close()

    with KafkaBroker(tmp_path / "kafka") as restarted:
        assert restarted.bootstrap == bootstrap  # same port: clients keep their address
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
        assert consumer.committed([TopicPartition(topic, 0)], timeout=30)[0].offset == 1
        consumer.assign([TopicPartition(topic, 0, 0)])
        msg = _first_message(consumer)
        assert (msg.key(), msg.value(), msg.offset()) == (b"tx-1", b'{"amount": "12.50"}', 0)
        consumer.close()


@pytest.mark.kafka
def test_up_survives_its_caller_and_up_down_are_idempotent(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    script = "import sys; from pathlib import Path; from devstack.kafka_broker import up; "
    script += "print(up(Path(sys.argv[1])))"
    try:
        # Started by a process that then exits: the broker must outlive it.
        started = subprocess.run(
            [sys.executable, "-c", script, str(state_dir)],
            cwd=REPO, capture_output=True, text=True, timeout=300, check=True,
        )  # fmt: skip
        bootstrap = started.stdout.strip().splitlines()[-1]
        pid = json.loads((state_dir / "broker.json").read_text())["pid"]

        assert up(state_dir) == bootstrap
        assert json.loads((state_dir / "broker.json").read_text())["pid"] == pid
        _create_topic(bootstrap, "transactions.up-check")
    finally:
        assert down(state_dir) is True
    assert down(state_dir) is False
    assert not (state_dir / "broker.json").exists()
    assert not _is_running(pid)

    # Brought back up on the same state dir: same address, same topics.
    try:
        assert up(state_dir) == bootstrap
        topics = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=30).topics
        assert "transactions.up-check" in topics
    finally:
        assert down(state_dir) is True


def test_missing_java_is_reported_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BrokerError, match="`java` is not on PATH"):
        KafkaBroker(tmp_path / f"kafka-{uuid.uuid4().hex}").start()
