"""The hostile corpus through the batch CLI and the stream: the exact final state, the same.

(The Airflow DAG runs the same corpus in test_airflow_dag.py, with its module's worker.)
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import sqlalchemy as sa
from confluent_kafka import Producer

from tests.hostile import corpus
from tests.support.final_state import final_state
from tests.support.helpers import pipeline_env, rows, run_cli
from tests.support.services import ROOT, MlApiProcess
from tests.support.streaming import StreamEnv, stop, wait_for


def check_corpus_state(engine: sa.Engine) -> None:
    state = final_state(engine)
    assert state.stored_ids == corpus.expected_stored()
    assert state.dead_letters == corpus.expected_dead_letters()
    [(size, digest, kept)] = rows(
        engine,
        "SELECT payload_bytes, payload_sha256, octet_length(payload) FROM dead_letters"
        " WHERE reason = 'field_too_long'",
    )
    assert size > 1_000_000 and len(digest) == 64 and kept <= 64 * 1024


def test_the_hostile_files_end_in_the_expected_state_through_the_batch_cli(
    tmp_path: Path, postgres_url: str, postgres_engine: sa.Engine, ml_api: MlApiProcess
) -> None:
    day_one, day_two = corpus.write(tmp_path)
    env = pipeline_env(postgres_url, ml_api)
    # The second day twice, spelled otherwise: a rerun changes nothing, whatever the spelling.
    for path in (str(day_one), str(day_two), os.path.relpath(day_two, ROOT)):
        result = run_cli("batch", path, "--no-progress", env=env)
        assert result.returncode == 0, result.stderr[-3000:]
    check_corpus_state(postgres_engine)
    assert "\x00" not in result.stderr  # control bytes are reported escaped, not raw


@pytest.mark.kafka
def test_the_hostile_files_end_in_the_same_state_through_the_stream(
    kafka_bootstrap: str,
    postgres_url: str,
    postgres_engine: sa.Engine,
    ml_api: MlApiProcess,
    tmp_path: Path,
) -> None:
    stream = StreamEnv(kafka_bootstrap, postgres_url, ml_api.url, partitions=3, logs=tmp_path)
    stream.create_topics()
    day_one, day_two = corpus.write(tmp_path)
    consumer = stream.consumer()
    try:
        for path in (day_one, day_two):
            assert stream.cli("produce", str(path), "--no-progress").returncode == 0
            wait_for(lambda: stream.committed() == stream.end_offsets(), 120, "lag 0")
        assert consumer.poll() is None, "the consumer died"
    finally:
        assert stop(consumer) == 0
    check_corpus_state(postgres_engine)


@pytest.mark.kafka
def test_hostile_events_are_dead_lettered_and_the_consumer_stays_alive_with_lag_0(
    kafka_bootstrap: str,
    postgres_url: str,
    postgres_engine: sa.Engine,
    ml_api: MlApiProcess,
    tmp_path: Path,
) -> None:
    stream = StreamEnv(kafka_bootstrap, postgres_url, ml_api.url, partitions=2, logs=tmp_path)
    stream.create_topics()
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "message.max.bytes": 2_000_000})
    for event in corpus.EVENTS:
        producer.produce(stream.topic, value=event.value, headers=list(event.headers))
    assert producer.flush(30) == 0
    consumer = stream.consumer()
    try:
        wait_for(lambda: stream.committed() == len(corpus.EVENTS), 120, "every event committed")
        assert consumer.poll() is None, "the consumer died"
    finally:
        assert stop(consumer, signal.SIGTERM) == 0
    reasons = sorted(r.reason for r in rows(postgres_engine, "SELECT reason FROM dead_letters"))
    assert reasons == sorted(event.reason for event in corpus.EVENTS)
    replays = {r.replays for r in rows(postgres_engine, "SELECT replays FROM dead_letters")}
    assert replays == {0, 1_000_000}  # a huge header is clamped, a malformed one ignored
