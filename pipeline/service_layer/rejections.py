"""Dead letters built from records: the reason, the stage, the position, a bounded payload."""

from __future__ import annotations

from hashlib import sha256

from pipeline.domain.ids import transaction_uuid
from pipeline.domain.model import RawRecord, Reason, Rejection, Stage, source_id_of

DEFAULT_MAX_PAYLOAD_BYTES = 64 * 1024


def reject(
    record: RawRecord,
    reason: Reason,
    detail: str,
    stage: Stage,
    error: str = "InvalidRecord",
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
) -> Rejection:
    """The dead letter of `record`; a payload over `max_payload_bytes` is kept truncated, with
    its original size and SHA-256, so writing a dead letter never fails on what it carries."""
    payload, size, digest = bounded_payload(record.raw, max_payload_bytes)
    source_id = source_id_of(record)
    return Rejection(
        position=record.position,
        payload=payload,
        reason=reason,
        detail=detail[:2000],
        stage=stage,
        error=error,
        attempts=record.replays + 1,
        # Its transaction, when the record names one: storing it later resolves this letter.
        transaction_id=transaction_uuid(source_id) if 0 < len(source_id) <= 1000 else None,
        key=record.key,
        replays=record.replays,
        payload_bytes=size,
        payload_sha256=digest,
    )


def bounded_payload(payload: str, limit: int) -> tuple[str, int | None, str | None]:
    """(payload, None, None) when it fits; else its first `limit` bytes, size and SHA-256."""
    if len(payload) * 4 <= limit:  # a character is at most 4 bytes in UTF-8: fits for sure
        return payload, None, None
    data = payload.encode("utf-8", "surrogateescape")
    if len(data) <= limit:
        return payload, None, None
    kept = data[:limit].decode("utf-8", "ignore")
    return kept, len(data), sha256(data).hexdigest()
