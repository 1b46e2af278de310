"""Errors the service reports to its clients, one class per HTTP answer."""

from ml_api.schemas import ItemError


class MlApiError(Exception):
    """Root of the errors the service reports to its clients."""


class BodyTooLargeError(MlApiError):
    """The request body is larger than the configured maximum (413)."""

    def __init__(self, maximum: int, declared: int | None = None) -> None:
        size = "" if declared is None else f" of {declared} bytes"
        super().__init__(f"request body{size} exceeds the maximum of {maximum} bytes")
        self.maximum = maximum
        self.declared = declared


class BatchTooLargeError(MlApiError):
    """The batch holds more items than the configured maximum (413)."""

    def __init__(self, size: int, maximum: int) -> None:
        super().__init__(f"batch of {size} items exceeds the maximum of {maximum}")
        self.size = size
        self.maximum = maximum


class InvalidBatchError(MlApiError):
    """The body is not a JSON list, or some items are invalid (422)."""

    def __init__(self, errors: list[ItemError]) -> None:
        super().__init__(f"{len(errors)} validation error(s)")
        self.errors = errors
