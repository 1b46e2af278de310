"""One scenario's topic, consumer group, database and pipeline processes.

Every process is the product's own command line (`python -m pipeline stream|produce|batch`)
reaching the services through the proxies. A process that exits without the harness having
signalled it is recorded: a consumer must never die of a fault.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from uuid import uuid4

from confluent_kafka import Producer

from bench.chaos.probe import Database, KafkaProbe, wait_until
from bench.chaos.services import ChaosServices
from devstack.generate import generate
from pipeline.adapters.kafka.producer import create_topics
from pipeline.config import KafkaSettings

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 6
_SENT = re.compile(r"sent (\d+), failed (\d+)")
_STOP_TIMEOUT_S = 120.0
_STOPPED = re.compile(r"consumer stopped: .*'already_stored': (\d+)")

# Records no rule accepts, and the reason each must be dead-lettered with (exactly once).
POISON: dict[bytes, str] = {
    b"not json at all": "undecodable",
    b"[1, 2, 3]": "invalid_shape",
    json.dumps(
        {"id": "poison-amount", "description": "x", "amount": "12,3,4",
         "timestamp": "2024-01-01", "merchant": None, "operation_type": "payment",
         "side": "debit"}
    ).encode(): "invalid_amount",
    json.dumps(
        {"id": "poison-side", "description": "x", "amount": "-1", "timestamp": "2024-01-01",
         "merchant": None, "operation_type": "payment", "side": "up"}
    ).encode(): "invalid_side",
}  # fmt: skip


class Child:
    """A pipeline process with its log; ``signalled`` tells a kill from a death."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        self.last_signal: int | None = None
        with log.open("ab") as out:
            self.popen = subprocess.Popen(
                argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    @property
    def died(self) -> bool:
        """Exited on its own, or failed to stop cleanly when asked.

        SIGTERM must end in exit 0 (the batch in hand finished and committed), or in the
        signal's default action while the process is still starting (nothing in hand yet).
        """
        code = self.popen.poll()
        if code is None or self.last_signal == signal.SIGKILL:
            return False
        if self.last_signal == signal.SIGTERM:
            return code not in (0, -signal.SIGTERM)
        return True

    def signal(self, sig: int = signal.SIGTERM) -> None:
        if self.alive:
            self.last_signal = sig
            self.popen.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout)

    def tail(self, lines: int = 5) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return " | ".join(text.strip().splitlines()[-lines:])


def pipeline(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline", *args]


class StreamRun:
    """A topic pair, a group and a database of their own, and a file of events to produce."""

    def __init__(self, services: ChaosServices, name: str, events: int, seed: int = 7) -> None:
        self.services = services
        self.name = name
        self.events = events
        self.topic = f"chaos-{name}-{uuid4().hex[:6]}"
        self.group = f"group-{self.topic}"
        self.folder = services.root / name
        self.folder.mkdir(parents=True, exist_ok=True)
        self.file = self.folder / "events.csv"
        generate(self.file, events, seed)
        self.database = services.new_database("chaos")
        self.db = Database(services.postgres.url(self.database))
        create_topics(self.settings(services.broker.direct_bootstrap))
        self.probe = KafkaProbe(
            services.broker.direct_bootstrap, self.topic, self.group, PARTITIONS
        )
        self.consumers: list[Child] = []
        self.producer: Child | None = None
        self.poison: Counter[str] = Counter()
        self.replayed = 0
        self.recoveries: list[float] = []
        self.stop_s = 0.0  # SIGTERM to every consumer gone, at the end

    def settings(self, bootstrap: str) -> KafkaSettings:
        return KafkaSettings(
            bootstrap_servers=bootstrap,
            topic=self.topic,
            dlq_topic=f"{self.topic}.dlq",
            group_id=self.group,
            partitions=PARTITIONS,
        )

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            **self.services.pipeline_env(self.database),
            "KAFKA_TOPIC": self.topic,
            "KAFKA_DLQ_TOPIC": f"{self.topic}.dlq",
            "KAFKA_GROUP_ID": self.group,
            "KAFKA_PARTITIONS": str(PARTITIONS),
            "METRICS_PORT": "0",
            **extra,
        }

    def start_consumer(self, **extra: str) -> Child:
        name = f"consumer-{len(self.consumers)}"
        child = Child(name, pipeline("stream"), self.env(**extra), self.folder / f"{name}.log")
        self.consumers.append(child)
        return child

    def live_consumers(self) -> list[Child]:
        """Consumers running and not asked to stop."""
        return [child for child in self.consumers if child.alive and child.last_signal is None]

    def produce(self, rate: float) -> Child:
        """The product's replay producer on the whole file, at ``rate`` events per second."""
        argv = pipeline("produce", str(self.file), "--rate", str(rate), "--no-progress")
        self.producer = Child("producer", argv, self.env(), self.folder / "producer.log")
        return self.producer

    def inject_poison(self) -> None:
        """The poison records, written straight to the broker (not through the proxy)."""
        producer = Producer({"bootstrap.servers": self.services.broker.direct_bootstrap})
        for value, reason in POISON.items():
            producer.produce(self.topic, key=b"poison", value=value)
            self.poison[reason] += 1
        if producer.flush(30):
            raise RuntimeError("poison records not acknowledged")

    def wait_for_rows(self, rows: int, timeout: float = 120) -> None:
        wait_until(lambda: self.db.durable() >= rows, timeout, f"{rows} rows in {self.name}")

    def note_replays(self) -> None:
        """After a SIGKILL: records durable but not committed, which the next owner of their
        partitions reads again and skips as already stored."""
        committed = self.probe.committed_total()
        if committed >= 0:
            self.replayed += max(self.db.durable() - committed, 0)

    def replays(self) -> int:
        """Records read again: counted at each SIGKILL when there were any (a killed consumer
        logs nothing); otherwise the `already_stored` totals every consumer logs on a clean
        stop (each event id is sent once, so a record already stored is a replay)."""
        if any(child.last_signal == signal.SIGKILL for child in self.consumers):
            return self.replayed
        logged = (_STOPPED.findall(c.log.read_text(errors="replace")) for c in self.consumers)
        return sum(int(found[-1]) for found in logged if found)

    def wait_recovered(self, since: float, timeout: float = 120) -> float:
        """Time from ``since`` until the group committed every record in the topic now."""
        target = sum(self.probe.end_offsets())
        wait_until(lambda: self.probe.committed_total() >= target, timeout, "the group to catch up")
        seconds = time.monotonic() - since
        self.recoveries.append(seconds)
        return seconds

    def finish(self, timeout: float = 300) -> None:
        """Wait for the producer and for lag 0, then stop the consumers with SIGTERM."""
        if self.producer is not None:
            self.producer.wait(timeout)
        total = self.events + sum(self.poison.values())
        wait_until(lambda: self.probe.committed_total() >= total, timeout, "lag 0")
        for child in self.consumers:
            child.signal(signal.SIGTERM)
        began = time.monotonic()
        for child in self.consumers:
            try:
                child.wait(max(_STOP_TIMEOUT_S - (time.monotonic() - began), 1))
            except subprocess.TimeoutExpired:
                raise RuntimeError(
                    f"{child.name} still running {_STOP_TIMEOUT_S:.0f}s after SIGTERM"
                ) from None
        self.stop_s = time.monotonic() - began

    def producer_result(self) -> tuple[int, int]:
        """(sent, failed) as the producer reported them."""
        assert self.producer is not None
        found = _SENT.findall(self.producer.log.read_text(errors="replace"))
        return (int(found[-1][0]), int(found[-1][1])) if found else (0, 0)

    def kill_all(self) -> None:
        """SIGKILL whatever still runs (a scenario that failed half-way)."""
        for child in [*self.consumers, *([self.producer] if self.producer else [])]:
            if child.alive:
                child.signal(signal.SIGKILL)
                child.wait(30)

    def close(self) -> None:
        self.kill_all()
        self.probe.close()
        self.db.close()
