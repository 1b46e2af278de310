"""Prometheus metrics of the stream consumer (a StreamObserver), served over HTTP."""

from __future__ import annotations

import time
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from pipeline.domain.model import Outcome, RawRecord

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class PrometheusStreamMetrics:
    """Counters, histograms and gauges named `txcat_stream_*`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.consumed = Counter("txcat_stream_records_consumed", "Records consumed", registry=r)
        self.categorised = Counter("txcat_stream_records_categorised", "Records stored", registry=r)
        self.dead_lettered = Counter(
            "txcat_stream_records_dead_lettered", "Records dead-lettered", ["reason"], registry=r
        )
        self.retries = Counter(
            "txcat_stream_retries", "Transient failures retried", ["error"], registry=r
        )
        self.batch_size = Histogram(
            "txcat_stream_batch_size",
            "Records per micro-batch",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000),
            registry=r,
        )
        self.batch_latency = Histogram(
            "txcat_stream_batch_seconds",
            "Poll-to-commit time of a micro-batch",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.end_to_end = Histogram(
            "txcat_stream_end_to_end_seconds",
            "Produce time to database commit, per record",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.lag_gauge = Gauge(
            "txcat_stream_consumer_lag", "Records behind, per partition", ["partition"], registry=r
        )
        self.is_paused = Gauge("txcat_stream_paused", "1 while paused for a dependency", registry=r)

    def serve(self, port: int) -> None:
        """Expose /metrics on the port (0 disables)."""
        if port:
            start_http_server(port, addr="0.0.0.0", registry=self.registry)  # noqa: S104

    def batch_done(self, records: Sequence[RawRecord], outcome: Outcome, seconds: float) -> None:
        now = time.time()
        self.consumed.inc(outcome.read)
        self.categorised.inc(outcome.categorised + outcome.already_stored)
        for reason, count in outcome.rejected.items():
            self.dead_lettered.labels(reason).inc(count)
        self.batch_size.observe(len(records))
        self.batch_latency.observe(seconds)
        for record in records:
            if record.event_time is not None:
                self.end_to_end.observe(max(now - record.event_time, 0.0))

    def retrying(self, error: BaseException) -> None:
        self.retries.labels(type(error).__name__).inc()

    def paused(self, paused: bool) -> None:
        self.is_paused.set(1 if paused else 0)

    def lag(self, lag: dict[int, int]) -> None:
        for partition, value in lag.items():
            self.lag_gauge.labels(str(partition)).set(value)
