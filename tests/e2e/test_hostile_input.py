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
from tests.support.helpers import count, pipeline_env, rows, run_cli
from tests.support.services import ROOT, MlApiProcess
from tests.support.streaming import StreamEnv, stop, wait_for


@pytest.fixture
def stream(
    kafka_bootstrap: str, postgres_url: str, ml_api: MlApiProcess, tmp_path: Path
) -> StreamEnv:
    """Topics of this test's own on the real broker, two partitions."""
    env = StreamEnv(kafka_bootstrap, postgres_url, ml_api.url, partitions=2, logs=tmp_path)
    env.create_topics()
    return env


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
    stream: StreamEnv, postgres_engine: sa.Engine, tmp_path: Path
) -> None:
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
    stream: StreamEnv, postgres_engine: sa.Engine, tmp_path: Path
) -> None:
    producer = Producer({"bootstrap.servers": stream.bootstrap, "message.max.bytes": 2_000_000})
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


def test_a_wrong_ml_endpoint_stops_the_batch_in_one_line_and_dead_letters_nothing(
    seed_file: Path, postgres_url: str, postgres_engine: sa.Engine, ml_api: MlApiProcess
) -> None:
    env = pipeline_env(postgres_url, ml_api, ML_API_URL=f"{ml_api.url}/wrong/path")
    result = run_cli("batch", str(seed_file), "--no-progress", env=env)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "404" in errors[0] and "ML_API_URL" in errors[0]
    assert "Traceback" not in result.stderr
    assert count(postgres_engine, "SELECT count(*) FROM dead_letters") == 0
    assert count(postgres_engine) == 0
    [(status, error)] = rows(postgres_engine, "SELECT status, error FROM pipeline_runs")
    assert status == "failed" and "CategoriserMisconfigured" in error


def test_no_password_appears_in_the_output_of_a_failing_run(
    seed_file: Path, ml_api: MlApiProcess
) -> None:
    secret = "s3cret-Pa55word"
    url = f"postgresql://txcat_app:{secret}@127.0.0.1:9/txcat?connect_timeout=2"
    for command in (("batch", str(seed_file)), ("db", "current")):
        result = run_cli(*command, env={"DATABASE_URL": url, "ML_API_URL": ml_api.url})
        assert result.returncode == 1
        assert secret not in result.stdout + result.stderr
        assert "error:" in result.stderr


@pytest.mark.kafka
def test_a_wrong_ml_endpoint_pauses_the_stream_commits_nothing_and_dead_letters_nothing(
    stream: StreamEnv, postgres_engine: sa.Engine, tmp_path: Path
) -> None:
    day_one, _ = corpus.write(tmp_path)
    assert stream.cli("produce", str(day_one), "--no-progress").returncode == 0
    log = tmp_path / f"{stream.topic}-misconfigured.log"
    consumer = stream.consumer("misconfigured", ML_API_URL=f"{stream.ml_api_url}/wrong/path")
    try:
        wait_for(lambda: log.exists() and "paused" in log.read_text(), 60, "the stream paused")
        assert consumer.poll() is None, "the consumer died"
        assert stream.committed() == 0
        assert count(postgres_engine, "SELECT count(*) FROM dead_letters") == 0
    finally:
        assert stop(consumer) == 0
    fixed = stream.consumer("fixed")
    try:
        wait_for(lambda: stream.committed() == len(corpus.DAY_ONE), 120, "drained once fixed")
    finally:
        stop(fixed)
    assert count(postgres_engine) == len(corpus.DAY_ONE)
