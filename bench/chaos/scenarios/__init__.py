"""The fault matrix: every scenario, in the order `make chaos` runs them."""

from __future__ import annotations

from bench.chaos.scenarios.airflow import airflow_chunk_kill9, airflow_file_replaced
from bench.chaos.scenarios.base import Scenario
from bench.chaos.scenarios.batch import batch_kill9, pg_restart_batch
from bench.chaos.scenarios.broker import broker_restart, kafka_cut
from bench.chaos.scenarios.consumers import kill9, kill9_smoke, rebalance_storm, rolling_restart
from bench.chaos.scenarios.ml_api import ml_5xx_bursts, ml_latency, ml_outage, ml_reset, ml_trickle
from bench.chaos.scenarios.postgres import (
    pg_cut_smoke,
    pg_disk_full,
    pg_read_only,
    pg_restart,
    pg_unreachable,
)

__all__ = ["MATRIX", "SMOKE", "Scenario"]

MATRIX = [
    Scenario("consumer-kill9", "consumer kill -9 x20 at random moments, 200 ev/s", kill9),
    Scenario("rolling-restart", "3 consumers, SIGTERM one at a time, 400 ev/s", rolling_restart),
    Scenario("rebalance-storm", "a consumer joins or leaves every 3 s for 60 s", rebalance_storm),
    Scenario("broker-restart", "broker stopped 10 s, restarted; producer running", broker_restart),
    Scenario("kafka-cut", "network to the broker cut 20 s (Toxiproxy)", kafka_cut),
    Scenario("pg-restart-stream", "PostgreSQL crash-stopped mid-stream, back in 5 s", pg_restart),
    Scenario("pg-unreachable", "network to PostgreSQL cut 2 min (Toxiproxy)", pg_unreachable),
    Scenario("pg-read-only", "PostgreSQL read-only for 60 s", pg_read_only),
    Scenario("pg-disk-full", "the tables' volume full for 60 s", pg_disk_full),
    Scenario("ml-5xx-bursts", "3 bursts of 20 ML answers 503/500/502", ml_5xx_bursts),
    Scenario("ml-latency", "ML answers 12 s late (timeout 10 s) for 60 s", ml_latency),
    Scenario("ml-reset", "ML connections reset by peer for 30 s", ml_reset),
    Scenario("ml-trickle", "ML answers trickle 1 byte / 2 s for 60 s", ml_trickle),
    Scenario("ml-outage", "ML API stopped for 2 min", ml_outage),
    Scenario("batch-kill9", "batch kill -9 at 40 % of 50k rows, rerun", batch_kill9),
    Scenario("pg-restart-batch", "PostgreSQL restarted at 40 % of a batch", pg_restart_batch),
    Scenario("airflow-chunk-kill9", "Airflow chunk task kill -9", airflow_chunk_kill9),
    Scenario("airflow-file-replaced", "file replaced before a chunk retry", airflow_file_replaced),
]

SMOKE = [
    Scenario("smoke-kill9", "consumer kill -9, 2k events", kill9_smoke, smoke=True),
    Scenario("smoke-pg-cut", "network to PostgreSQL cut 5 s", pg_cut_smoke, smoke=True),
]
