"""Kafka faults: the broker stopped and restarted, the network to it cut (Toxiproxy)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from bench.chaos.report import Row
from bench.chaos.scenarios.base import outage, stream_run, warm_up
from bench.chaos.services import ChaosServices


@contextmanager
def _broker_down(services: ChaosServices) -> Iterator[None]:
    services.broker.stop()  # SIGTERM: a clean shutdown, as a rolling upgrade would do
    try:
        yield
    finally:
        services.broker.start(timeout=180)


def broker_restart(services: ChaosServices, row: Row, events: int = 20_000) -> None:
    """Producer and two consumers running; the broker stops for 10 s, then starts again."""
    with stream_run(services, row, events) as run:
        run.start_consumer()
        run.start_consumer()
        run.produce(rate=500)
        warm_up(run, 2_000)
        began = time.monotonic()
        outage(run, _broker_down(services), 10)
        row.notes.append(f"broker down to back in {time.monotonic() - began:.1f} s in total")
        run.finish()


def kafka_cut(services: ChaosServices, row: Row, events: int = 20_000) -> None:
    """The network to the broker cut (proxy disabled) for 20 s, under the producer's timeout."""
    with stream_run(services, row, events) as run:
        run.start_consumer()
        run.produce(rate=500)
        warm_up(run, 2_000)
        outage(run, services.proxy.kafka.disabled(), 20)
        run.finish()
