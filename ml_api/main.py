"""FastAPI application of the ML prediction service: ``uvicorn ml_api.main:app``."""

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response

from ml_api.body import read_body
from ml_api.errors import BatchTooLargeError, BodyTooLargeError, InvalidBatchError
from ml_api.faults import FaultInjector, fault_headers, faults_router
from ml_api.model import MODEL_VERSION, categorise
from ml_api.parsing import BatchParser
from ml_api.schemas import ErrorResponse, HealthResponse, Prediction, ValidationErrorResponse
from ml_api.settings import ServiceSettings

logger = logging.getLogger(__name__)

MODEL_VERSION_HEADER = "X-Model-Version"
_VERSION_HEADERS = {MODEL_VERSION_HEADER: MODEL_VERSION}
# Each batch allocates thousands of short-lived tracked objects; with CPython's default
# threshold (700) they trigger frequent collections that rescan every long-lived object
# the framework created at start-up, which cost ~40% of a /predict call.
_GC_THRESHOLDS = (50_000, 20, 100)


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    """Build the service; settings default to the ML_API_* environment."""
    settings = settings or ServiceSettings()
    injector = FaultInjector(fail_first_n=settings.fail_first_n)
    app = FastAPI(
        title="Transaction categorisation ML API",
        version=MODEL_VERSION,
        lifespan=_lifespan if settings.gc_tuning else None,
    )
    app.state.settings = settings
    app.state.faults = injector
    _add_routes(app, settings, injector)
    # Validation refuses enable_faults without a token; an unvalidated copy gets no endpoint.
    if settings.enable_faults and settings.faults_token is not None:
        app.include_router(faults_router(injector, settings.faults_token, settings.max_body_bytes))
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Tune the garbage collector once the app is loaded (process-wide)."""
    gc.collect()
    gc.freeze()  # start-up objects live forever: keep them out of every future scan
    gc.set_threshold(*_GC_THRESHOLDS)
    logger.info("garbage collector tuned: start-up objects frozen, thresholds %s", _GC_THRESHOLDS)
    yield


def _add_routes(app: FastAPI, settings: ServiceSettings, injector: FaultInjector) -> None:
    """Register /health and /predict on ``app``."""
    max_batch = settings.max_batch
    max_body_bytes = settings.max_body_bytes
    parser = BatchParser(max_batch, settings.max_string_length)

    @app.get("/health", response_model=HealthResponse)
    async def health() -> HealthResponse:
        """Report liveness, the model version and the batch limit."""
        return HealthResponse(status="ok", model_version=MODEL_VERSION, max_batch=max_batch)

    @app.post(
        "/predict",
        response_model=list[Prediction],
        responses=_predict_responses(),
        openapi_extra=_predict_request_body(parser),
    )
    async def predict(request: Request) -> Response:
        """Categorise a JSON list of transactions, answering in the same order."""
        # Read and validated by hand: pydantic-core on the raw bytes plus orjson output
        # costs about half of FastAPI's body parameter and response_model path.
        try:
            body = await read_body(request, max_body_bytes)
        except BodyTooLargeError as exc:
            logger.info("rejected /predict: %s", exc)
            return _json(413, {"detail": str(exc)}, _VERSION_HEADERS)
        status = injector.take()
        if status is not None:
            logger.warning("injected /predict failure with status %d", status)
            return _json(status, {"detail": f"injected fault: {status}"}, fault_headers(status))
        try:
            ids = parser.ids(body)
        except BatchTooLargeError as exc:
            logger.info("rejected /predict: %s", exc)
            return _json(413, {"detail": str(exc)}, _VERSION_HEADERS)
        except InvalidBatchError as exc:
            logger.info("rejected /predict: %s", exc)
            errors = [error.model_dump() for error in exc.errors]
            return _json(422, {"detail": errors}, _VERSION_HEADERS)
        predictions = [{"transaction_id": id_, "category": categorise(id_)} for id_ in ids]
        return _json(200, predictions, _VERSION_HEADERS)


def _json(status: int, content: Any, headers: dict[str, str]) -> Response:
    """Serialise ``content`` with orjson (which writes UUIDs natively)."""
    return Response(orjson.dumps(content), status, headers, media_type="application/json")


def _predict_request_body(parser: BatchParser) -> dict[str, Any]:
    """OpenAPI request body of /predict, declared by hand since FastAPI does not parse it."""
    schema = {
        "type": "array",
        "maxItems": parser.max_batch,
        "items": parser.item_model.model_json_schema(),
    }
    return {
        "requestBody": {
            "required": True,
            "description": f"Transactions to categorise, at most {parser.max_batch}.",
            "content": {"application/json": {"schema": schema}},
        }
    }


def _predict_responses() -> dict[int | str, dict[str, Any]]:
    """Documented error answers of /predict."""
    return {
        413: {
            "model": ErrorResponse,
            "description": "More items than ML_API_MAX_BATCH, or more bytes than "
            "ML_API_MAX_BODY_BYTES.",
        },
        422: {
            "model": ValidationErrorResponse,
            "description": "Body or items invalid, e.g. text longer than ML_API_MAX_STRING_LENGTH.",
        },
        503: {"model": ErrorResponse, "description": "Injected fault (test hook); retry."},
    }


app = create_app()
