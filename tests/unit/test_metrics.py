"""The batch-fed latency histogram exports what prometheus_client's own Histogram would."""

from __future__ import annotations

import time

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from pipeline.adapters.metrics import BatchHistogram, PrometheusStreamMetrics
from pipeline.domain.model import Outcome, RawRecord, SourcePosition

BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
latencies = st.lists(
    st.one_of(st.sampled_from(BUCKETS), st.floats(0, 1e4, allow_nan=False)), max_size=50
)


def _exported(registry: CollectorRegistry) -> list[str]:
    text = generate_latest(registry).decode()
    return [line for line in text.splitlines() if "_created" not in line]


@given(st.lists(latencies, max_size=5))
def test_batches_export_what_one_observe_per_value_would(batches: list[list[float]]) -> None:
    reference, batched = CollectorRegistry(), CollectorRegistry()
    histogram = Histogram("latency", "doc", buckets=BUCKETS, registry=reference)
    fed = BatchHistogram("latency", "doc", BUCKETS, batched)
    for batch in batches:
        for value in batch:
            histogram.observe(value)
        fed.observe_many(np.asarray(batch, dtype=float))
    expected, got = _exported(reference), _exported(batched)
    assert [line.split()[0] for line in got] == [line.split()[0] for line in expected]
    for mine, theirs in zip(got, expected, strict=True):
        if mine.startswith("latency_sum"):  # added in another order: equal up to rounding
            assert np.isclose(float(mine.split()[1]), float(theirs.split()[1]))
        else:
            assert mine == theirs


def test_a_batch_counts_the_records_that_carry_an_event_time() -> None:
    metrics = PrometheusStreamMetrics()
    now = time.time()
    position = SourcePosition("t", None, 0, 0)
    records = [
        RawRecord(position, "a", {}, event_time=now - 0.02),
        RawRecord(position, "b", {}, event_time=None),  # no broker timestamp
        RawRecord(position, "c", {}, event_time=now - 3.0),
    ]
    metrics.batch_done(records, Outcome(read=3, categorised=3), 0.01)
    metrics.batch_done([], Outcome(), 0.0)
    registry = metrics.registry
    count = registry.get_sample_value("txcat_stream_end_to_end_seconds_count")
    within_one_second = registry.get_sample_value(
        "txcat_stream_end_to_end_seconds_bucket", {"le": "1.0"}
    )
    assert (count, within_one_second) == (2, 1)
