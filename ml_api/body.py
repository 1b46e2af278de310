"""Read a request body without ever holding more than the configured maximum."""

from fastapi import Request

from ml_api.errors import BodyTooLargeError


async def read_body(request: Request, max_bytes: int) -> bytes:
    """Return the body, or raise BodyTooLargeError as soon as it exceeds ``max_bytes``.

    A declared Content-Length over the limit is refused before any byte is read. A chunked
    body (or one longer than declared) is counted as it arrives, and reading stops at the
    first chunk that takes the total past the limit. The server discards whatever the
    client still sends; the connection is not closed, so the client reads the 413 instead
    of a reset it would take for a transient failure and retry.
    """
    declared = _declared_length(request)
    if declared is not None and declared > max_bytes:
        raise BodyTooLargeError(max_bytes, declared)
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > max_bytes:
            raise BodyTooLargeError(max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


def _declared_length(request: Request) -> int | None:
    """The Content-Length header as a number, or None when absent or malformed."""
    value = request.headers.get("content-length", "")
    if not (value.isascii() and value.isdigit()):
        return None
    try:
        return int(value)
    except ValueError:  # more digits than int() converts: the streamed count decides
        return None
