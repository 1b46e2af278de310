"""The validation rules and their reasons, applied to a whole chunk at once.

Read RULES below as a table: each rule is a named condition on the record's fields, the reason
a failing record is dead-lettered with, and the detail it carries. The first rule a record
fails decides its reason, in the order of the table (the same order as the fields are read).
Rows are polars columns: `pl.col("x")` is "field x of every record"; the conditions read like
the sentences in the comments beside them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import NamedTuple

import polars as pl

from pipeline.domain.chunks import TEXT_FIELDS, raw_frame, records_frame
from pipeline.domain.errors import InvalidRecord
from pipeline.domain.frames import transactions
from pipeline.domain.ids import transaction_keys, uuid_text
from pipeline.domain.model import RawRecord, Reason, RecordWarning, Transaction
from pipeline.domain.timestamps import (
    EARLIEST,
    LATEST,
    micros,
    parse_timestamps,
    timestamp_plan,
)

REQUIRED_FIELDS = ("id", "description", "amount", "timestamp", "operation_type", "side")
KNOWN_OPERATION_TYPES = frozenset({"payment", "direct_debit", "transfer", "refund"})

# Python's str.strip() whitespace (it includes the separators \x1c-\x1f; polars' default does
# not), so a field is stripped exactly as the row-by-row rules always did. No code point past
# U+3000 is whitespace (a unit test checks every one): scanning all 1.1 million of them took
# ~0.14 s at every import, i.e. at the start of every command, consumer and Airflow task.
PY_WHITESPACE = "".join(chr(c) for c in range(0x3001) if chr(c).isspace())
# What PostgreSQL text cannot hold (NUL) and control bytes no description carries; tab, newline
# and carriage return stay (quoted CSV fields may span lines).
UNSTORABLE = "[\\x00-\\x08\\x0B\\x0C\\x0E-\\x1F\\x7F]"
# A decimal number with a comma or a point and at most two decimals, ASCII digits only.
AMOUNT_PATTERN = r"\A([+-]?)([0-9]+)(?:[.,]([0-9]{1,2}))?\z"
_NUMBER_TYPES = ("int", "float")  # a JSON number is read as text in any text field


@dataclass(frozen=True)
class ValidationRules:
    """Bounds and defaults applied to every record."""

    min_amount: Decimal = Decimal("-10000000")
    max_amount: Decimal = Decimal("10000000")
    default_timezone: str = "UTC"
    max_text_length: int = 500
    known_operation_types: frozenset[str] = field(default=KNOWN_OPERATION_TYPES)

    def __post_init__(self) -> None:
        limit = Decimal(10) ** 14  # numeric(16,2) holds less; cents then fit in 64 bits
        if not -limit <= self.min_amount <= self.max_amount <= limit:
            raise ValueError(f"amount bounds must lie within ±{limit}")


class Rule(NamedTuple):
    """A rule: when `fails` holds for a record, it is rejected with `reason` and `detail`."""

    name: str
    reason: Reason
    fails: pl.Expr
    detail: pl.Expr


def text(name: str) -> pl.Expr:
    """Field `name` as stripped text ("" when absent): prepared once per chunk (`prepare`)."""
    return pl.col(f"{name}_text")


def stripped(name: str) -> pl.Expr:
    """Field `name` with Python's whitespace stripped from both ends ("" when absent)."""
    return pl.col(name).fill_null("").str.strip_chars(PY_WHITESPACE)


def _quoted(expr: pl.Expr) -> pl.Expr:
    return pl.format("'{}'", expr.str.slice(0, 40))


def field_rules(limit: int) -> list[Rule]:
    """Per text field, in order: must be text, at most `limit` characters, present."""
    rules = []
    for name in TEXT_FIELDS:
        kind = pl.col(f"{name}_type")
        rules.append(
            Rule(
                f"{name} is text",  # a string, or a number written as text
                Reason.INVALID_FIELD,
                kind.is_not_null() & ~kind.is_in(_NUMBER_TYPES),
                pl.format(f"{name} must be text, not {{}}", kind),
            )
        )
        rules.append(
            Rule(
                f"{name} fits",
                Reason.FIELD_TOO_LONG,
                text(name).str.len_chars() > limit,
                pl.format(f"{name} has {{}} characters (max {limit})", text(name).str.len_chars()),
            )
        )
        if name != "merchant":  # the only optional field
            rules.append(
                Rule(
                    f"{name} is present",
                    Reason.MISSING_FIELD,
                    text(name) == "",
                    pl.lit(f"{name} is missing or empty"),
                )
            )
    return rules


def storable_rule() -> Rule:
    """No text field holds a character a database cannot store (checked before any ML call)."""
    offending = pl.coalesce(
        [
            pl.when(text(name).str.contains(UNSTORABLE)).then(
                pl.format(
                    f"{name} holds the character U+00{{}}",
                    text(name).str.extract(f"({UNSTORABLE})").str.encode("hex").str.to_uppercase(),
                )
            )
            for name in TEXT_FIELDS
        ]
    )
    every_text = pl.concat_str([text(name) for name in TEXT_FIELDS], separator="\t")
    return Rule("text is storable", Reason.INVALID_TEXT, every_text.str.contains(UNSTORABLE),
                offending)  # fmt: skip


def amount_rules(rules: ValidationRules) -> list[Rule]:
    """The amount is present, a number, a decimal with a comma or a point, within bounds."""
    raw = pl.col("amount")
    kind = pl.col("amount_type")
    number = text("amount")
    cents = pl.col("amount_cents")  # `amount_cents(number)`, computed once by `prepare`
    low = math.ceil(rules.min_amount * 100)
    high = math.floor(rules.max_amount * 100)
    return [
        Rule(
            "amount is present",
            Reason.MISSING_FIELD,
            (raw.is_null() & kind.is_null()) | (raw.is_not_null() & (number == "")),
            pl.lit("amount is missing or empty"),
        ),  # fmt: skip
        Rule(
            "amount is a number",
            Reason.INVALID_AMOUNT,
            kind.is_not_null(),
            pl.format("amount of type {} is not a number", kind),
        ),  # fmt: skip
        Rule(
            "amount is a decimal",
            Reason.INVALID_AMOUNT,
            ~number.str.contains(AMOUNT_PATTERN),
            pl.format("amount {} is not a decimal number", _quoted(number)),
        ),  # fmt: skip
        Rule(
            "amount is within bounds",
            Reason.AMOUNT_OUT_OF_BOUNDS,
            cents.is_null() | ~cents.is_between(low, high),
            pl.format(
                f"amount {{}} outside [{rules.min_amount}, {rules.max_amount}]",
                number.str.replace(",", ".", literal=True),
            ),
        ),  # fmt: skip
    ]


def amount_cents(number: pl.Expr) -> pl.Expr:
    """The amount in cents; null past 16 integer digits (out of any bound we accept)."""
    plain = number.str.replace(",", ".", literal=True).str.replace(r"\A([+-]?)0+([0-9])", "$1$2")
    return (plain.cast(pl.Decimal(18, 2), strict=False) * 100).cast(pl.Int64)


def side_rule() -> Rule:
    """The side is debit or credit, in any case."""
    side = text("side").str.to_lowercase()
    return Rule("side is debit or credit", Reason.INVALID_SIDE, ~side.is_in(["debit", "credit"]),
                pl.format("side {} is not debit or credit", _quoted(text("side"))))  # fmt: skip


def timestamp_rules() -> list[Rule]:
    """The timestamp is ISO 8601 (see `timestamps`) and lies in [1900, 2200)."""
    moment = pl.col("occurred_at_us")
    low, high = micros(EARLIEST), micros(LATEST)
    stamp = _quoted(text("timestamp"))
    return [
        Rule(
            "timestamp is ISO 8601",
            Reason.INVALID_TIMESTAMP,
            moment.is_null(),
            pl.format("timestamp {} is not ISO 8601", stamp),
        ),  # fmt: skip
        Rule(
            "timestamp is in range",
            Reason.INVALID_TIMESTAMP,
            ~moment.is_between(low, high - 1),
            pl.format(f"timestamp {{}} outside [{EARLIEST.year}, {LATEST.year})", stamp),
        ),  # fmt: skip
    ]


def rules_table(rules: ValidationRules) -> list[Rule]:
    """Every rule, in the order records are checked."""
    return [
        *field_rules(rules.max_text_length),
        storable_rule(),
        *amount_rules(rules),
        side_rule(),
        *timestamp_rules(),
    ]


class Checked(NamedTuple):
    """A checked chunk: its valid transactions and its rejects (row, reason, detail)."""

    valid: pl.DataFrame
    rejected: pl.DataFrame


_REJECTED_SCHEMA = {"row": pl.UInt32, "reason": pl.String, "detail": pl.String, "stage": pl.String}


class Validated(NamedTuple):
    """A transaction plus the non-blocking observations made while validating it."""

    transaction: Transaction
    warnings: tuple[str, ...] = ()
    new_operation_type: str | None = None


# The columns of a valid chunk, as the ports receive it.
VALID_COLUMNS = (
    "row", "id_hex", "id", "source_id", "description", "amount_cents", "occurred_at",
    "merchant", "operation_type", "side", "sign_disagrees", "new_operation_type", "utc_offset_s",
)  # fmt: skip


class Validator:
    """Applies the rules to chunks (columns) or, for one record, raises InvalidRecord."""

    def __init__(self, rules: ValidationRules | None = None) -> None:
        self.rules = rules or ValidationRules()
        self.table = rules_table(self.rules)
        self._zone = self.rules.default_timezone
        # The combined expressions are built once: building them costs more than running them
        # on a small stream batch.
        self._first_failed = pl.coalesce(
            [pl.when(rule.fails).then(pl.lit(n, pl.UInt16)) for n, rule in enumerate(self.table)]
        )
        reason = detail = pl.lit(None, pl.String)
        for n, rule in reversed(list(enumerate(self.table))):  # inside out: first rule first
            reason = pl.when(pl.col("failed") == n).then(pl.lit(str(rule.reason))).otherwise(reason)
            detail = pl.when(pl.col("failed") == n).then(rule.detail).otherwise(detail)
        self._reason, self._detail = reason, detail
        self._stripped = [stripped(name).alias(f"{name}_text") for name in (*TEXT_FIELDS, "amount")]

    def prepare(self, raw: pl.DataFrame) -> pl.DataFrame:
        """The raw chunk with what the rules read, computed once: stripped texts, the amount
        in cents, the timestamp as UTC microseconds."""
        # One query for the steps (an eager step is a query of its own: ~0.3 ms each on a
        # small stream batch, whatever its size).
        raw = raw_frame(raw)
        frame = (
            raw.lazy()
            .with_row_index("row")
            .with_columns(self._stripped)
            .with_columns(amount_cents=amount_cents(text("amount")))
        )
        return parse_timestamps(frame, self._zone, plan=timestamp_plan(raw["timestamp"]))

    def check(self, raw: pl.DataFrame) -> Checked:
        """Validate every row of a raw chunk (see `pipeline.domain.chunks`) at once.

        Every rule is a cheap yes/no on every row; reasons and details are worked out only for
        the rows that failed one.
        """
        frame = self.prepare(raw).with_columns(failed=self._first_failed)
        parsed = pl.col("parse_error").is_null()
        bad = frame.filter(pl.col("failed").is_not_null() | ~parsed)
        if bad.is_empty():
            rejected = pl.DataFrame(schema=_REJECTED_SCHEMA)
        else:
            rejected = bad.select(
                "row",
                reason=pl.when(parsed).then(self._reason).otherwise(pl.col("parse_reason")),
                detail=pl.when(parsed).then(self._detail).otherwise(pl.col("parse_error")),
                stage=pl.when(parsed).then(pl.lit("validate")).otherwise(pl.lit("parse")),
            )
        valid = self._transactions(frame.lazy().filter(pl.col("failed").is_null() & parsed))
        return Checked(valid, rejected)

    def _transactions(self, frame: pl.LazyFrame) -> pl.DataFrame:
        cents = pl.col("amount_cents")
        side = text("side").str.to_lowercase()
        selected = frame.select(
            "row",
            source_id=text("id"),
            description=text("description"),
            amount_cents=cents,
            occurred_at=pl.col("occurred_at_us").cast(pl.Datetime("us", "UTC")),
            utc_offset_s="utc_offset_s",
            merchant=pl.when(text("merchant") != "").then(text("merchant")),
            operation_type=text("operation_type"),
            side=side,
            sign_disagrees=((side == "debit") & (cents > 0)) | ((side == "credit") & (cents < 0)),
            new_operation_type=~text("operation_type").is_in(
                sorted(self.rules.known_operation_types)
            ),
        ).collect()
        keys = transaction_keys(selected["source_id"])
        lazy = selected.lazy().with_columns(keys).with_columns(id=uuid_text(pl.col("id_hex")))
        return lazy.select(VALID_COLUMNS).collect()

    def validate(self, record: RawRecord) -> Validated:
        """Validate one record (the same rules); raise InvalidRecord with its reason."""
        checked = self.check(records_frame([record]))
        if checked.rejected.height:
            reason, detail = checked.rejected.row(0)[1:3]
            raise InvalidRecord(Reason(reason), detail)
        [transaction] = transactions(checked.valid)
        row = checked.valid.row(0, named=True)
        warnings = (RecordWarning.SIGN_DISAGREES_WITH_SIDE,) if row["sign_disagrees"] else ()
        new_type = transaction.operation_type if row["new_operation_type"] else None
        return Validated(transaction, warnings, new_type)
