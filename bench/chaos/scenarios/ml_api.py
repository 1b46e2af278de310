"""ML API faults: 5xx bursts, latency above the client timeout, resets, a trickle, an outage."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from decimal import Decimal
from uuid import uuid4

from bench.chaos.report import Row
from bench.chaos.scenarios.base import outage, stream_run, warm_up
from bench.chaos.services import ChaosServices
from pipeline.adapters.ml_http import HttpCategoriser, RetryPolicy, make_client
from pipeline.config import MlApiSettings
from pipeline.domain.errors import CategoriserUnavailable
from pipeline.domain.model import Side, Transaction

# The client's per-read timeout is ML_TIMEOUT_S (10 s by default): slower than that fails.
LATENCY_MS = 12_000


def ml_5xx_bursts(services: ChaosServices, row: Row, events: int = 12_000) -> None:
    """Three bursts of 20 failed /predict calls (503, then 500, then 502), 8 s apart."""
    with stream_run(services, row, events) as run:
        run.start_consumer()
        run.produce(rate=400)
        warm_up(run, 1_000)
        for status in (503, 500, 502):
            burst = time.monotonic()
            services.arm_ml_faults(20, status)
            time.sleep(8)
            run.wait_recovered(burst)
        run.finish()


def ml_latency(services: ChaosServices, row: Row, events: int = 20_000) -> None:
    """Every ML answer delayed 12 s (over the 10 s read timeout) for 60 s."""
    with stream_run(services, row, events) as run:
        run.start_consumer()
        run.produce(rate=250)
        warm_up(run, 1_000)
        outage(run, services.proxy.ml_api.toxic("latency", latency=LATENCY_MS), 60)
        run.finish()


def ml_reset(services: ChaosServices, row: Row, events: int = 14_000) -> None:
    """Every connection to the ML API reset by peer for 30 s."""
    with stream_run(services, row, events) as run:
        run.start_consumer()
        run.produce(rate=300)
        warm_up(run, 1_000)
        outage(run, services.proxy.ml_api.toxic("reset_peer", "upstream", timeout=0), 30)
        run.finish()


def ml_trickle(services: ChaosServices, row: Row, events: int = 20_000) -> None:
    """ML answers trickle one byte every 2 s for 60 s (each read arrives within its timeout).

    Besides the stream, one call of the product's ML client (one attempt, default settings)
    is timed through the trickle: ML_TOTAL_TIMEOUT_S must bound it, headers included.
    """
    trickle = services.proxy.ml_api.toxic(
        "slicer", average_size=1, size_variation=0, delay=2_000_000
    )
    settings = MlApiSettings()
    timed: list[float] = []
    with stream_run(services, row, events) as run:
        run.start_consumer()
        run.produce(rate=250)
        warm_up(run, 1_000)
        probe = threading.Thread(target=_timed_call, args=(services, settings, timed))
        with trickle:
            probe.start()
            time.sleep(60)
        healed = time.monotonic()
        probe.join()
        run.wait_recovered(healed)
        run.finish()
    limit = settings.total_timeout_s + 5
    if timed and timed[0] > limit:
        row.problems.append(
            f"one ML call lasted {timed[0]:.0f} s (cut only when the trickle ended), over "
            f"ML_TOTAL_TIMEOUT_S={settings.total_timeout_s:.0f} s: the response headers are not "
            "under the total timeout"
        )


def _timed_call(services: ChaosServices, settings: MlApiSettings, timed: list[float]) -> None:
    url = f"http://127.0.0.1:{services.proxy.ml_api.port}"
    transaction = Transaction(
        uuid4(), "probe", "probe", Decimal("1.00"), datetime.now(UTC), None, "payment", Side.DEBIT
    )
    with make_client(url, settings.timeout_s) as client:
        categoriser = HttpCategoriser(client, RetryPolicy(attempts=1), settings.total_timeout_s)
        began = time.monotonic()
        with suppress(CategoriserUnavailable):
            categoriser.categorise([transaction])
        timed.append(time.monotonic() - began)


@contextmanager
def _stopped(services: ChaosServices) -> Iterator[None]:
    services.ml_api.stop()
    try:
        yield
    finally:
        services.ml_api.start()  # same port


def ml_outage(services: ChaosServices, row: Row, events: int = 30_000) -> None:
    """The ML API process stopped for 2 minutes (connection refused), then started again."""
    with stream_run(services, row, events) as run:
        run.start_consumer()
        run.produce(rate=200)
        warm_up(run, 1_000)
        outage(run, _stopped(services), 120)
        run.finish()
