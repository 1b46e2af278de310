"""The fast schema of /predict accepts only what the full PredictItem model accepts."""

import json
import uuid
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ml_api.parsing import BatchParser
from ml_api.schemas import PredictItem

PARSER = BatchParser(max_batch=10, max_string_length=40)

amounts = st.one_of(
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
    st.from_regex(r"-?[0-9]{1,35}(\.[0-9]{0,35})?", fullmatch=True),
    st.text(max_size=12),
    st.booleans(),
    st.none(),
)
texts = st.one_of(st.text(max_size=45), st.none(), st.integers())
ids = st.one_of(
    st.uuids().map(str),
    st.uuids().map(lambda u: str(u).upper()),
    st.uuids().map(lambda u: u.hex),
    st.text(max_size=40),
)
stamps = st.one_of(
    st.datetimes().map(lambda d: d.isoformat()),
    st.just("2024-05-01T12:34:56.123456+00:00"),
    st.text(max_size=30),
)
items = st.fixed_dictionaries(
    {
        "id": ids,
        "description": texts,
        "amount": amounts,
        "timestamp": stamps,
        "operation_type": texts,
        "side": texts,
    },
    optional={"merchant": texts, "extra": texts},
)


def full_ids(body: bytes) -> list[uuid.UUID] | None:
    try:
        return [item.id for item in PARSER.parse(body)]
    except Exception:
        return None


@settings(max_examples=300, deadline=None)
@given(st.lists(items, max_size=12))
def test_ids_equal_the_full_models_answer_or_its_error(batch: list[dict[str, Any]]) -> None:
    body = json.dumps(batch).encode()
    expected = full_ids(body)
    try:
        got: list[uuid.UUID] | None = PARSER.ids(body)
    except Exception:
        got = None
    assert got == expected


def test_plain_numerals_are_taken_by_the_fast_schema() -> None:
    item = {
        "id": str(uuid.uuid4()),
        "description": "d",
        "amount": "-720.98",
        "timestamp": "2024-05-01T12:34:56.123456+00:00",
        "operation_type": "card_payment",
        "side": "debit",
    }
    body = json.dumps([item, {**item, "amount": 12}, {**item, "amount": -3.75}])
    assert len(PARSER._fast.validate_json(body)) == 3


def test_fast_schema_has_the_models_fields_and_types_but_the_amount() -> None:
    # A field or constraint added to PredictItem must be added to the fast schema too.
    fast = PARSER._fast_item_type.__annotations__
    assert fast.keys() == PredictItem.model_fields.keys()
    for name, info in PredictItem.model_fields.items():
        assert not info.metadata, f"{name}: constraints the fast schema lacks"
        if name == "merchant":
            assert str(fast[name]) == "typing.NotRequired[str | None]"
            assert info.annotation == str | None
        elif name != "amount":
            assert fast[name] == info.annotation, name
