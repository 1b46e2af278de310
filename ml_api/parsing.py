"""Turn a raw /predict body into validated items, or into typed errors for the HTTP layer."""

import logging
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from ml_api.schemas import ItemError, PredictItem

logger = logging.getLogger(__name__)

_BATCH = TypeAdapter(list[PredictItem])


class MlApiError(Exception):
    """Root of the errors the service reports to its clients."""


class BatchTooLargeError(MlApiError):
    """The batch holds more items than the configured maximum."""

    def __init__(self, size: int, maximum: int) -> None:
        super().__init__(f"batch of {size} items exceeds the maximum of {maximum}")
        self.size = size
        self.maximum = maximum


class InvalidBatchError(MlApiError):
    """The body is not a JSON list, or some items are invalid."""

    def __init__(self, errors: list[ItemError]) -> None:
        super().__init__(f"{len(errors)} validation error(s)")
        self.errors = errors


def parse_batch(body: bytes, max_batch: int) -> list[PredictItem]:
    """Validate a JSON list of transactions; oversize wins over item errors.

    The happy path is a single pydantic-core ``validate_json`` over the bytes; the
    body is decoded a second time only when it fails, to size it and report ids.
    """
    try:
        items = _BATCH.validate_json(body)
    except ValidationError as exc:
        raise _classify_failure(body, exc, max_batch) from None
    if len(items) > max_batch:
        raise BatchTooLargeError(len(items), max_batch)
    return items


def _classify_failure(body: bytes, exc: ValidationError, max_batch: int) -> MlApiError:
    """Map a failed validation to a 413 (oversize) or a 422 listing every problem."""
    details = exc.errors(include_url=False)
    body_level = [detail for detail in details if not detail["loc"]]
    if body_level:  # not JSON, or not a list: nothing to say per item
        return InvalidBatchError([_body_error(detail) for detail in body_level])
    raw = _decode_list(body)
    if len(raw) > max_batch:
        return BatchTooLargeError(len(raw), max_batch)
    return InvalidBatchError([_item_error(raw, detail) for detail in details])


def _decode_list(body: bytes) -> list[Any]:
    """Decode the body again to size it and read ids; [] in the rare cases orjson refuses."""
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError:  # e.g. integers wider than 64 bits, which pydantic accepts
        return []
    return raw if isinstance(raw, list) else []


def _body_error(detail: ErrorDetails) -> ItemError:
    """Describe a problem with the body as a whole."""
    if detail["type"] == "list_type":
        message = "body must be a JSON list of transactions"
    else:
        message = f"body is not a valid JSON list: {detail['msg']}"
    return ItemError(index=None, id=None, field=None, message=message)


def _item_error(raw: list[Any], detail: ErrorDetails) -> ItemError:
    """Describe one pydantic error located at ``(index, field, ...)`` in the list."""
    loc = detail["loc"]
    index = loc[0] if loc and isinstance(loc[0], int) else None
    field = ".".join(str(part) for part in loc[1:]) or None
    return ItemError(index=index, id=_raw_id(raw, index), field=field, message=detail["msg"])


def _raw_id(raw: list[Any], index: int | None) -> str | None:
    """Return the item's id as sent, if it has a scalar one."""
    if index is None or not 0 <= index < len(raw) or not isinstance(raw[index], dict):
        return None
    value = raw[index].get("id")
    if value is None or isinstance(value, (dict, list)):
        return None
    return str(value)
