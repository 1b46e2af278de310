"""Redrive: send dead letters back to the stream once their cause is fixed."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from pipeline.domain.model import DeadLetterStatus, Reason
from pipeline.domain.ports import DeadLetterStore, Republisher

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RedriveResult:
    """How many dead letters went back to the stream, and how many were quarantined."""

    redriven: int
    quarantined: int


def redrive_dead_letters(
    store: DeadLetterStore,
    republisher: Republisher,
    reason: Reason | None = None,
    since: datetime | None = None,
    max_replays: int = 3,
) -> RedriveResult:
    """Republish pending dead letters; quarantine those already replayed `max_replays` times.

    A record is marked redriven only after the broker acknowledged it, so a crash in between
    republishes it again (harmless: the store is idempotent). A second call finds nothing pending.
    """
    pending = store.pending(reason, since)
    worn_out = [record for record in pending if record.replays >= max_replays]
    retry = [record for record in pending if record.replays < max_replays]
    if worn_out:
        store.mark([record.id for record in worn_out], DeadLetterStatus.QUARANTINED)
        logger.warning("quarantined %d dead letters replayed %d times", len(worn_out), max_replays)
    if retry:
        republisher.republish(retry)
        store.mark([record.id for record in retry], DeadLetterStatus.REDRIVEN)
    logger.info("redrove %d dead letters", len(retry))
    return RedriveResult(len(retry), len(worn_out))
