"""Helpers for streaming tests: unique topics, consumer subprocesses, offsets and lag."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from uuid import uuid4

from confluent_kafka import Consumer, KafkaException, TopicPartition

from pipeline.adapters.kafka.producer import create_topics
from pipeline.config import KafkaSettings
from tests.support.helpers import run_cli
from tests.support.services import ROOT


@dataclass
class StreamEnv:
    """A topic pair and consumer group of one test, plus the services' addresses."""

    bootstrap: str
    database_url: str
    ml_api_url: str
    partitions: int = 6
    topic: str = field(default_factory=lambda: f"tx-{uuid4().hex[:10]}")
    logs: Path = field(default_factory=lambda: Path("/tmp"))

    @property
    def dlq(self) -> str:
        return f"{self.topic}.dlq"

    @property
    def group(self) -> str:
        return f"group-{self.topic}"

    def settings(self) -> KafkaSettings:
        return KafkaSettings(
            bootstrap_servers=self.bootstrap,
            topic=self.topic,
            dlq_topic=self.dlq,
            group_id=self.group,
            partitions=self.partitions,
        )

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "ML_API_URL": self.ml_api_url,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "KAFKA_TOPIC": self.topic,
            "KAFKA_DLQ_TOPIC": self.dlq,
            "KAFKA_GROUP_ID": self.group,
            "KAFKA_PARTITIONS": str(self.partitions),
            "KAFKA_BATCH_MAX_MS": "100",
            "ML_RETRY_ATTEMPTS": "2",
            "ML_RETRY_INITIAL_S": "0.05",
            "METRICS_PORT": "0",
            **extra,
        }

    def create_topics(self) -> None:
        create_topics(self.settings())

    def cli(
        self, *args: str, timeout: float = 300, **extra: str
    ) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, env=self.env(**extra), timeout=timeout)

    def consumer(self, name: str = "consumer", **extra: str) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{self.topic}-{name}.log", "ab")  # noqa: SIM115
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline", "stream"],
            cwd=ROOT,
            env=self.env(**extra),
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def committed(self) -> int:
        """Sum over partitions of the group's committed offsets (= records done)."""
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.group})
        try:
            parts = [TopicPartition(self.topic, p) for p in range(self.partitions)]
            return sum(max(tp.offset, 0) for tp in consumer.committed(parts, timeout=10))
        except KafkaException:  # e.g. NOT_COORDINATOR while the group's coordinator moves
            return -1
        finally:
            consumer.close()

    def end_offsets(self, topic: str | None = None) -> int:
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "probe"})
        try:
            return sum(
                consumer.get_watermark_offsets(TopicPartition(topic or self.topic, p), timeout=10)[
                    1
                ]
                for p in range(self.partitions)
            )
        finally:
            consumer.close()


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.3)


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 30) -> int:
    if process.poll() is None:
        process.send_signal(sig)
    return process.wait(timeout)
