"""The streaming pipeline end to end on a real broker, PostgreSQL and ML API."""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from confluent_kafka import Consumer, Producer

from devstack.generate import generate
from pipeline.domain.ids import transaction_uuid
from tests.fakes import rule
from tests.support.helpers import count
from tests.support.services import MlApiProcess, free_port
from tests.support.streaming import StreamEnv, stop, wait_for

pytestmark = pytest.mark.kafka


@pytest.fixture
def stream_env(
    kafka_bootstrap: str, postgres_url: str, ml_api: MlApiProcess, tmp_path: Path
) -> StreamEnv:
    env = StreamEnv(kafka_bootstrap, postgres_url, ml_api.url, logs=tmp_path)
    env.create_topics()
    return env


@pytest.fixture
def consumers(stream_env: StreamEnv) -> Iterator[list]:
    started: list = []
    yield started
    for process in started:
        stop(process, signal.SIGKILL)


def at_least(engine: sa.Engine, target: int) -> bool:
    return count(engine) >= target


def categories(engine: sa.Engine) -> dict:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT transaction_id, category FROM categorised_transactions")
        )
        return dict(rows.all())


def test_seed_file_produced_and_consumed_gives_10000_rows_and_zero_lag(
    stream_env: StreamEnv, consumers: list, postgres_engine: sa.Engine, seed_file: Path
) -> None:
    produced = stream_env.cli("produce", str(seed_file))
    assert produced.returncode == 0, produced.stderr
    assert "sent 10000, failed 0" in produced.stdout
    port = free_port()
    consumers.append(stream_env.consumer(METRICS_PORT=str(port)))
    wait_for(lambda: count(postgres_engine) == 10_000, 180, "10,000 stored rows")
    stored = categories(postgres_engine)
    assert all(category == rule(tid) for tid, category in stored.items())
    assert set(stored) == {transaction_uuid(str(i)) for i in range(1, 10_001)}
    wait_for(lambda: stream_env.committed() == 10_000, 30, "offsets committed")
    assert stream_env.end_offsets() - stream_env.committed() == 0  # lag drained
    assert count(postgres_engine, "SELECT count(*) FROM dead_letters") == 0
    metrics = scrape(port)
    assert metrics["txcat_stream_records_consumed_total"] == 10_000
    assert metrics["txcat_stream_records_categorised_total"] == 10_000
    assert metrics["txcat_stream_paused"] == 0
    assert metrics["txcat_stream_end_to_end_seconds_count"] == 10_000
    wait_for(
        lambda: (
            sum(v for k, v in scrape(port).items() if k.startswith("txcat_stream_consumer_lag{"))
            == 0
            and any(k.startswith("txcat_stream_consumer_lag{") for k in scrape(port))
        ),
        20,
        "lag gauges at 0",
    )


def scrape(port: int) -> dict[str, float]:
    """The consumer's Prometheus metrics, by sample name with labels."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


POISON = {
    b"not json at all": "undecodable",
    b"[1, 2, 3]": "invalid_shape",
    b"": "empty_message",
    json.dumps(
        {
            "id": "p-amount",
            "description": "x",
            "amount": "12,3,4",
            "timestamp": "2024-01-01",
            "merchant": None,
            "operation_type": "payment",
            "side": "debit",
        }
    ).encode(): "invalid_amount",
    json.dumps(
        {
            "id": "p-side",
            "description": "x",
            "amount": "-1",
            "timestamp": "2024-01-01",
            "merchant": None,
            "operation_type": "payment",
            "side": "up",
        }
    ).encode(): "invalid_side",
    json.dumps(
        {
            "id": "p-large",
            "description": "x" * 600_000,
            "amount": "-1",
            "timestamp": "2024-01-01",
            "merchant": None,
            "operation_type": "payment",
            "side": "debit",
        }
    ).encode(): "field_too_long",
}


def test_poison_messages_go_to_the_dlq_with_reason_and_position_and_nothing_blocks(
    stream_env: StreamEnv, consumers: list, postgres_engine: sa.Engine, tmp_path: Path
) -> None:
    good = tmp_path / "good.csv"
    generate(good, 500, seed=3)
    producer = Producer({"bootstrap.servers": stream_env.bootstrap, "message.max.bytes": 2_000_000})
    for value in POISON:
        producer.produce(stream_env.topic, key=b"poison", value=value)
    assert producer.flush(30) == 0
    assert stream_env.cli("produce", str(good)).returncode == 0
    consumers.append(stream_env.consumer())
    wait_for(lambda: count(postgres_engine) == 500, 120, "500 good rows")
    wait_for(
        lambda: count(postgres_engine, "SELECT count(*) FROM dead_letters") == len(POISON),
        60,
        "dead letters",
    )
    with postgres_engine.connect() as conn:
        rows = conn.execute(
            sa.text('SELECT reason, source, partition, "offset", key FROM dead_letters')
        ).all()
    assert sorted(r.reason for r in rows) == sorted(POISON.values())
    assert all(
        r.source == stream_env.topic and r.partition is not None and r.offset is not None
        for r in rows
    )
    dlq = Consumer(
        {
            "bootstrap.servers": stream_env.bootstrap,
            "group.id": "dlq-reader",
            "auto.offset.reset": "earliest",
        }
    )
    dlq.subscribe([stream_env.dlq])
    seen: dict[bytes, dict[str, bytes]] = {}
    deadline = time.monotonic() + 30
    while len(seen) < len(POISON) and time.monotonic() < deadline:
        message = dlq.poll(0.5)
        if message is not None and message.error() is None:
            seen[message.value() or b""] = dict(message.headers() or [])  # type: ignore[arg-type]
    dlq.close()
    cap = 64 * 1024  # a DLQ copy keeps the first bytes of a larger payload, with its size
    assert set(seen) == {value[:cap] for value in POISON}
    for value, headers in seen.items():
        [original] = [v for v in POISON if v[:cap] == value]
        assert headers["x-error-reason"].decode() == POISON[original]
        if len(original) > cap:
            assert headers["x-payload-bytes"].decode() == str(len(original))
        assert headers["x-source-topic"].decode() == stream_env.topic
        assert headers["x-source-offset"] and headers["x-error-class"] and headers["x-error-stage"]
    assert stream_env.end_offsets() == stream_env.committed()


def test_consumer_killed_with_sigkill_repeatedly_ends_in_the_exact_state(
    stream_env: StreamEnv, consumers: list, postgres_engine: sa.Engine, tmp_path: Path
) -> None:
    events = tmp_path / "events.csv"
    generate(events, 30_000, seed=11)
    assert stream_env.cli("produce", str(events)).returncode == 0
    for kills, target in enumerate((4_000, 12_000, 20_000)):
        process = stream_env.consumer(f"victim{kills}", KAFKA_BATCH_MAX_RECORDS="500")
        wait_for(partial(at_least, postgres_engine, target), 120, f"{target} rows")
        stop(process, signal.SIGKILL)
    assert count(postgres_engine) < 30_000, "the kills must land mid-stream"
    consumers.append(stream_env.consumer("survivor"))
    wait_for(lambda: stream_env.committed() == 30_000, 180, "all offsets committed")
    stored = categories(postgres_engine)
    assert len(stored) == 30_000
    assert set(stored) == {transaction_uuid(str(i)) for i in range(1, 30_001)}
    assert all(category == rule(tid) for tid, category in stored.items())
    assert count(postgres_engine, "SELECT count(*) FROM dead_letters") == 0


def test_ml_api_outage_pauses_the_stream_then_it_drains_with_nothing_dead_lettered(
    stream_env: StreamEnv, consumers: list, postgres_engine: sa.Engine, tmp_path: Path
) -> None:
    outage_api = MlApiProcess(tmp_path / "ml.log").start()
    events = tmp_path / "events.csv"
    generate(events, 20_000, seed=5)
    consumers.append(stream_env.consumer(ML_API_URL=outage_api.url, KAFKA_BATCH_MAX_RECORDS="500"))
    assert stream_env.cli("produce", str(events), "--limit", "5000").returncode == 0
    wait_for(lambda: count(postgres_engine) == 5_000, 120, "first 5000 rows")
    outage_api.stop()
    assert stream_env.cli("produce", str(events)).returncode == 0  # all 20k (the first 5k again)
    time.sleep(6)  # the consumer sees the outage, retries, pauses
    during = count(postgres_engine)
    assert during == 5_000
    outage_api.start()
    try:
        wait_for(lambda: count(postgres_engine) == 20_000, 180, "lag drained after the outage")
        wait_for(lambda: stream_env.committed() == stream_env.end_offsets(), 30, "lag 0")
    finally:
        outage_api.stop()
    assert count(postgres_engine, "SELECT count(*) FROM dead_letters") == 0


def test_two_consumers_in_one_group_store_every_record_exactly_once(
    stream_env: StreamEnv, consumers: list, postgres_engine: sa.Engine, tmp_path: Path
) -> None:
    events = tmp_path / "events.csv"
    generate(events, 20_000, seed=9)
    consumers.append(stream_env.consumer("a", KAFKA_BATCH_MAX_RECORDS="500"))
    consumers.append(stream_env.consumer("b", KAFKA_BATCH_MAX_RECORDS="500"))
    time.sleep(3)
    assert stream_env.cli("produce", str(events), "--rate", "4000").returncode == 0
    wait_for(lambda: stream_env.committed() == 20_000, 180, "all committed")
    assert count(postgres_engine) == 20_000
    logs = [(tmp_path / f"{stream_env.topic}-{n}.log").read_text() for n in ("a", "b")]
    assert all("assigned partitions [" in log for log in logs), "both consumers got partitions"


def test_sigterm_exits_zero_quickly_with_offsets_matching_stored_rows(
    stream_env: StreamEnv, postgres_engine: sa.Engine, tmp_path: Path
) -> None:
    events = tmp_path / "events.csv"
    generate(events, 20_000, seed=13)
    assert stream_env.cli("produce", str(events)).returncode == 0
    process = stream_env.consumer(KAFKA_BATCH_MAX_RECORDS="500")
    wait_for(lambda: count(postgres_engine) >= 3_000, 120, "some rows")
    started = time.monotonic()
    assert stop(process, signal.SIGTERM, timeout=15) == 0
    assert time.monotonic() - started < 10
    assert stream_env.committed() == count(postgres_engine)


def test_redrive_after_a_fix_stores_the_dead_letters_and_a_second_redrive_is_a_no_op(
    stream_env: StreamEnv, consumers: list, postgres_engine: sa.Engine, tmp_path: Path
) -> None:
    events = tmp_path / "events.csv"
    generate(events, 2_000, seed=17)
    assert stream_env.cli("produce", str(events)).returncode == 0
    strict = stream_env.consumer(
        "strict", VALIDATION_MAX_AMOUNT="500", VALIDATION_MIN_AMOUNT="-500"
    )
    wait_for(lambda: stream_env.committed() == 2_000, 120, "strict consumer done")
    assert stop(strict) == 0
    rejected = count(
        postgres_engine, "SELECT count(*) FROM dead_letters WHERE reason = 'amount_out_of_bounds'"
    )
    assert rejected > 0 and count(postgres_engine) == 2_000 - rejected
    consumers.append(stream_env.consumer("fixed"))
    dry = stream_env.cli("redrive", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "amount_out_of_bounds" in dry.stdout and f"would redrive {rejected}," in dry.stdout
    assert count(postgres_engine, "SELECT count(*) FROM dead_letters WHERE status = 'pending'") == (
        rejected
    )
    first = stream_env.cli("redrive", "--reason", "amount_out_of_bounds")
    assert first.returncode == 0, first.stderr
    assert f"redriven {rejected}, quarantined 0" in first.stdout
    wait_for(lambda: count(postgres_engine) == 2_000, 120, "redriven rows stored")
    second = stream_env.cli("redrive")
    assert "redriven 0, quarantined 0" in second.stdout
    # Redriven, then stored: each dead letter is now resolved, with the time it was.
    assert (
        count(
            postgres_engine,
            "SELECT count(*) FROM dead_letters WHERE status = 'resolved'"
            " AND redrive_count = 1 AND resolved_at >= redriven_at",
        )
        == rejected
    )
    stored = categories(postgres_engine)
    assert all(category == rule(tid) for tid, category in stored.items())


def test_json_lines_file_is_produced_and_consumed(
    stream_env: StreamEnv, consumers: list, postgres_engine: sa.Engine, tmp_path: Path
) -> None:
    events = tmp_path / "events.jsonl"
    ids = [str(uuid.uuid4()) for _ in range(50)]
    lines = [
        json.dumps(
            {
                "id": i,
                "description": "Card payment",
                "amount": -12.5,
                "timestamp": "2024-05-01T10:00:00+02:00",
                "merchant": None,
                "operation_type": "card_payment",
                "side": "debit",
            }
        )
        for i in ids
    ]
    events.write_text("\n".join([*lines, "not json"]) + "\n")
    produced = stream_env.cli("produce", str(events))
    assert "sent 51, failed 0" in produced.stdout, produced.stderr
    consumers.append(stream_env.consumer())
    wait_for(lambda: count(postgres_engine) == 50, 120, "50 rows")
    wait_for(lambda: count(postgres_engine, "SELECT count(*) FROM dead_letters") == 1, 60, "1 dlq")
    assert {str(t) for t in categories(postgres_engine)} == set(ids)
