"""Test-only fault injection: make the next /predict calls fail with a chosen status."""

import logging
import threading
from collections import deque

from fastapi import APIRouter
from pydantic import BaseModel, Field

logger = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({429, 503})


class FaultInjector:
    """Queue of pending injected failures, consumed one per /predict call."""

    def __init__(self, fail_first_n: int = 0, status: int = 503) -> None:
        self._lock = threading.Lock()
        self._runs: deque[list[int]] = deque()  # [status, remaining] runs, oldest first
        self.arm(fail_first_n, status)

    def arm(self, count: int, status: int = 503) -> int:
        """Add ``count`` failures with ``status`` after those already armed; return the total."""
        with self._lock:
            if count > 0:
                self._runs.append([status, count])
            return self._pending()

    def pending(self) -> int:
        """Return how many failures are still armed."""
        with self._lock:
            return self._pending()

    def take(self) -> int | None:
        """Consume one armed failure and return its status, or None when none is armed."""
        if not self._runs:  # lock-free fast path for the normal case
            return None
        with self._lock:
            if not self._runs:
                return None
            run = self._runs[0]
            run[1] -= 1
            if run[1] == 0:
                self._runs.popleft()
            return run[0]

    def _pending(self) -> int:
        return sum(remaining for _, remaining in self._runs)


class FaultRequest(BaseModel):
    """Arm ``fail_next`` more /predict failures answering ``status``."""

    fail_next: int = Field(ge=0, le=1_000_000)
    status: int = Field(default=503, ge=400, le=599)


class FaultState(BaseModel):
    """Failures still armed after the request."""

    pending: int


def fault_headers(status: int) -> dict[str, str]:
    """Headers of an injected failure: retryable ones invite an immediate retry."""
    return {"Retry-After": "0"} if status in RETRYABLE_STATUSES else {}


def faults_router(injector: FaultInjector) -> APIRouter:
    """Build the /admin/faults router; mount it only when faults are enabled."""
    router = APIRouter(prefix="/admin", tags=["admin (test only)"])

    @router.post("/faults", response_model=FaultState)
    async def arm_faults(request: FaultRequest) -> FaultState:
        """Arm more injected failures of /predict (test hook)."""
        pending = injector.arm(request.fail_next, request.status)
        logger.warning(
            "armed %d injected %d failures (%d pending)", request.fail_next, request.status, pending
        )
        return FaultState(pending=pending)

    return router
