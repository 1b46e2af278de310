"""The row-by-row oracle: the validation rules as they were written before the columnar path,
one record at a time, kept independent of pipeline.domain.validation to check it (hypothesis)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from typing import NamedTuple
from zoneinfo import ZoneInfo

from pipeline.domain.errors import InvalidRecord
from pipeline.domain.ids import transaction_uuid
from pipeline.domain.model import RawRecord, Reason, RecordWarning, Side, Transaction, raw_source_id
from pipeline.domain.validation import ValidationRules

_TEXT_FIELDS = ("id", "description", "timestamp", "merchant", "operation_type", "side")
_SIDES = {side.value: side for side in Side}
_DEBIT, _CREDIT = Side.DEBIT, Side.CREDIT  # enum attribute lookups are slow on the hot path
_AMOUNT = re.compile(r"[+-]?\d+(?:[.,]\d{1,2})?", re.ASCII)
# What PostgreSQL text cannot hold (NUL, lone surrogates) and control bytes no description
# carries; tab, newline and carriage return stay (quoted CSV fields may span lines).
_UNSTORABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


class Validated(NamedTuple):
    """A transaction plus the non-blocking observations made while validating it."""

    transaction: Transaction
    warnings: tuple[str, ...] = ()
    new_operation_type: str | None = None


class RowOracle:
    """Validates raw records against the rules; raises InvalidRecord with a reason code."""

    def __init__(self, rules: ValidationRules | None = None) -> None:
        self.rules = rules or ValidationRules()
        self._zone: tzinfo = ZoneInfo(self.rules.default_timezone)

    def validate(self, record: RawRecord) -> Validated:
        """Validate one record; the first failing field decides the reason."""
        if record.fields is None:
            raise InvalidRecord(
                record.parse_reason, record.parse_error or "record could not be parsed"
            )
        text = self._texts(record.fields)
        _check_storable(text)
        amount = self._amount(record.fields.get("amount"))
        side = self._side(text["side"])
        transaction = Transaction(
            id=transaction_uuid(text["id"]),
            source_id=text["id"],
            description=text["description"],
            amount=amount,
            timestamp=self._timestamp(text["timestamp"]),
            merchant=text["merchant"] or None,
            operation_type=text["operation_type"],
            side=side,
        )
        warnings: tuple[str, ...] = ()
        if (side is _DEBIT and amount > 0) or (side is _CREDIT and amount < 0):
            warnings = (RecordWarning.SIGN_DISAGREES_WITH_SIDE,)
        unseen = transaction.operation_type not in self.rules.known_operation_types
        return Validated(transaction, warnings, transaction.operation_type if unseen else None)

    def _texts(self, values: Mapping[str, object]) -> dict[str, str]:
        """Strip the text fields, checking presence and length in one pass (hot path)."""
        texts: dict[str, str] = {}
        limit = self.rules.max_text_length
        for name in _TEXT_FIELDS:
            value = raw_source_id(values) if name == "id" else values.get(name)
            if value.__class__ is str:
                text = value.strip()
            elif value is None:
                text = ""
            elif isinstance(value, int | float) and not isinstance(value, bool):
                text = str(value)
            else:
                raise InvalidRecord(
                    Reason.INVALID_FIELD, f"{name} must be text, not {type(value).__name__}"
                )
            if len(text) > limit:
                raise InvalidRecord(
                    Reason.FIELD_TOO_LONG, f"{name} has {len(text)} characters (max {limit})"
                )
            if not text and name != "merchant":
                raise InvalidRecord(Reason.MISSING_FIELD, f"{name} is missing or empty")
            texts[name] = text
        return texts

    def _amount(self, value: object) -> Decimal:
        if value is None or (isinstance(value, str) and not value.strip()):
            raise InvalidRecord(Reason.MISSING_FIELD, "amount is missing or empty")
        if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
            raise InvalidRecord(Reason.INVALID_AMOUNT, f"amount {value!r} is not a number")
        text = str(value).strip()
        if not _AMOUNT.fullmatch(text):
            raise InvalidRecord(
                Reason.INVALID_AMOUNT, f"amount {text[:40]!r} is not a decimal number"
            )
        try:
            amount = Decimal(text.replace(",", "."))
        except InvalidOperation as exc:  # pragma: no cover - the pattern already guards this
            raise InvalidRecord(Reason.INVALID_AMOUNT, f"amount {text!r}: {exc}") from exc
        if not self.rules.min_amount <= amount <= self.rules.max_amount:
            raise InvalidRecord(
                Reason.AMOUNT_OUT_OF_BOUNDS,
                f"amount {amount} outside [{self.rules.min_amount}, {self.rules.max_amount}]",
            )
        return amount

    def _timestamp(self, text: str) -> datetime:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError as exc:
            raise InvalidRecord(
                Reason.INVALID_TIMESTAMP, f"timestamp {text[:40]!r} is not ISO 8601"
            ) from exc
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=self._zone)
        if not EARLIEST <= moment < LATEST:  # out of range for every store and clock
            raise InvalidRecord(
                Reason.INVALID_TIMESTAMP,
                f"timestamp {text[:40]!r} outside [{EARLIEST.year}, {LATEST.year})",
            )
        return moment

    @staticmethod
    def _side(text: str) -> Side:
        side = _SIDES.get(text.lower())
        if side is None:
            raise InvalidRecord(Reason.INVALID_SIDE, f"side {text[:40]!r} is not debit or credit")
        return side


def _check_storable(texts: Mapping[str, str]) -> None:
    """Reject text a database cannot hold, before any ML call (one scan of every field)."""
    joined = "".join(texts.values())
    if joined.isascii() and joined.isprintable():
        return
    for name, text in texts.items():
        found = _UNSTORABLE.search(text)
        if found is not None:
            raise InvalidRecord(
                Reason.INVALID_TEXT,
                f"{name} holds the character U+{ord(found.group()):04X} at {found.start()}",
            )
