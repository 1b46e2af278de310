"""What the harness reads, around the proxies: committed offsets, end offsets, stored counts."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from confluent_kafka import Consumer, KafkaException, TopicPartition
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_fixed

from pipeline.adapters.postgres.store import make_engine


class KafkaProbe:
    """Committed offsets of a group and end offsets of a topic, per partition.

    It reads with the group's id but never subscribes, so it never joins the group.
    """

    def __init__(self, bootstrap: str, topic: str, group: str, partitions: int) -> None:
        self.topic = topic
        self.partitions = partitions
        config = {"bootstrap.servers": bootstrap, "group.id": group, "log_level": 0}
        self._consumer = Consumer({**config, "enable.auto.commit": False})

    def committed(self) -> list[int] | None:
        """Per partition, the group's committed offset (0 when none); None when unreadable."""
        parts = [TopicPartition(self.topic, p) for p in range(self.partitions)]
        try:
            found = self._consumer.committed(parts, timeout=10)
        except KafkaException:  # e.g. the coordinator moving during a broker restart
            return None
        return [max(tp.offset, 0) for tp in sorted(found, key=lambda tp: tp.partition)]

    @retry(
        retry=retry_if_exception_type(KafkaException),
        wait=wait_fixed(0.5),
        stop=stop_after_delay(60),
        reraise=True,
    )
    def end_offsets(self, topic: str | None = None) -> list[int]:
        """Per partition, the end offset; retried while leaders are elected after a restart."""
        return [
            self._consumer.get_watermark_offsets(TopicPartition(topic or self.topic, p), 10)[1]
            for p in range(self.partitions)
        ]

    def committed_total(self) -> int:
        found = self.committed()
        return -1 if found is None else sum(found)

    def close(self) -> None:
        self._consumer.close()


class Database:
    """Counts read directly (not through the proxy) from one scenario's database."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url, pool_size=2, connect_timeout_s=3)

    def scalar(self, sql: str, **params: Any) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.text(sql), params).scalar_one())

    def rows(self, sql: str, **params: Any) -> list[sa.Row[Any]]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.text(sql), params))

    def stored(self) -> int:
        return self.scalar("SELECT count(*) FROM categorised_transactions")

    def durable(self) -> int:
        """Records whose outcome is durable: stored rows plus dead letters."""
        return self.scalar(
            "SELECT (SELECT count(*) FROM categorised_transactions)"
            " + (SELECT count(*) FROM dead_letters)"
        )

    def close(self) -> None:
        self.engine.dispose()


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, step: float = 0.25
) -> float:
    """Seconds until ``condition()`` held; raises TimeoutError naming ``what`` after ``timeout``."""
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > timeout:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(step)
    return time.monotonic() - began
