from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID, uuid5

import pytest

from pipeline.domain.errors import InvalidRecord
from pipeline.domain.ids import TRANSACTION_NAMESPACE, transaction_uuid
from pipeline.domain.model import RawRecord, Side, SourcePosition
from pipeline.domain.validation import ValidationRules, Validator

GOOD = {
    "id": "42",
    "description": "Card expense at EDF",
    "amount": "-952,40",
    "timestamp": "2023-11-28 06:35:12",
    "merchant": "EDF",
    "operation_type": "refund",
    "side": "debit",
}


def record(**changes: object) -> RawRecord:
    fields = {**GOOD, **changes}
    return RawRecord(SourcePosition("f.csv", line=2), "raw", fields)


def reason_of(rec: RawRecord, validator: Validator | None = None) -> str:
    with pytest.raises(InvalidRecord) as caught:
        (validator or Validator()).validate(rec)
    return caught.value.reason


def test_integer_id_maps_to_uuid5_of_the_project_namespace() -> None:
    for source_id in [*map(str, range(5000)), "abc", "é-ü", "x" * 300]:
        expected = uuid5(TRANSACTION_NAMESPACE, source_id)
        mapped = transaction_uuid(source_id)
        assert mapped == expected
        assert (str(mapped), hash(mapped), mapped.version) == (str(expected), hash(expected), 5)
    assert transaction_uuid(" 42 ") == transaction_uuid("42")
    assert transaction_uuid("42") != transaction_uuid("43")


def test_uuid_id_is_kept_as_is() -> None:
    text = "0b6f7a3c-9f55-4e2a-8a55-2f7d4c1e9a10"
    assert transaction_uuid(text) == UUID(text)
    assert Validator().validate(record(id=text)).transaction.id == UUID(text)


def test_valid_french_row_becomes_a_transaction() -> None:
    transaction = Validator().validate(record()).transaction
    assert transaction.amount == Decimal("-952.40")
    assert transaction.timestamp == datetime(2023, 11, 28, 6, 35, 12, tzinfo=UTC)
    assert transaction.side is Side.DEBIT
    assert transaction.source_id == "42"
    assert transaction.merchant == "EDF"


@pytest.mark.parametrize("amount", ["12.50", "12,5", "-3", "+7.01", 12.5, 3])
def test_amount_accepts_comma_point_and_json_numbers(amount: object) -> None:
    validated = Validator().validate(record(amount=amount, side="credit"))
    assert validated.transaction.amount == Decimal(str(amount).replace(",", "."))


@pytest.mark.parametrize("amount", ["abc", "1.2.3", "1,234.56", "12.345", "", "NaN", "1e5", True])
def test_bad_amount_is_rejected(amount: object) -> None:
    assert reason_of(record(amount=amount)) in {"invalid_amount", "missing_field"}


def test_amount_outside_configured_bounds_is_rejected() -> None:
    validator = Validator(ValidationRules(min_amount=Decimal(-100), max_amount=Decimal(100)))
    assert reason_of(record(amount="-100,01"), validator) == "amount_out_of_bounds"
    assert validator.validate(record(amount="-100")).transaction.amount == Decimal(-100)


def test_iso_timestamps_keep_their_offset_and_naive_ones_use_the_configured_zone() -> None:
    aware = Validator().validate(record(timestamp="2024-01-02T03:04:05+02:00")).transaction
    assert aware.timestamp.utcoffset() == timedelta(hours=2)
    paris = Validator(ValidationRules(default_timezone="Europe/Paris"))
    naive = paris.validate(record(timestamp="2024-01-02 03:04:05")).transaction
    assert naive.timestamp.astimezone(UTC).hour == 2
    z = Validator().validate(record(timestamp="2024-01-02T03:04:05Z")).transaction
    assert z.timestamp.tzinfo is not None


@pytest.mark.parametrize("stamp", ["28/11/2023", "2023-13-01 00:00:00", "yesterday"])
def test_unparseable_timestamp_is_rejected(stamp: str) -> None:
    assert reason_of(record(timestamp=stamp)) == "invalid_timestamp"


def test_side_is_case_insensitive_and_unknown_side_rejected() -> None:
    assert Validator().validate(record(side="CREDIT", amount="5")).transaction.side is Side.CREDIT
    assert reason_of(record(side="sideways")) == "invalid_side"


@pytest.mark.parametrize(
    "name", ["id", "description", "amount", "timestamp", "operation_type", "side"]
)
def test_missing_or_blank_required_field_is_rejected(name: str) -> None:
    assert reason_of(record(**{name: "  "})) == "missing_field"
    fields = {k: v for k, v in GOOD.items() if k != name}
    assert reason_of(RawRecord(SourcePosition("f"), "raw", fields)) == "missing_field"


def test_empty_merchant_becomes_none() -> None:
    assert Validator().validate(record(merchant="")).transaction.merchant is None
    fields = {k: v for k, v in GOOD.items() if k != "merchant"}
    assert (
        Validator().validate(RawRecord(SourcePosition("f"), "r", fields)).transaction.merchant
        is None
    )


def test_unseen_operation_type_is_counted_not_rejected() -> None:
    validated = Validator().validate(record(operation_type="card_payment"))
    assert validated.new_operation_type == "card_payment"
    assert Validator().validate(record()).new_operation_type is None


def test_sign_that_disagrees_with_side_is_a_warning() -> None:
    assert Validator().validate(record(amount="10", side="debit")).warnings == (
        "sign_disagrees_with_side",
    )
    assert Validator().validate(record(amount="-10", side="debit")).warnings == ()


def test_malformed_record_and_oversized_text_are_rejected() -> None:
    malformed = RawRecord(SourcePosition("f", line=3), "1;2", None, "expected 7 fields, found 2")
    assert reason_of(malformed) == "malformed_row"
    assert reason_of(record(description="x" * 501)) == "field_too_long"
    assert reason_of(record(description={"nested": 1})) == "invalid_field"
