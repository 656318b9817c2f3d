"""TOS notifications read into hints (pure): the template's format, its unknowns, and
whatever else a feed may carry."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dropzone.events.notification import Hint, key_spellings, parse


def event(name: str = "tos:ObjectCreated:Put", **object_fields: object) -> dict[str, object]:
    fields = {"key": "in/a.jsonl", "eTag": '"d41d8"', "size": 12, **object_fields}
    return {
        "eventName": name,
        "eventTime": "2026-12-03T10:00:00Z",
        "tos": {"bucket": {"name": "data"}, "object": fields},
    }


def body(*events: object) -> bytes:
    return json.dumps({"events": list(events)}).encode()


def test_the_template_format_gives_one_hint_per_created_object() -> None:
    read = parse(body(event(), event(key="in/b.jsonl", eTag="e2", size=3)))
    assert read.hints == [
        Hint("data", ("in/a.jsonl",), "tos:ObjectCreated:Put", "d41d8", 12),
        Hint("data", ("in/b.jsonl",), "tos:ObjectCreated:Put", "e2", 3),
    ]
    assert (read.ignored, read.malformed) == (0, [])


def test_other_events_are_ignored_and_an_append_is_marked() -> None:
    read = parse(
        body(
            event("tos:ObjectRemoved:Delete"),
            event("tos:ObjectCreated:AppendObject"),
            event("ObjectCreated:CompleteMultipartUpload"),
        )
    )
    assert read.ignored == 1
    assert [(hint.event, hint.appended) for hint in read.hints] == [
        ("tos:ObjectCreated:AppendObject", True),
        ("ObjectCreated:CompleteMultipartUpload", False),
    ]


@pytest.mark.parametrize(
    ("sent", "spellings"),
    [
        ("in/a.jsonl", ("in/a.jsonl",)),
        ("in/a+b.jsonl", ("in/a+b.jsonl", "in/a b.jsonl")),
        ("in/a%20b.jsonl", ("in/a%20b.jsonl", "in/a b.jsonl")),
        ("in/%E6%97%A5.jsonl", ("in/%E6%97%A5.jsonl", "in/日.jsonl")),
        ("in/a%2Bb+c.jsonl", ("in/a%2Bb+c.jsonl", "in/a+b c.jsonl", "in/a+b+c.jsonl")),
        ("in/日 本.jsonl", ("in/日 本.jsonl",)),
    ],
)
def test_a_key_is_looked_up_as_sent_and_as_decoded(sent: str, spellings: tuple[str, ...]) -> None:
    assert key_spellings(sent) == spellings
    (hint,) = parse(body(event(key=sent))).hints
    assert hint.keys == spellings


@pytest.mark.parametrize(
    ("etag", "plain"), [('"abc"', "abc"), ("abc", "abc"), ('""', None), (None, None), (7, None)]
)
def test_an_etag_quoted_or_not_and_a_missing_one(etag: object, plain: str | None) -> None:
    (hint,) = parse(body(event(eTag=etag))).hints
    assert hint.etag == plain


def test_a_single_event_without_the_list_is_read_too() -> None:
    (hint,) = parse(json.dumps(event()).encode()).hints
    assert hint.keys == ("in/a.jsonl",)


@pytest.mark.parametrize(
    ("message", "kinds"),
    [
        (b"\xff\xfe not json", ["not JSON"]),
        (b"{", ["not JSON"]),
        (b"[]", ["no events list"]),
        (b'{"events": {}}', ["no events list"]),
        (body("x", {"eventTime": "t"}), ["event not an object", "event without eventName"]),
        (body({"eventName": "tos:ObjectCreated:Put", "tos": {}}), ["event without bucket name"]),
        (
            body({"eventName": "tos:ObjectCreated:Put", "tos": {"bucket": {"name": "b"}}}),
            ["event without object key"],
        ),
        (body(event(key="")), ["event without object key"]),
    ],
)
def test_malformed_messages_and_events_are_named_by_kind(message: bytes, kinds: list[str]) -> None:
    read = parse(message)
    assert read.hints == []
    assert read.malformed == kinds


def test_a_malformed_event_spoils_nothing_beside_it() -> None:
    read = parse(body(event(), {"eventName": 3}, event(key="in/c.jsonl")))
    assert [hint.keys for hint in read.hints] == [("in/a.jsonl",), ("in/c.jsonl",)]
    assert read.malformed == ["event without eventName"]


def test_a_size_that_is_not_a_whole_number_is_unknown() -> None:
    sizes = [parse(body(event(size=s))).hints[0].size for s in ("12", 1.5, True, None, 0)]
    assert sizes == [None, None, None, None, 0]


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda kids: st.lists(kids) | st.dictionaries(st.text(), kids),
        max_leaves=20,
    )
)
def test_any_json_at_all_never_raises(document: object) -> None:
    read = parse(json.dumps({"events": [document]}))
    assert len(read.hints) + read.ignored + len(read.malformed) == 1
