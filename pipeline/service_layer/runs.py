"""Recording runs of a file: started, then succeeded or failed, with the reject-share gate."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from pipeline.domain.errors import RunFailed
from pipeline.domain.model import Outcome, RunKind, RunStatus
from pipeline.domain.ports import RunLog

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunRecorder:
    """Records runs in a RunLog; a run whose share of rejected rows is too high fails.

    The same rule for the command line and for Airflow: rows already stored stay stored,
    the run is marked failed and `RunFailed` is raised, so the caller exits non-zero.
    """

    log: RunLog
    max_reject_share: float = 1.0

    def open(self, kind: RunKind, source: str, params: dict[str, Any]) -> UUID:
        """Record a run as running."""
        run_id = self.log.start_run(kind, source, params)
        logger.info("run %s opened for %s", run_id, source)
        return run_id

    def close(self, run_id: UUID, total: Outcome, missing_chunks: int = 0) -> None:
        """Finish the run: failed if chunks are missing or too many rows were rejected."""
        error = self.verdict(total, missing_chunks)
        self.log.finish_run(
            run_id, RunStatus.FAILED if error else RunStatus.SUCCEEDED, total, error
        )
        if error:
            raise RunFailed(error)

    def fail(self, run_id: UUID, total: Outcome, error: BaseException) -> None:
        """Finish the run as failed by an error (the error itself propagates)."""
        self.log.finish_run(run_id, RunStatus.FAILED, total, f"{type(error).__name__}: {error}")

    def verdict(self, total: Outcome, missing_chunks: int = 0) -> str | None:
        """Why the run fails, or None when it succeeded."""
        if missing_chunks:
            return f"{missing_chunks} chunk(s) did not finish"
        share = reject_share(total)
        if share > self.max_reject_share:
            return f"{share:.1%} of rows rejected, above the {self.max_reject_share:.1%} allowed"
        return None

    @contextmanager
    def recorded(self, kind: RunKind, source: str, params: dict[str, Any]) -> Iterator[Outcome]:
        """A run around a block that adds its chunks' outcomes into the yielded total."""
        run_id = self.open(kind, source, params)
        total = Outcome()
        try:
            yield total
        except BaseException as exc:
            self.fail(run_id, total, exc)
            raise
        self.close(run_id, total)


def reject_share(total: Outcome) -> float:
    """The share of rows read that were rejected."""
    return total.rejected_total / total.read if total.read else 0.0


def add_up(outcomes: Sequence[Outcome]) -> Outcome:
    """The total of several chunks' outcomes."""
    total = Outcome()
    for outcome in outcomes:
        total.add(outcome)
    return total
