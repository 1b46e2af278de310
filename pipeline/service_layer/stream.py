"""The streaming use case: micro-batches from a record stream through the shared use case.

Delivery: at least once into an idempotent store, so effectively once. A batch's offsets are
committed only after its rows and dead letters are durable. Transient failures (a dependency
down) and systemic ones (a misconfiguration: every record fails alike) pause the stream and
retry the same batch with back-off until fixed; nothing is dead-lettered for them, nothing is
committed meanwhile. An error no rule classifies is retried a few times with the whole batch,
then the batch is bisected: a record that keeps failing alone is dead-lettered as
`unexpected_error`, so a partition always moves on and nothing unforeseen kills the consumer.

Overlap (when the use case is given in its two halves): a batch's write runs on a writer thread
while the next batch is polled, validated and categorised. Offsets are still committed on the
polling thread, in order, each batch's only after its write returned, and only for partitions
still owned then. Any failure in either half sends the batches in hand through the one-at-a-time
path above (retry, pause, isolate), so overlap changes when work runs, never what happens.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Protocol

from tenacity import (
    RetryCallState,
    Retrying,
    stop_when_event_set,
    wait_exponential_jitter,
)

from pipeline.domain.errors import PipelineError, SystemicError, TransientError
from pipeline.domain.model import Outcome, RawRecord
from pipeline.domain.ports import RecordStream

Process = Callable[[Sequence[RawRecord]], Outcome]
Quarantine = Callable[[RawRecord, BaseException], Outcome]
PAUSING = (TransientError, SystemicError)
Writing = tuple[list[RawRecord], Future[Outcome], float]  # a batch, its write, when it began

logger = logging.getLogger(__name__)


class Halves(Protocol):
    """The use case in its two halves: everything before the write, then the write."""

    def front(self, records: Sequence[RawRecord]) -> Any: ...

    def save(self, ready: Any) -> Outcome: ...


class StreamObserver(Protocol):
    """What the stream loop reports (metrics)."""

    def batch_done(
        self, records: Sequence[RawRecord], outcome: Outcome, seconds: float
    ) -> None: ...

    def retrying(self, error: BaseException) -> None: ...

    def paused(self, paused: bool) -> None: ...

    def lag(self, lag: dict[int, int]) -> None: ...


class NullObserver:
    """Reports nothing."""

    def batch_done(self, records: Sequence[RawRecord], outcome: Outcome, seconds: float) -> None:
        return None

    def retrying(self, error: BaseException) -> None:
        return None

    def paused(self, paused: bool) -> None:
        return None

    def lag(self, lag: dict[int, int]) -> None:
        return None


@dataclass(frozen=True)
class StreamOptions:
    """Micro-batch size and the back-off used while a dependency is down."""

    max_records: int = 5000
    max_wait_s: float = 0.05
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 10.0
    unexpected_attempts: int = 3  # whole-batch tries of an unclassified error before bisecting


class StreamProcessor:
    """Runs until `stop` is set: poll → process → commit, pausing during outages."""

    def __init__(
        self,
        stream: RecordStream,
        process: Process,
        options: StreamOptions | None = None,
        observer: StreamObserver | None = None,
        quarantine: Quarantine | None = None,
        halves: Halves | None = None,
    ) -> None:
        self.stream = stream
        self.process = process
        self.quarantine = quarantine
        self.halves = halves
        self.options = options or StreamOptions()
        self.observer = observer or NullObserver()
        self.stop = threading.Event()
        self.total = Outcome()
        self._paused = False
        self._writer: ThreadPoolExecutor | None = None
        self._writing: Writing | None = None

    def run(self) -> Outcome:
        """Consume until stopped; the batches in hand are finished and committed first."""
        reported = 0.0
        with ExitStack() as stack:
            if self.halves is not None:
                self._writer = stack.enter_context(ThreadPoolExecutor(1, "store"))
            while not self.stop.is_set():
                try:
                    batch = self.stream.poll(self.options.max_records, self.options.max_wait_s)
                except TransientError as exc:
                    logger.warning("poll failed, retrying: %s", exc)
                    self.observer.retrying(exc)
                    self.stream.idle(self.options.backoff_initial_s)
                    continue
                if not self._step(batch):
                    break
                if time.monotonic() - reported >= 1.0:
                    reported = time.monotonic()
                    self.observer.lag(self.stream.lag())
            self._step([])  # the write in hand, if any
        return self.total

    def _step(self, batch: list[RawRecord]) -> bool:
        """Process a polled batch (none: finish the write in hand); False when stopped during
        an outage, the batches in hand left uncommitted for replay."""
        try:
            if not batch:
                self._drain()
            elif self._writer is None:
                self._handle(batch)
            else:
                self._overlap(batch)
        except PAUSING:
            logger.warning("stopping during an outage: batch left uncommitted for replay")
            return False
        return True

    def _overlap(self, batch: list[RawRecord]) -> None:
        """Validate and categorise `batch` while the write in hand runs, then hand its own
        write to the writer thread and commit the one before (its broker round trip overlaps
        the new write). A failure in either half sends what it touched through `_handle`, one
        batch at a time, the earlier batch first."""
        assert self._writer is not None and self.halves is not None
        started = time.monotonic()
        owned = self._owned(batch)
        if not owned:
            return
        try:
            ready = self.halves.front(owned)
        except Exception as exc:  # whatever it is, `_handle` classifies it and acts
            logger.info("batch failed before its write (%s): handled on its own", exc)
            ready = None
        previous, self._writing = self._writing, None
        outcome = self._written(previous) if previous is not None else None
        alone = ready is None or (previous is not None and outcome is None)
        if not alone:  # the write before is durable: this one may start
            self._writing = (owned, self._writer.submit(self.halves.save, ready), started)
        if previous is not None and outcome is not None:
            self._commit(previous, outcome)
        if alone:
            self._handle(batch)

    def _drain(self) -> None:
        """Wait for the write in hand and commit it."""
        previous, self._writing = self._writing, None
        if previous is not None and (outcome := self._written(previous)) is not None:
            self._commit(previous, outcome)

    def _written(self, writing: Writing) -> Outcome | None:
        """The outcome of a finished write; None when it failed and its batch was handled on
        its own by `_handle` (which may raise a pausing error: nothing committed then)."""
        records, write, _started = writing
        try:
            return write.result()
        except Exception as exc:
            logger.info("batch failed in its write (%s): handled on its own", exc)
            self._handle(records)
            return None

    def _commit(self, writing: Writing, outcome: Outcome) -> None:
        """Commit a written batch and report it; a failed commit re-runs the batch alone (it
        is stored: a no-op, then committed)."""
        records, _write, started = writing
        # Partitions revoked since the batch was polled are not ours to commit: their new
        # owner replays these records, which are stored by now, so a no-op.
        owned = self._owned(records)
        try:
            if owned:
                self.stream.commit(owned)
        except Exception as exc:
            logger.info("commit failed (%s): batch handled on its own", exc)
            self._handle(records)
            return
        self.total.add(outcome)
        self.observer.batch_done(records, outcome, time.monotonic() - started)

    def _owned(self, batch: list[RawRecord]) -> list[RawRecord]:
        # After a rebalance (during an outage, or while a batch was written), records of
        # partitions we lost belong to another consumer now: drop them (their offsets were not
        # committed, the new owner replays them).
        owns = self.stream.owns
        # The whole batch, as polled, when we still own it all: it may carry its frame.
        return batch if all(map(owns, batch)) else [record for record in batch if owns(record)]

    def _handle(self, batch: list[RawRecord]) -> None:
        started = time.monotonic()
        self._unexpected = 0
        retrying = Retrying(
            retry=self._should_retry,
            wait=wait_exponential_jitter(
                multiplier=self.options.backoff_initial_s,
                max=self.options.backoff_max_s,
                jitter=self.options.backoff_initial_s,
            ),
            stop=stop_when_event_set(self.stop),
            sleep=self.stream.idle,
            before_sleep=self._before_sleep,
            reraise=True,
        )
        done = retrying(self._process_owned, batch)
        if self._paused:
            self.stream.resume()
            self._paused = False
            self.observer.paused(False)
            logger.info("dependency back: stream resumed")
        if done is not None:
            records, outcome = done
            self.total.add(outcome)
            self.observer.batch_done(records, outcome, time.monotonic() - started)

    def _process_owned(self, batch: list[RawRecord]) -> tuple[list[RawRecord], Outcome] | None:
        owned = self._owned(batch)
        if not owned:
            return None
        try:
            outcome = self.process(owned)
        except PipelineError:
            raise
        except Exception as exc:
            self._unexpected += 1
            logger.exception("unexpected %s (attempt %d)", type(exc).__name__, self._unexpected)
            if self._unexpected < self.options.unexpected_attempts or self.quarantine is None:
                raise
            outcome = self._isolate(owned)
        self.stream.commit(owned)
        return owned, outcome

    def _should_retry(self, state: RetryCallState) -> bool:
        error = state.outcome.exception() if state.outcome else None
        return isinstance(error, PAUSING) or (
            error is not None
            and not isinstance(error, PipelineError)
            and self._unexpected < self.options.unexpected_attempts
        )

    def _isolate(self, records: Sequence[RawRecord]) -> Outcome:
        """Bisect a batch that keeps failing unexpectedly; dead-letter each record that fails
        alone (classified errors, transient ones included, propagate as usual)."""
        assert self.quarantine is not None
        try:
            return self.process(records)
        except PipelineError:
            raise
        except Exception as exc:
            if len(records) == 1:
                logger.error(
                    "dead-lettering %s: unexpected %s alone",
                    records[0].position,
                    type(exc).__name__,
                )
                return self.quarantine(records[0], exc)
        middle = len(records) // 2
        total = self._isolate(records[:middle])
        total.add(self._isolate(records[middle:]))
        return total

    def _before_sleep(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        if not self._paused:
            self.stream.pause()
            self._paused = True
            self.observer.paused(True)
        self.observer.retrying(error or RuntimeError("unknown"))
        logger.warning(
            "transient failure (attempt %d), stream paused, retrying in %.1fs: %s",
            state.attempt_number,
            state.upcoming_sleep,
            error,
        )
