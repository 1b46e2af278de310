"""A consumed batch parsed together gives exactly what decoding its events one by one gives.

The oracle is the one-by-one path (`to_record` per message, then `records_frame`), which the
consumer keeps for any batch that is not all canonical. Messages are real confluent-kafka
Message objects built in memory (no broker needed to decode).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
import polars as pl
import pytest
from confluent_kafka import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from pipeline.adapters.event_files import file_events, unreadable_event
from pipeline.adapters.kafka.batch_decode import WITH_SOURCE_ID, WITHOUT_SOURCE_ID, events_frame
from pipeline.adapters.kafka.consumer import to_record, to_records
from pipeline.domain.chunks import RecordBatch, chunk_of_records, records_frame
from pipeline.domain.model import Reason

TEXT = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "-12,50", "2024-01-02 03:04:05", 'a "quoted" \\ tab\t', "é€😀\u2028"]),
)
VALUE = st.one_of(st.none(), TEXT)


@st.composite
def canonical_event(draw: st.DrawFn, keys: tuple[str, ...] | None = None) -> bytes:
    """An event as the producer writes it: every key in order, text or null values."""
    keys = keys or draw(st.sampled_from([WITH_SOURCE_ID, WITHOUT_SOURCE_ID]))
    return orjson.dumps({key: draw(VALUE) for key in keys})


MUTATIONS = [
    lambda e: e[:-1] + b',"id":"other"}',  # a repeated key: which one wins?
    lambda e: e[:-1] + b',"merchant":null}',
    lambda e: e.replace(b'"amount":', b'"amount":12.5,"x":', 1),  # a number for a text field
    lambda e: e.replace(b'"id":', b'"id":7,"y":', 1),
    lambda e: e.replace(b'"side":', b'"side":true,"z":', 1),
    lambda e: e.replace(b'"description":', b'"description":{"a":"b"},"w":', 1),
    lambda e: e.replace(b'"merchant":', b'"merchant":["m"],"v":', 1),
    lambda e: e.replace(b":", b" : ", 1),  # spaces: valid JSON, not canonical
    lambda e: e[:-1] + b',"extra":"x"}',
    lambda e: orjson.dumps(dict(reversed(orjson.loads(e).items()))),  # keys in another order
    lambda e: e[:-1] + b',"extra":NaN}',
    lambda e: e.replace(b'"id"', b'"\\u0069d"', 1),  # an escaped key
    lambda e: e.replace(b'":"', b'":"\\ud800', 1),  # a lone surrogate
    lambda e: e.replace(b'":"', b'":"\\u00e9', 1),  # an escape the producer would not write
    lambda e: e + b"x",
    lambda e: e + b" " + e,  # two objects in one message
    lambda e: e[: len(e) // 2],
    lambda e: e.replace(b'":"', b'":"\xff', 1),  # not UTF-8
    lambda e: e.replace(b'":"', b'":"\n', 1),  # a raw line break in a string
    lambda e: e.replace(b",", b",\n", 1),  # a line break between members
    lambda e: b"\xef\xbb\xbf" + e,
    lambda e: b"[" + e + b"]",
    lambda e: b" " + e + b"\r",
    lambda _e: b"",
    lambda _e: b"   ",
    lambda _e: b"null",
    lambda _e: b'"text"',
    lambda _e: b"{}",
    lambda _e: unreadable_event("a;b", "too many fields", Reason.MALFORMED_ROW),
]


@st.composite
def dirty_event(draw: st.DrawFn) -> bytes:
    """A canonical event bent one way: most are still JSON, none is canonical any more."""
    keys = draw(st.sampled_from([WITH_SOURCE_ID, WITHOUT_SOURCE_ID]))
    event = {key: draw(VALUE) for key in keys} | {"id": draw(TEXT)}  # a `":"` to bend
    bend: Callable[[bytes], bytes] = draw(st.sampled_from(MUTATIONS))
    return bend(orjson.dumps(event))


def messages(values: list[bytes]) -> list[Message]:
    return [
        Message(topic="tx", partition=0, offset=i, key=b"k", value=v, timestamp=(1, 1000))
        for i, v in enumerate(values)
    ]


def one_by_one(values: list[bytes]) -> pl.DataFrame:
    return records_frame([to_record(message) for message in messages(values)])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(st.one_of(canonical_event(), dirty_event()), min_size=1, max_size=8))
def test_a_batch_parsed_together_is_what_decoding_each_event_gives(values: list[bytes]) -> None:
    frame = events_frame(values)
    if frame is not None:
        assert_frame_equal(frame, one_by_one(values))


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.sampled_from([WITH_SOURCE_ID, WITHOUT_SOURCE_ID]).flatmap(
        lambda keys: st.lists(canonical_event(keys), min_size=1, max_size=8)
    )
)
def test_canonical_events_of_one_shape_are_parsed_together(values: list[bytes]) -> None:
    frame = events_frame(values)
    assert frame is not None
    assert_frame_equal(frame, one_by_one(values))


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.lists(canonical_event(), max_size=6), dirty_event(), st.lists(canonical_event(), max_size=6)
)
def test_one_dirty_event_sends_the_batch_one_by_one(
    before: list[bytes], dirty: bytes, after: list[bytes]
) -> None:
    values = [*before, dirty, *after]
    assert events_frame(values) is None
    records = to_records(messages(values))
    assert not isinstance(records, RecordBatch)
    assert records == [to_record(message) for message in messages(values)]


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(canonical_event(WITH_SOURCE_ID), min_size=2, max_size=8))
def test_records_parsed_together_carry_the_same_fields_and_positions(values: list[bytes]) -> None:
    together = to_records(messages(values))
    alone = [to_record(message) for message in messages(values)]
    assert isinstance(together, RecordBatch)
    assert [r._replace(fields=dict(r.fields or {})) for r in together] == alone
    assert_frame_equal(chunk_of_records(together).frame, records_frame(alone))
    assert_frame_equal(chunk_of_records(together[1:]).frame, records_frame(alone[1:]))


def test_the_producers_events_are_parsed_together(tmp_path: Path) -> None:
    csv = tmp_path / "t.csv"
    csv.write_text(
        "id;description;amount;timestamp;merchant;operation_type;side\n"
        '1;"Card at ""EDF""";-952,40;2023-11-28 06:35:12;EDF;card;debit\n'
        '2;"Virement reçu";1200,00;2023-11-29 08:00:00;;transfer;credit\n'
        "3;too;few\n",
        encoding="utf-8",
    )
    values = [value for _key, value in file_events(csv)]
    assert isinstance(to_records(messages(values[:2])), RecordBatch)  # the two clean rows
    records = to_records(messages(values))  # with the short row's event: one by one
    assert not isinstance(records, RecordBatch)
    assert records == [to_record(message) for message in messages(values)]


def test_a_batch_frame_must_match_its_records() -> None:
    values = [orjson.dumps(dict.fromkeys(WITH_SOURCE_ID, "x"))] * 2
    records = [to_record(message) for message in messages(values)]
    with pytest.raises(ValueError, match="row for row"):
        RecordBatch(records[:1], records_frame(records))
    batch = RecordBatch(records, records_frame(records))
    assert type(batch[:1]) is list  # a part of a batch is framed again from its records
