"""Redrive: send dead letters back to the stream once their cause is fixed.

Pending dead letters are read in pages (memory stays flat for a million of them), each page is
republished and every record marked redriven as soon as the broker acknowledged it; a lock
keeps two redrives from running at once. A crash between acknowledgement and mark republishes
that record again: harmless, the store is idempotent. A second call finds nothing pending.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from pipeline.domain.errors import BrokerUnavailable
from pipeline.domain.model import DeadLetterStatus, Reason
from pipeline.domain.ports import DeadLetterStore, Republisher

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RedriveResult:
    """How many dead letters went back to the stream, and how many were quarantined."""

    redriven: int
    quarantined: int
    # --dry-run: pending dead letters per reason, and what a redrive would do with them
    by_reason: Counter[str] = field(default_factory=Counter)


def redrive_dead_letters(
    store: DeadLetterStore,
    republisher: Republisher,
    reason: Reason | None = None,
    since: datetime | None = None,
    max_replays: int = 3,
    page_size: int = 1000,
    dry_run: bool = False,
) -> RedriveResult:
    """Republish pending dead letters; quarantine those already replayed `max_replays` times."""
    redriven = quarantined = 0
    by_reason: Counter[str] = Counter()
    with store.exclusive():
        after = 0
        while page := store.pending(reason, since, after, page_size):
            after = page[-1].id
            worn_out = [record.id for record in page if record.replays >= max_replays]
            retry = [record for record in page if record.replays < max_replays]
            by_reason.update(str(record.reason) for record in page)
            quarantined += len(worn_out)
            if dry_run:
                redriven += len(retry)
                continue
            if worn_out:
                store.mark(worn_out, DeadLetterStatus.QUARANTINED)
            acknowledged = republisher.republish(retry)
            store.mark(acknowledged, DeadLetterStatus.REDRIVEN)
            redriven += len(acknowledged)
            if len(acknowledged) < len(retry):
                raise BrokerUnavailable(
                    f"redrive: {len(retry) - len(acknowledged)} of a page not acknowledged "
                    f"({redriven} redriven before); run it again"
                )
    if quarantined:
        logger.warning("quarantined %d dead letters replayed %d times", quarantined, max_replays)
    logger.info("redrove %d dead letters%s", redriven, " (dry run)" if dry_run else "")
    return RedriveResult(redriven, quarantined, by_reason)
