"""Replay events onto the topic at a chosen rate, counting what the broker acknowledged."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from pipeline.domain.ports import EventSink

Event = tuple[str | None, bytes]


@dataclass(frozen=True)
class ReplayResult:
    """What the producer did."""

    read: int
    sent: int
    failed: int
    seconds: float


def replay(
    events: Iterable[Event],
    sink: EventSink,
    rate: float | None = None,
    limit: int | None = None,
) -> ReplayResult:
    """Publish the events, `rate` per second (None: as fast as possible), at most `limit`."""
    started = time.monotonic()
    read = 0
    for key, value in events:
        if limit is not None and read >= limit:
            break
        if rate:
            _pace(started, read, rate)
        sink.publish(key, value)
        read += 1
    unacknowledged = sink.flush()
    return ReplayResult(read, sink.sent, sink.failed + unacknowledged, time.monotonic() - started)


def _pace(started: float, sent: int, rate: float) -> None:
    ahead = started + sent / rate - time.monotonic()
    if ahead > 0:
        time.sleep(ahead)
