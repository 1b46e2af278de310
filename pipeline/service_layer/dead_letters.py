"""Dead letters fanned out to several sinks (the DLQ topic and the dead_letters table)."""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.domain.model import Rejection
from pipeline.domain.ports import DeadLetterSink


class FanOutDeadLetters:
    """A DeadLetterSink that sends every rejection to each sink in turn."""

    def __init__(self, *sinks: DeadLetterSink) -> None:
        self.sinks = sinks

    def send(self, rejections: Iterable[Rejection]) -> None:
        batch = list(rejections)
        for sink in self.sinks:
            sink.send(batch)
