"""Prometheus metrics of the stream consumer (a StreamObserver), served over HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.utils import floatToGoString

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
        self.end_to_end = BatchHistogram(
            "txcat_stream_end_to_end_seconds",
            "Produce time to database commit, per record",
            _LATENCY_BUCKETS,
            r,
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
        # A record without a broker timestamp (none was given) has no end-to-end latency.
        stamps = np.fromiter((r.event_time for r in records if r.event_time is not None), float)
        self.end_to_end.observe_many(np.maximum(now - stamps, 0.0))

    def retrying(self, error: BaseException) -> None:
        self.retries.labels(type(error).__name__).inc()

    def paused(self, paused: bool) -> None:
        self.is_paused.set(1 if paused else 0)

    def lag(self, lag: dict[int, int]) -> None:
        for partition, value in lag.items():
            self.lag_gauge.labels(str(partition)).set(value)


class BatchHistogram:
    """A Prometheus histogram fed a whole batch of observations at once.

    `Histogram.observe` takes a lock and searches the buckets per call: a microsecond per
    consumed record for the end-to-end latency. Here a batch is bucketed in one numpy pass and
    exposed through a custom collector (prometheus_client's documented way), with the same
    `_bucket`/`_count`/`_sum` series a `Histogram` would export.
    """

    def __init__(
        self, name: str, documentation: str, buckets: Sequence[float], registry: CollectorRegistry
    ) -> None:
        self.name = name
        self.documentation = documentation
        self._bounds = np.asarray(buckets, dtype=float)
        self._counts = np.zeros(len(buckets) + 1, dtype=np.int64)  # the last one: above all
        self._sum = 0.0
        self._lock = threading.Lock()
        registry.register(self)

    def observe_many(self, values: np.ndarray) -> None:
        """Count every value in the first bucket whose bound is >= it (Prometheus' `le`)."""
        if not len(values):
            return
        slots = np.searchsorted(self._bounds, values, side="left")
        counts = np.bincount(slots, minlength=len(self._counts))
        total = float(values.sum())
        with self._lock:
            self._counts += counts
            self._sum += total

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self.name, self.documentation)

    def collect(self) -> Iterator[HistogramMetricFamily]:
        with self._lock:
            cumulative = np.cumsum(self._counts).tolist()
            total = self._sum
        labels = [floatToGoString(bound) for bound in self._bounds]  # type: ignore[no-untyped-call]
        labels.append("+Inf")
        yield HistogramMetricFamily(
            self.name,
            self.documentation,
            buckets=list(zip(labels, cumulative, strict=True)),
            sum_value=total,
        )
