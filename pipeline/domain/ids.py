"""Deterministic transaction ids: a UUID in a standard spelling is kept, any other id is mapped
with uuid5, so distinct source ids never share a transaction id."""

from __future__ import annotations

import re
from _sha1 import sha1  # the interpreter's own SHA-1: cheaper to start than OpenSSL's per id
from uuid import UUID, SafeUUID

import numpy as np
import polars as pl
import polars_hash as plh

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
# The same spellings for polars (Rust regex: \A and \z anchor the whole text).
_STANDARD_UUID_COLUMN = f"\\A(?:(?i:urn:uuid:)?{_BODY}|\\{{{_BODY}\\}})\\z"


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
    # uuid.uuid5 spelled out (same value, checked by the tests) without UUID.__init__'s checks.
    digest = sha1(_NAMESPACE_BYTES + text.encode("utf-8", "surrogatepass"))
    value = int.from_bytes(digest.digest()[:16]) & _CLEAR_VERSION_AND_VARIANT | _VERSION_5_RFC_4122
    uuid = object.__new__(UUID)
    object.__setattr__(uuid, "int", value)
    object.__setattr__(uuid, "is_safe", SafeUUID.unknown)
    return uuid


def uuid_spelled(source_ids: pl.Series) -> pl.Series:
    """Whether each (already stripped) source id is a UUID in a standard spelling (kept as
    the transaction's id) rather than a text mapped with uuid5."""
    spelled = pl.col("id").fill_null("").str.contains(_STANDARD_UUID_COLUMN)
    return source_ids.to_frame("id").select(spelled)["id"]  # one query, not one per step


def transaction_keys(source_ids: pl.Series) -> pl.Series:
    """The transaction UUID of each (already stripped) source id, as 32 lowercase hex digits.

    The same value as `transaction_uuid(...).hex`, a column at a time: standard UUID spellings
    are rewritten by string expressions; the others are hashed with uuid5 by the polars-hash
    plugin (SHA-1 in Rust, off the GIL: a Python loop cost ~1 µs an id).
    """
    texts = source_ids.fill_null("")
    spelled = uuid_spelled(texts)
    if not spelled.any():  # the usual file: no id is a UUID, every one is hashed
        return _uuid5_hexes(texts).rename("id_hex")
    keys = texts.to_frame("key").select(  # one query, not one per string step
        pl.col("key")
        .str.to_lowercase()
        .str.replace("urn:uuid:", "", literal=True)
        .str.replace_all(r"[{}\-]", "")
    )["key"]
    hashed = texts.filter(~spelled)
    if hashed.len():
        keys = keys.scatter(np.flatnonzero(~spelled.to_numpy()), _uuid5_hexes(hashed))
    return keys.rename("id_hex")


def _uuid5_hexes(texts: pl.Series) -> pl.Series:
    """uuid5 (in the transaction namespace) of each text, as 32 hex digits."""
    uuid5 = plh.UUIDHashNameSpace(pl.col("text")).uuid5(str(TRANSACTION_NAMESPACE))
    hexes = uuid5.str.replace_all("-", "", literal=True)
    return texts.to_frame("text").select(hexes)["text"]


def uuid_text(hexes: pl.Expr) -> pl.Expr:
    """The canonical 8-4-4-4-12 spelling of 32 hex digits."""
    return pl.concat_str(
        [
            hexes.str.slice(0, 8),
            hexes.str.slice(8, 4),
            hexes.str.slice(12, 4),
            hexes.str.slice(16, 4),
            hexes.str.slice(20, 12),
        ],
        separator="-",
    )
