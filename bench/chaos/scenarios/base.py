"""What every scenario shares: its description, a stream run checked at the end, an outage."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

from bench.chaos.report import Row
from bench.chaos.runs import StreamRun
from bench.chaos.services import ChaosServices
from bench.chaos.verify import check_stream

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scenario:
    """A named fault and the function that injects it and checks the final state."""

    name: str
    fault: str
    run: Callable[[ChaosServices, Row], None]
    smoke: bool = False
    # Set while a known gap makes the scenario fail: the row shows XFAIL and does not fail
    # `make chaos`; remove once the gap is closed.
    expected_to_fail: str | None = None


@contextmanager
def stream_run(
    services: ChaosServices, row: Row, events: int, seed: int = 7
) -> Iterator[StreamRun]:
    """A stream run whose final state is checked into ``row`` however the scenario ends."""
    run = StreamRun(services, row.scenario, events, seed)
    try:
        yield run
    except BaseException:
        run.kill_all()  # stop the processes first, then count what they left
        _best_effort_check(run, row)
        raise
    else:
        check_stream(run, row)
    finally:
        run.close()


def _best_effort_check(run: StreamRun, row: Row) -> None:
    try:
        check_stream(run, row)
    except Exception:  # noqa: BLE001 - the scenario's own error is the one reported
        logger.exception("could not read the final state of %s", row.scenario)


def outage(run: StreamRun, fault: AbstractContextManager[object], seconds: float) -> float:
    """Hold ``fault`` for ``seconds`` under load, then time the recovery from its end."""
    with fault:
        logger.info("%s: fault on for %.0fs", run.name, seconds)
        time.sleep(seconds)
    healed = time.monotonic()
    return run.wait_recovered(healed)


def warm_up(run: StreamRun, rows: int = 500, timeout: float = 120) -> None:
    """Wait until the pipeline stores rows, so that the fault lands mid-stream."""
    run.wait_for_rows(rows, timeout)
