"""The columnar rules against the row-by-row oracle (tests/oracle.py), on generated dirty rows:
the same rows valid, the same reason for each reject, the same transaction for each valid row."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.domain.chunks import records_frame
from pipeline.domain.errors import InvalidRecord
from pipeline.domain.fingerprints import content_sha256
from pipeline.domain.frames import transactions
from pipeline.domain.ids import transaction_keys, transaction_uuid
from pipeline.domain.model import RawRecord, SourcePosition, content_fingerprint
from pipeline.domain.timestamps import Plan, micros, parse_timestamps
from pipeline.domain.validation import PY_WHITESPACE, ValidationRules, Validator
from tests.oracle import RowOracle

SPACES = " \t\x1c\x1f\x85\xa0\u3000"
DIRTY = st.text(
    alphabet=st.characters(codec="utf-8") | st.sampled_from(SPACES + "\x00\x07\x1b\x7f;,.-+:T Z"),
    max_size=14,
)
NUMBER = st.one_of(st.integers(-(10**20), 10**20), st.floats(), st.booleans())
VALUE = st.one_of(DIRTY, st.none(), NUMBER, st.just({"a": 1}), st.just([1]))
AMOUNT = st.one_of(
    st.decimals(-(10**9), 10**9, places=2, allow_nan=False).map(str),
    st.decimals(-(10**9), 10**9, places=2, allow_nan=False).map(lambda d: str(d).replace(".", ",")),
    st.sampled_from(["1e999", "12.345", "+7.01", " -0,5 ", "00012", "99999999999999999999", "-0"]),
    st.integers(-(10**16), 10**16),
    VALUE,
)
STAMP = st.one_of(
    st.datetimes(timezones=st.none() | st.timezones()).map(lambda d: d.isoformat(sep=" ")),
    st.datetimes().map(lambda d: d.isoformat()),
    st.sampled_from(
        [
            "2024-02-30 10:00:00",
            "2024-02-29T08:00:00+01:00",
            "0001-01-01 00:00:00",
            "9999-12-31T23:59:59-14:00",
            "2023-01-01",
            "20230101T100000",
            "2023-01-01x10:00:00",
            "2023-01-01T10:00:00.1234567",
            "2023-01-01T24:00:00",
            "1899-12-31T23:59:59-01:00",
            "2199-12-31T23:59:59.999999",
            "2023-01-01 10:00:60",
            "2023-01-01T10:00:00+24:00",
            " 2023-01-01 10:00:00 ",
            "2023-W01-1",
            "2023-01-01T10:00:00,5",
        ]
    ),  # fmt: skip
    VALUE,
)
SIDE = st.one_of(
    st.sampled_from(["debit", "credit", "DEBIT", " Credit ", "up", "", "debİt"]), VALUE
)


@st.composite
def dirty_rows(draw: st.DrawFn) -> list[RawRecord]:
    rows = []
    for line in range(2, draw(st.integers(1, 30)) + 2):
        position = SourcePosition("f.csv", line=line)
        if draw(st.integers(0, 12)) == 0:
            rows.append(RawRecord(position, "junk", None, "bad row"))
            continue
        fields = {
            "id": draw(st.one_of(st.sampled_from(["1", " 2 ", "x" * 501]), VALUE)),
            "description": draw(st.one_of(st.just("Purchase"), VALUE)),
            "amount": draw(AMOUNT),
            "timestamp": draw(STAMP),
            "merchant": draw(st.one_of(st.none(), DIRTY, NUMBER)),
            "operation_type": draw(st.one_of(st.sampled_from(["payment", "refund"]), VALUE)),
            "side": draw(SIDE),
        }
        if draw(st.booleans()):
            fields["source_id"] = draw(st.one_of(st.just(""), VALUE))
        if draw(st.integers(0, 5)) == 0:
            del fields[draw(st.sampled_from(sorted(fields)))]
        rows.append(RawRecord(position, f"raw {line}", fields))
    return rows


RULES = [
    ValidationRules(),
    ValidationRules(Decimal("-100"), Decimal("100"), "Europe/Paris", 5),
]


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(dirty_rows(), st.sampled_from(RULES))
def test_the_columnar_rules_agree_with_the_row_by_row_oracle(
    rows: list[RawRecord], rules: ValidationRules
) -> None:
    checked = Validator(rules).check(records_frame(rows))
    oracle = RowOracle(rules)
    reasons = dict(checked.rejected.select("row", "reason").iter_rows())
    valid = {
        row: tx for row, tx in zip(checked.valid["row"], transactions(checked.valid), strict=True)
    }
    for index, record in enumerate(rows):
        try:
            expected = oracle.validate(record)
        except InvalidRecord as exc:
            assert reasons.get(index) == exc.reason, (record.fields, reasons.get(index))
            continue
        assert index in valid, (record.fields, reasons.get(index))
        got, want = valid[index], expected.transaction
        assert got == want._replace(timestamp=got.timestamp), (got, want)
        assert got.timestamp == want.timestamp and got.timestamp.utcoffset() == (
            want.timestamp.utcoffset()
        )


@settings(max_examples=200, deadline=None)
@given(st.lists(STAMP.map(lambda v: str(v).strip()), max_size=30), st.sampled_from(RULES))
def test_both_timestamp_plans_give_the_same_columns(
    stamps: list[str], rules: ValidationRules
) -> None:
    """The plan chosen for a chunk (plain tier first and the variants after, every tier in
    one query, or Python's parser row by row) never changes what is parsed."""
    frame = pl.DataFrame(
        {"row": range(len(stamps)), "timestamp_text": stamps},
        schema={"row": pl.UInt32, "timestamp_text": pl.String},
    )
    zone = rules.default_timezone
    plain_first = parse_timestamps(frame, zone, plan="plain_first")
    all_at_once = parse_timestamps(frame, zone, plan="all_at_once")
    row_by_row = parse_timestamps(frame, zone, plan="row_by_row")
    assert all_at_once.equals(plain_first), (stamps, plain_first, all_at_once)
    assert row_by_row.equals(plain_first), (stamps, plain_first, row_by_row)
    assert row_by_row.schema == plain_first.schema
    assert all_at_once.columns == [*frame.columns, "occurred_at_us", "utc_offset_s"]


@settings(max_examples=100, deadline=None)
@given(dirty_rows())
def test_fingerprints_and_ids_as_columns_equal_the_row_by_row_ones(rows: list[RawRecord]) -> None:
    checked = Validator().check(records_frame(rows))
    fingerprints = checked.valid.select(content_sha256())["content_sha256"].to_list()
    for transaction, fingerprint in zip(transactions(checked.valid), fingerprints, strict=True):
        assert fingerprint == content_fingerprint(transaction)
        assert transaction.timestamp.astimezone(UTC) == transaction.timestamp


@given(st.lists(st.one_of(DIRTY, st.uuids().map(str), st.uuids().map(lambda u: f"{{{u}}}"))))
def test_transaction_keys_equal_transaction_uuid(ids: list[str]) -> None:
    stripped = [text.strip() for text in ids]
    keys = transaction_keys(pl.Series(stripped, dtype=pl.String)).to_list()
    assert keys == [transaction_uuid(text).hex for text in stripped]


@pytest.mark.parametrize("plan", ["plain_first", "all_at_once", "row_by_row"])
def test_a_naive_summer_time_from_2100_on_keeps_the_zones_daylight_saving_time(plan: Plan) -> None:
    """polars' time zone data stops daylight saving time in 2100; Python's zoneinfo goes on
    applying the zone's rule, and every plan must say what Python says."""
    stamps = ["2099-07-01 12:00:00", "2100-07-01 12:00:00", "2150-01-01 12:00:00"]
    frame = pl.DataFrame({"row": [0, 1, 2], "timestamp_text": stamps})
    parsed = parse_timestamps(frame, "Europe/Paris", plan=plan)
    paris = ZoneInfo("Europe/Paris")
    expected = [datetime.fromisoformat(s).replace(tzinfo=paris) for s in stamps]
    assert parsed["utc_offset_s"].to_list() == [7200, 7200, 3600]
    assert parsed["occurred_at_us"].to_list() == [micros(moment) for moment in expected]


def test_the_stripped_whitespace_is_every_code_point_python_strips() -> None:
    """PY_WHITESPACE scans code points up to U+3000 only: none past it may be whitespace."""
    every = "".join(chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace())
    assert every == PY_WHITESPACE
