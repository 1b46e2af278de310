"""Consumer faults: kill -9 at random moments, a rolling restart, a rebalance storm."""

from __future__ import annotations

import random
import signal
import time

from bench.chaos.report import Row
from bench.chaos.runs import StreamRun
from bench.chaos.scenarios.base import stream_run, warm_up
from bench.chaos.services import ChaosServices


def kill9(services: ChaosServices, row: Row, kills: int = 20, events: int = 40_000) -> None:
    """SIGKILL the consumer ``kills`` times at random moments under a steady produce rate;
    a replacement starts at once; poison is injected halfway."""
    rng = random.Random(9)
    with stream_run(services, row, events) as run:
        run.start_consumer()
        # A kill costs about the group's session timeout (10 s: the dead member must expire
        # before its partitions move), so 20 kills take over 3 minutes: 200 events/s.
        run.produce(rate=200)
        warm_up(run)
        for number in range(kills):
            time.sleep(rng.uniform(0.2, 3.0))
            if number == kills // 2:
                run.inject_poison()
            _kill_and_replace(run)
        run.finish()
        row.notes.append(f"kills: {kills}; replayed: durable but uncommitted at each kill")


def _kill_and_replace(run: StreamRun) -> None:
    [victim] = run.live_consumers()
    victim.signal(signal.SIGKILL)
    victim.wait(10)
    time.sleep(0.5)  # let PostgreSQL finish a COMMIT the victim had sent
    run.note_replays()
    restarted = time.monotonic()
    run.start_consumer()
    run.wait_recovered(restarted)


def kill9_smoke(services: ChaosServices, row: Row) -> None:
    """The short version for `make test`."""
    kill9(services, row, kills=1, events=2_000)


def rolling_restart(services: ChaosServices, row: Row, events: int = 24_000) -> None:
    """Three consumers; each in turn gets SIGTERM (must exit 0 quickly) and is replaced."""
    with stream_run(services, row, events) as run:
        for _ in range(3):
            run.start_consumer()
        run.produce(rate=400)
        warm_up(run)
        stops = []
        for _ in range(3):
            time.sleep(5)
            victim = run.live_consumers()[0]
            began = time.monotonic()
            victim.signal(signal.SIGTERM)
            code = victim.wait(60)
            stops.append(time.monotonic() - began)
            if code != 0:
                row.problems.append(f"{victim.name} exited {code} on SIGTERM: {victim.tail()}")
            run.start_consumer()
            run.wait_recovered(began)
        run.finish()
        row.notes.append(f"SIGTERM to exit: max {max(stops):.1f} s")


def rebalance_storm(services: ChaosServices, row: Row, events: int = 28_000) -> None:
    """For a minute, every 3 s a consumer joins or leaves (SIGTERM), 1 to 4 in the group."""
    rng = random.Random(4)
    with stream_run(services, row, events) as run:
        run.start_consumer()
        run.produce(rate=400)
        warm_up(run)
        joins = leaves = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(3)
            live = run.live_consumers()
            if len(live) < 4 and (len(live) == 1 or rng.random() < 0.5):
                run.start_consumer()
                joins += 1
            else:
                rng.choice(live).signal(signal.SIGTERM)
                leaves += 1
        calm = time.monotonic()
        run.wait_recovered(calm)
        run.finish()
        row.notes.append(f"{joins} joins, {leaves} leaves in 60 s")
