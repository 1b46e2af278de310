"""Deterministic transaction ids: a UUID in a standard spelling is kept, any other id is mapped
with uuid5, so distinct source ids never share a transaction id."""

from __future__ import annotations

import re
from hashlib import sha1
from uuid import UUID, SafeUUID

# uuid5(NAMESPACE_URL, "urn:txcat:transaction"), fixed forever: changing it would give every
# stored transaction a new id, so every replay would become a duplicate.
TRANSACTION_NAMESPACE = UUID("cc7f7aaf-aa81-50c3-9272-811dbd3f61eb")
_NAMESPACE_BYTES = TRANSACTION_NAMESPACE.bytes
_CLEAR_VERSION_AND_VARIANT = ~((0xF000 << 64) | (0xC000 << 48))
_VERSION_5_RFC_4122 = (5 << 76) | (0x8000 << 48)

# The standard spellings only: 8-4-4-4-12 hex digits or 32 hex digits, in any case, optionally
# in braces or after "urn:uuid:". uuid.UUID() alone also accepts "+", "_", extra hyphens and a
# prefix anywhere, so two different source ids could have meant one transaction.
_HEX = "[0-9a-fA-F]"
_BODY = f"(?:{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}|{_HEX}{{32}})"
_STANDARD_UUID = re.compile(f"(?:[uU][rR][nN]:[uU][uU][iI][dD]:)?({_BODY})|\\{{({_BODY})\\}}")


def parse_uuid(text: str) -> UUID | None:
    """The UUID that `text` spells in a standard form, or None."""
    match = _STANDARD_UUID.fullmatch(text)
    if match is None:
        return None
    return UUID(hex=(match.group(1) or match.group(2)).replace("-", ""))


def transaction_uuid(source_id: str) -> UUID:
    """Return the UUID for a source id: the id itself when it is a UUID, uuid5 otherwise."""
    text = source_id.strip()
    if len(text) >= 32:
        parsed = parse_uuid(text)
        if parsed is not None:
            return parsed
    # uuid.uuid5 spelled out (same value, checked by the tests) without UUID.__init__'s checks,
    # which cost more than the hash itself on the batch hot path.
    digest = sha1(_NAMESPACE_BYTES + text.encode("utf-8", "surrogatepass"), usedforsecurity=False)
    value = int.from_bytes(digest.digest()[:16]) & _CLEAR_VERSION_AND_VARIANT | _VERSION_5_RFC_4122
    uuid = object.__new__(UUID)
    object.__setattr__(uuid, "int", value)
    object.__setattr__(uuid, "is_safe", SafeUUID.unknown)
    return uuid
