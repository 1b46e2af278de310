"""What the dev stack reports: service probes, the consumer's lag, the categorised counts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import sqlalchemy as sa
from confluent_kafka import Consumer, KafkaException, TopicPartition
from rich.console import Console
from rich.table import Table

from devstack.loopback import port_is_open


@dataclass(frozen=True)
class ServiceRow:
    """One line of the status table."""

    name: str
    state: str
    address: str


@dataclass(frozen=True)
class Counts:
    """What the pipeline stored: categorised rows, dead letters, rows per category."""

    categorised: int
    dead_letters: int
    categories: list[tuple[str, int]]
    runs: list[tuple[str, str, int]]


def healthy(url: str) -> bool:
    """Whether `url` answers without a server error."""
    try:
        return httpx.get(url, timeout=3).status_code < 500
    except httpx.HTTPError:
        return False


def metric(url: str, name: str) -> float | None:
    """One sample of a Prometheus text endpoint, if it answers and has it."""
    try:
        text = httpx.get(url, timeout=3).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    return None


def airflow_components(base_url: str) -> dict[str, str]:
    """Airflow's own view of its components (no login needed); empty when it does not answer."""
    try:
        body = httpx.get(f"{base_url}/api/v2/monitor/health", timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return {}
    return {name: str((value or {}).get("status")) for name, value in body.items()}


def kafka_bootstrap(state_dir: Path) -> str | None:
    """The address of the dev broker recorded in `state_dir`, if it answers."""
    try:
        state = json.loads((state_dir / "broker.json").read_text())
    except (OSError, ValueError):
        return None
    return str(state["bootstrap"]) if port_is_open(int(state["port"])) else None


def consumer_lag(bootstrap: str, topic: str, group: str) -> tuple[int, int]:
    """(records in the topic, records not yet committed by the group) over all partitions."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "log_level": 0,
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = [TopicPartition(topic, p) for p in metadata.topics[topic].partitions]
        committed = {tp.partition: tp.offset for tp in consumer.committed(partitions, timeout=10)}
        total = lag = 0
        for tp in partitions:
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            total += high - low
            lag += high - max(committed.get(tp.partition, -1), low)
        return total, lag
    except KafkaException:
        return 0, -1
    finally:
        consumer.close()


def counts(database_url: str, top: int = 15) -> Counts:
    """Read the pipeline's tables."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.scalar(sa.text("SELECT count(*) FROM categorised_transactions"))
            letters = conn.scalar(sa.text("SELECT count(*) FROM dead_letters"))
            categories = conn.execute(
                sa.text(
                    "SELECT category, count(*) AS n FROM categorised_transactions "
                    "GROUP BY category ORDER BY n DESC, category LIMIT :top"
                ),
                {"top": top},
            ).all()
            runs = conn.execute(
                sa.text(
                    "SELECT kind, status, count(*) FROM pipeline_runs "
                    "GROUP BY kind, status ORDER BY kind, status"
                )
            ).all()
    finally:
        engine.dispose()
    return Counts(
        int(rows),
        int(letters),
        [(str(c), int(n)) for c, n in categories],
        [(str(k), str(s), int(n)) for k, s, n in runs],
    )


def render_status(
    console: Console, rows: Sequence[ServiceRow], login: tuple[str, str] | None
) -> None:
    table = Table(title="txcat native stack")
    for column in ("service", "state", "address"):
        table.add_column(column)
    for row in rows:
        style = "green" if row.state in ("up", "healthy") else "red"
        table.add_row(row.name, f"[{style}]{row.state}[/{style}]", row.address)
    console.print(table)
    if login:
        user, password = login
        console.print(f"Airflow login: user [bold]{user}[/bold], password [bold]{password}[/bold]")


def render_counts(console: Console, result: Counts) -> None:
    table = Table(title="Categorised data", show_header=False)
    table.add_row("rows in categorised_transactions", str(result.categorised))
    table.add_row("dead letters", str(result.dead_letters))
    for kind, status, n in result.runs:
        table.add_row(f"pipeline runs {kind} {status}", str(n))
    console.print(table)
    if result.categories:
        per_category = Table(title="Rows per category (top)")
        per_category.add_column("category")
        per_category.add_column("rows", justify="right")
        for category, n in result.categories:
            per_category.add_row(category, str(n))
        console.print(per_category)
