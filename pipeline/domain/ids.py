"""Deterministic transaction ids: a UUID id is kept, any other id is mapped with uuid5."""

from __future__ import annotations

from hashlib import sha1
from uuid import UUID, SafeUUID

# uuid5(NAMESPACE_URL, "urn:txcat:transaction"), fixed forever: changing it would give every
# stored transaction a new id, so every replay would become a duplicate.
TRANSACTION_NAMESPACE = UUID("cc7f7aaf-aa81-50c3-9272-811dbd3f61eb")
_NAMESPACE_BYTES = TRANSACTION_NAMESPACE.bytes
_CLEAR_VERSION_AND_VARIANT = ~((0xF000 << 64) | (0xC000 << 48))
_VERSION_5_RFC_4122 = (5 << 76) | (0x8000 << 48)


def transaction_uuid(source_id: str) -> UUID:
    """Return the UUID for a source id: the id itself when it is a UUID, uuid5 otherwise."""
    text = source_id.strip()
    if len(text) >= 32:
        try:
            return UUID(text)
        except ValueError:
            pass
    # uuid.uuid5 spelled out (same value, checked by the tests) without UUID.__init__'s checks,
    # which cost more than the hash itself on the batch hot path.
    digest = sha1(_NAMESPACE_BYTES + text.encode("utf-8"), usedforsecurity=False).digest()
    value = int.from_bytes(digest[:16]) & _CLEAR_VERSION_AND_VARIANT | _VERSION_5_RFC_4122
    uuid = object.__new__(UUID)
    object.__setattr__(uuid, "int", value)
    object.__setattr__(uuid, "is_safe", SafeUUID.unknown)
    return uuid
