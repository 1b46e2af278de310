"""Test-only fault injection: make the next /predict calls fail with a chosen status."""

import logging
import secrets
import threading
from collections import deque
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field, SecretStr, ValidationError

from ml_api.body import read_body
from ml_api.errors import BodyTooLargeError

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


def faults_router(injector: FaultInjector, token: SecretStr, max_body_bytes: int) -> APIRouter:
    """Build the /admin/faults router; mount it only when faults are enabled.

    The bearer token is checked before the body is read, so an unauthenticated caller
    cannot make the service buffer anything.
    """
    router = APIRouter(prefix="/admin", tags=["admin (test only)"])
    authorised = Depends(_bearer_token_check(token))

    @router.post(
        "/faults",
        response_model=FaultState,
        dependencies=[authorised],
        responses={401: {"description": "Missing or wrong bearer token."}},
        openapi_extra=_fault_request_body(),
    )
    async def arm_faults(request: Request) -> FaultState:
        """Arm more injected failures of /predict (test hook)."""
        fault = await _read_fault_request(request, max_body_bytes)
        pending = injector.arm(fault.fail_next, fault.status)
        logger.warning(
            "armed %d injected %d failures (%d pending)", fault.fail_next, fault.status, pending
        )
        return FaultState(pending=pending)

    return router


def _bearer_token_check(
    token: SecretStr,
) -> Callable[[HTTPAuthorizationCredentials | None], None]:
    """Dependency answering 401 unless the request carries ``Authorization: Bearer <token>``."""
    expected = token.get_secret_value().encode()
    scheme = HTTPBearer(auto_error=False, description="The value of ML_API_FAULTS_TOKEN.")

    def check(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(scheme)],
    ) -> None:
        # Header values arrive decoded as latin-1: encoding them back gives the bytes sent.
        given = b"" if credentials is None else credentials.credentials.encode("latin-1")
        if not secrets.compare_digest(given, expected):
            logger.warning("rejected /admin/faults: missing or wrong bearer token")
            raise HTTPException(
                401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
            )

    return check


async def _read_fault_request(request: Request, max_body_bytes: int) -> FaultRequest:
    """Read and validate the body as FastAPI would have, with its usual 413 and 422 shapes."""
    try:
        body = await read_body(request, max_body_bytes)
    except BodyTooLargeError as exc:
        raise HTTPException(413, str(exc)) from None
    try:
        return FaultRequest.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in errors]
        ) from None


def _fault_request_body() -> dict[str, Any]:
    """OpenAPI request body of /admin/faults, declared by hand since the handler reads it."""
    schema = FaultRequest.model_json_schema()
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
    }
