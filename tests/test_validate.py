"""Preflight validation: exact messages per defect, streaming limits, chunking invariance."""

from __future__ import annotations

import io
import json
import os
import tracemalloc
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dropzone.commands.validate import validate_files
from dropzone.preflight import ids as preflight_ids
from dropzone.preflight.ids import FirstLines
from dropzone.preflight.jsonl import MAX_FILE_BYTES, MAX_LINE_BYTES, validate_path, validate_stream
from dropzone.preflight.report import Problem, Report

if TYPE_CHECKING:
    from collections.abc import Sequence

OK_A = b'{"custom_id": "a", "body": {"messages": [{"role": "user", "content": "hi"}]}}'
OK_B = b'{"custom_id": "b", "body": {}}'
OK_C = b'{"custom_id": "c", "body": {"max_tokens": 5}}'
BOM = b"\xef\xbb\xbf"


class Chunked:
    """A stream whose reads return at most the next of ``sizes`` bytes, cycling."""

    def __init__(self, data: bytes, sizes: Sequence[int]) -> None:
        self._data = data
        self._sizes = sizes
        self._reads = 0
        self._position = 0

    def read(self, size: int, /) -> bytes:
        size = min(size, self._sizes[self._reads % len(self._sizes)])
        self._reads += 1
        piece = self._data[self._position : self._position + size]
        self._position += len(piece)
        return piece


class Generated:
    """A stream made of parts (unit, repeat), produced read by read, never held whole."""

    def __init__(self, *parts: tuple[bytes, int]) -> None:
        self._parts = [(unit, len(unit) * repeat) for unit, repeat in parts if repeat]
        self._index = 0
        self._offset = 0  # within the current part
        self.size = sum(length for _, length in self._parts)

    def read(self, size: int, /) -> bytes:
        out: list[bytes] = []
        while size > 0 and self._index < len(self._parts):
            unit, length = self._parts[self._index]
            take = min(size, length - self._offset)
            start = self._offset % len(unit)
            out.append((unit * ((start + take) // len(unit) + 1))[start : start + take])
            size -= take
            self._offset += take
            if self._offset == length:
                self._index += 1
                self._offset = 0
        return b"".join(out)


class Unreadable:
    """A stream that must not be read."""

    def read(self, size: int, /) -> bytes:
        raise AssertionError(f"read({size}) called")


def lines(*rows: bytes, end: bytes = b"\n") -> bytes:
    return b"".join(row + end for row in rows)


def check(data: bytes) -> Report:
    return validate_stream(io.BytesIO(data))


class Case(NamedTuple):
    proves: str
    data: bytes
    lines: int
    problems: tuple[tuple[int | None, str], ...]


CASES = {
    "valid": Case(
        "well-formed requests pass, and every line is counted",
        lines(OK_A, OK_B, OK_C),
        3,
        (),
    ),
    "empty file": Case("a file of no bytes has no requests", b"", 0, ((None, "file is empty"),)),
    "bad json": Case(
        "a syntax error names the line and the column where parsing stopped",
        lines(OK_A, OK_B, b'{"custom_id": "c" "body": {}}'),
        3,
        ((3, "not valid JSON: Expecting ',' delimiter at column 19"),),
    ),
    "truncated json": Case(
        "a line cut short is a syntax error at its end",
        lines(b'{"custom_id": "a", "body": {}'),
        1,
        ((1, "not valid JSON: Expecting ',' delimiter at column 30"),),
    ),
    "trailing data": Case(
        "text after the object is an error, as a strict parser sees it",
        lines(b'{"custom_id": "a", "body": {}} x'),
        1,
        ((1, "not valid JSON: Extra data at column 32"),),
    ),
    "nan": Case(
        "NaN, which Python's json would accept, is not JSON",
        lines(b'{"custom_id": "a", "body": {"t": NaN}}'),
        1,
        ((1, "not valid JSON: NaN is not a JSON value"),),
    ),
    "array": Case(
        "a line that is an array is not a request",
        lines(OK_A, b'[{"custom_id": "b", "body": {}}]'),
        2,
        ((2, "must be a JSON object, got an array"),),
    ),
    "scalars": Case(
        "each kind of scalar is named",
        lines(b'"a"', b"1.5", b"true", b"null"),
        4,
        (
            (1, "must be a JSON object, got a string"),
            (2, "must be a JSON object, got a number"),
            (3, "must be a JSON object, got a boolean"),
            (4, "must be a JSON object, got null"),
        ),
    ),
    "missing custom_id": Case(
        "custom_id is required",
        lines(b'{"body": {}}'),
        1,
        ((1, "custom_id is missing"),),
    ),
    "non-string custom_id": Case(
        "a numeric custom_id is refused, not coerced",
        lines(b'{"custom_id": 7, "body": {}}'),
        1,
        ((1, "custom_id must be a string, got a number"),),
    ),
    "empty custom_id": Case(
        "an empty string is no identifier",
        lines(b'{"custom_id": "", "body": {}}'),
        1,
        ((1, "custom_id is empty"),),
    ),
    "duplicate custom_id": Case(
        "a reused custom_id names both lines",
        lines(b'{"custom_id": "x", "body": {}}', OK_A, OK_B, OK_C, b"", b"", OK_A),
        7,
        ((5, "empty line"), (6, "empty line"), (7, 'custom_id "a" already used on line 2')),
    ),
    "duplicate unicode custom_id": Case(
        "ids are compared after JSON unescaping, and shown readably",
        lines(
            b'{"custom_id": "caf\\u00e9", "body": {}}', '{"custom_id": "café", "body": {}}'.encode()
        ),
        2,
        ((2, 'custom_id "café" already used on line 1'),),
    ),
    "duplicate lone surrogate": Case(
        "an id made of a lone surrogate escape is tracked and printable",
        lines(b'{"custom_id": "\\ud800", "body": {}}', b'{"custom_id": "\\ud800", "body": {}}'),
        2,
        ((2, 'custom_id "\\ud800" already used on line 1'),),
    ),
    "missing body": Case(
        "body is required; custom_id and body are checked independently",
        lines(b'{"custom_id": "a"}', b"{}"),
        2,
        ((1, "body is missing"), (2, "custom_id is missing"), (2, "body is missing")),
    ),
    "body not an object": Case(
        "body must be an object, not a string or an array",
        lines(b'{"custom_id": "a", "body": "hi"}', b'{"custom_id": "b", "body": []}'),
        2,
        (
            (1, "body must be a JSON object, got a string"),
            (2, "body must be a JSON object, got an array"),
        ),
    ),
    "invalid utf-8": Case(
        "bytes that are not UTF-8 are located by line, line offset and file offset",
        lines(OK_A, b'{"custom_id": "b", "body": {"x": "caf\xe9"}}'),
        2,
        (
            (
                2,
                (
                    "not valid UTF-8 at byte offset 37 of the line, offset 115 of the file "
                    "(e9: invalid continuation byte)"
                ),
            ),
        ),
    ),
    "encoded surrogate": Case(
        "UTF-8-encoded surrogates are not UTF-8 (json.loads on bytes would let them pass)",
        lines(b'{"custom_id": "a", "body": {"x": "\xed\xa0\x80"}}'),
        1,
        (
            (
                1,
                (
                    "not valid UTF-8 at byte offset 34 of the line, offset 34 of the file "
                    "(ed: invalid continuation byte)"
                ),
            ),
        ),
    ),
    "bom": Case(
        "a byte order mark is reported on line 1, and the rest of the file is still checked",
        BOM + lines(OK_A, b"{}"),
        2,
        (
            (1, "the file starts with a UTF-8 byte order mark (BOM); save it as UTF-8 without BOM"),
            (2, "custom_id is missing"),
            (2, "body is missing"),
        ),
    ),
    "crlf": Case(
        "CRLF line endings are accepted",
        lines(OK_A, OK_B, OK_C, end=b"\r\n"),
        3,
        (),
    ),
    "mixed line endings": Case(
        "LF and CRLF may even be mixed",
        OK_A + b"\r\n" + OK_B + b"\n" + OK_C + b"\r\n",
        3,
        (),
    ),
    "blank line in the middle": Case(
        "an empty line is an empty request, whatever the line ending",
        lines(OK_A, b"", OK_B, b"\r", OK_C),
        5,
        ((2, "empty line"), (4, "empty line")),
    ),
    "whitespace line": Case(
        "a line of spaces is not a request either",
        lines(OK_A, b" \t"),
        2,
        ((2, "a line of only whitespace"),),
    ),
    "blank line at the end": Case(
        "only one final newline ends the file; a second one is an empty line",
        lines(OK_A, OK_B) + b"\n",
        3,
        ((3, "empty line"),),
    ),
    "trailing newline": Case(
        "the final newline is a terminator, not an empty line",
        OK_A + b"\n",
        1,
        (),
    ),
    "no trailing newline": Case(
        "the last line may lack its newline",
        OK_A + b"\n" + OK_B,
        2,
        (),
    ),
    "surrounding whitespace": Case(
        "JSON whitespace around the object is allowed",
        lines(b'  {"custom_id": "a", "body": {}}\t'),
        1,
        (),
    ),
    "huge integer": Case(
        "an integer beyond Python's 4300-digit conversion limit is still valid JSON",
        lines(b'{"custom_id": "a", "body": {"n": ' + b"1" * 5000 + b"}}"),
        1,
        (),
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_messages(case: Case) -> None:
    """Each defect gives exactly the message listed, on the line listed (``Case.proves``)."""
    report = check(case.data)
    expected = tuple(Problem(line, message) for line, message in case.problems)
    assert report == Report(
        valid=not expected,
        lines=case.lines,
        bytes=len(case.data),
        problems=expected,
        total_problems=len(expected),
    ), case.proves


def test_first_problems_kept_all_counted() -> None:
    """Past 20 problems, only the first 20 are kept, but all are counted."""
    report = check(lines(*[b"[]"] * 25))
    assert not report.valid
    assert report.total_problems == 25
    assert [p.line for p in report.problems] == list(range(1, 21))
    assert (
        report.summary()
        == "invalid: 25 problems, first: line 1: must be a JSON object, got an array"
    )


def test_max_problems() -> None:
    """The number of problems kept is a parameter."""
    report = validate_stream(io.BytesIO(lines(*[b"[]"] * 5)), max_problems=2)
    assert (len(report.problems), report.total_problems) == (2, 5)


def test_summary_and_json() -> None:
    """The one-line summary and the report object carry the schema, totals and a hint."""
    valid = check(lines(OK_A))
    assert valid.summary() == "valid: 1 line"
    assert valid.to_json()["hint"] == "The file is valid."
    invalid = check(lines(*[b"{}"] * 11))
    assert invalid.summary() == "invalid: 22 problems, first: line 1: custom_id is missing"
    document = invalid.to_json()
    assert json.loads(json.dumps(document)) == document
    assert document["schema"] == "dropzone-error/1"
    assert (document["valid"], document["lines"], document["bytes"]) == (False, 11, 33)
    assert document["total_problems"] == 22
    assert document["problems"][:2] == [
        {"line": 1, "message": "custom_id is missing"},
        {"line": 1, "message": "body is missing"},
    ]
    assert len(document["problems"]) == 20
    assert "custom_id" in document["hint"]
    assert document["hint"].endswith("Only the first 20 problems are listed.")
    empty = check(b"").to_json()
    assert empty["problems"] == [{"line": None, "message": "file is empty"}]


def _long_line_stream(length: int) -> Generated:
    head = b'{"custom_id": "big", "body": {"content": "'
    return Generated(
        (OK_A + b"\n", 1),
        (head, 1),
        (b"x", length),
        (b'"}}\n', 1),
        (b'{"custom_id": "next"}\n', 1),
        (OK_B + b"\n", 1),
    )


@pytest.mark.parametrize(("limit", "message"), [(MAX_LINE_BYTES, "64 MiB"), (1024**2, "1 MiB")])
def test_long_line_skipped_and_next_line_checked(limit: int, message: str) -> None:
    """A 100 MB line is reported, and the lines after it are still checked. The stream is
    generated read by read and the line is never held whole: Python's allocations peak at
    about the line limit (what may be held until the line proves too long), not 100 MB."""
    stream = _long_line_stream(100 * 1024**2)
    tracemalloc.start()
    try:
        report = validate_stream(stream, max_line_bytes=limit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report == Report(
        valid=False,
        lines=4,
        bytes=stream.size,
        problems=(
            Problem(2, f"longer than {message}, the limit for one line; not checked"),
            Problem(3, "body is missing"),
        ),
        total_problems=2,
    )
    assert peak < limit + 4 * 1024**2


def test_long_line_at_the_end() -> None:
    """A long last line without a newline is still reported."""
    stream = Generated((OK_A + b"\n", 1), (b"x", MAX_LINE_BYTES + 1))
    report = validate_stream(stream)
    assert report.problems == (
        Problem(2, "longer than 64 MiB, the limit for one line; not checked"),
    )
    assert report.lines == 2


@pytest.mark.parametrize("sizes", [[1], [3, 7], [100], [4096]])
def test_line_limit_is_exact(sizes: list[int]) -> None:
    """A line of exactly the limit (counted before its newline, CR included) passes; one byte
    more is reported, however the reads fall."""
    limit = 40

    def request(custom_id: bytes, length: int) -> bytes:
        start = b'{"custom_id": "' + custom_id + b'", "body": {"x": "'
        return start + b"y" * (length - len(start) - 3) + b'"}}'

    fits, too_long = request(b"a", limit), request(b"b", limit + 1)
    crlf_fits = request(b"c", limit - 1) + b"\r"
    assert (len(fits), len(too_long), len(crlf_fits)) == (limit, limit + 1, limit)
    data = lines(fits, too_long, OK_B, crlf_fits)
    report = validate_stream(Chunked(data, sizes), max_line_bytes=limit)
    assert report.problems == (
        Problem(2, "longer than 40 bytes, the limit for one line; not checked"),
    )
    assert report.lines == 4


def test_declared_size_over_limit_not_read() -> None:
    """A declared size above 5 GiB fails at once, without a single read."""
    report = validate_stream(Unreadable(), declared_size=MAX_FILE_BYTES + 1)
    assert report == Report(
        valid=False,
        lines=0,
        bytes=0,
        problems=(Problem(None, f"file is larger than 5 GiB: {MAX_FILE_BYTES + 1} bytes"),),
        total_problems=1,
    )


def test_stream_over_limit_stops_reading() -> None:
    """A stream longer than the limit (size unknown or understated) stops being read at the
    first read past it; the lines before it were checked."""
    data = lines(*[b'{"custom_id": "%03d", "body": {}}' % n for n in range(100)])
    assert len(data) == 100 * 33
    report = validate_stream(Chunked(data, [500]), max_file_bytes=2048)
    assert report == Report(
        valid=False,
        lines=2000 // 33,
        bytes=2500,
        problems=(Problem(None, "file is larger than 2 KiB; stopped reading at 2500 bytes"),),
        total_problems=1,
    )


def test_declared_size_mismatch() -> None:
    """A stream shorter or longer than its declared size changed while it was read."""
    report = validate_stream(io.BytesIO(lines(OK_A)), declared_size=10)
    assert report.problems == (
        Problem(
            None, "read 78 bytes but the size was given as 10: the file changed while it was read"
        ),
    )


def test_duplicates_across_both_id_stores(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ids past the dict's capacity go to the compact store; duplicates are found between the
    two stores and within the compact one, with the right first line."""
    monkeypatch.setattr(preflight_ids, "_DICT_IDS", 3)
    ids = [f"id{i}" for i in range(1000)]
    ids += ["id1", "id500", "id999", "id500"]
    data = lines(*[json.dumps({"custom_id": i, "body": {}}).encode() for i in ids])
    report = check(data)
    assert [str(p) for p in report.problems] == [
        'line 1001: custom_id "id1" already used on line 2',
        'line 1002: custom_id "id500" already used on line 501',
        'line 1003: custom_id "id999" already used on line 1000',
        'line 1004: custom_id "id500" already used on line 501',
    ]


def test_compact_store_ignores_straddling_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    """In the compact store, a digest found across two entries is not a match."""
    monkeypatch.setattr(preflight_ids, "_DICT_IDS", 0)
    store = FirstLines()
    digest = b"\x00\x00" + b"\x01" * 8
    assert store._compact(digest, 1) == 1
    # Its bytes 5 to 12 (line number and the start of the next key) equal this key's.
    straddler = b"\x00\x00" + b"\x00" * 4 + b"\x02" * 4
    assert store._compact(b"\x00\x00" + b"\x02" * 4 + b"\x09" * 4, 2) == 2
    assert store._compact(straddler, 3) == 3
    assert store._compact(digest, 4) == 1


def test_validate_path_pipe() -> None:
    """A pipe has no size to declare: its content is checked without a size mismatch."""
    read_end, write_end = os.pipe()
    os.write(write_end, lines(OK_A))
    os.close(write_end)
    try:
        report = validate_path(Path(f"/dev/fd/{read_end}"))
    finally:
        os.close(read_end)
    assert report == Report(valid=True, lines=1, bytes=78, problems=(), total_problems=0)


def test_validate_path(tmp_path: Path) -> None:
    """A local file is read with its size declared; a missing one is a problem, not a crash."""
    path = tmp_path / "in.jsonl"
    path.write_bytes(lines(OK_A, OK_B))
    assert validate_path(path) == Report(
        valid=True, lines=2, bytes=path.stat().st_size, problems=(), total_problems=0
    )
    missing = tmp_path / "missing.jsonl"
    assert validate_path(missing).problems == (
        Problem(None, f"cannot read {missing}: No such file or directory"),
    )
    assert validate_path(tmp_path).problems == (
        Problem(None, f"cannot read {tmp_path}: Is a directory"),
    )


def test_command(tmp_path: Path) -> None:
    """`dropzone validate`: one verdict per file, the first 20 problems, the count of the rest,
    and exit code 1 when any file is invalid."""
    good = tmp_path / "good.jsonl"
    good.write_bytes(lines(OK_A, OK_B))
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(lines(OK_A, *[b"[]"] * 22, OK_A))
    missing = tmp_path / "missing.jsonl"
    out = io.StringIO()
    assert validate_files([str(good)], out) == 0
    assert out.getvalue() == f"{good}: valid (2 lines)\n"
    out = io.StringIO()
    assert validate_files([str(good), str(bad), str(missing)], out) == 1
    expected = [f"{good}: valid (2 lines)", f"{bad}: invalid"]
    expected += [f"  line {n}: must be a JSON object, got an array" for n in range(2, 22)]
    expected += [
        "  ... and 3 more",
        f"{missing}: invalid",
        f"  cannot read {missing}: No such file or directory",
    ]
    assert out.getvalue().splitlines() == expected


# --- properties ----------------------------------------------------------------------------

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
_BODIES = st.dictionaries(st.text(), _JSON, max_size=5)
_RECORDS = st.lists(st.tuples(st.text(min_size=1), _BODIES), max_size=30, unique_by=lambda r: r[0])
_CHUNKS = st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=8)


def _jsonl(
    records: list[tuple[str, dict[str, Any]]], *, crlf: bool, final_newline: bool, ascii_only: bool
) -> bytes:
    rows = [
        json.dumps({"custom_id": cid, "body": body}, ensure_ascii=ascii_only).encode()
        for cid, body in records
    ]
    data = (b"\r\n" if crlf else b"\n").join(rows)
    return data + (b"\r\n" if crlf else b"\n") if final_newline and rows else data


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_RECORDS, st.booleans(), st.booleans(), st.booleans(), _CHUNKS)
@pytest.mark.slow
def test_valid_records_validate_however_read(
    records: list[tuple[str, dict[str, Any]]],
    crlf: bool,
    final_newline: bool,
    ascii_only: bool,
    sizes: list[int],
) -> None:
    """Any list of well-formed records with unique ids, written as JSONL with either line
    ending, with or without a final newline, is valid with one line per record, read whole or
    in small reads that split UTF-8 sequences and CRLF pairs."""
    data = _jsonl(records, crlf=crlf, final_newline=final_newline, ascii_only=ascii_only)
    whole = check(data)
    if records:
        assert whole == Report(
            valid=True, lines=len(records), bytes=len(data), problems=(), total_problems=0
        )
    else:
        assert whole.problems == (Problem(None, "file is empty"),)
    assert validate_stream(Chunked(data, sizes)) == whole


_LINES = st.one_of(
    st.tuples(st.text(min_size=1, max_size=3), _BODIES).map(
        lambda r: json.dumps({"custom_id": r[0], "body": r[1]}, ensure_ascii=False).encode()
    ),
    st.sampled_from(
        [
            b"",
            b"\r",
            b" ",
            b"[]",
            b"{}",
            b'{"custom_id": 1}',
            b"{",
            BOM + OK_B,
            b"\xff",
            b"\xe2\x82",
            "é".encode(),
            OK_A,
        ]
    ),
    st.binary(max_size=12).map(lambda raw: raw.replace(b"\n", b"")),
)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.booleans(),
    st.lists(st.tuples(_LINES, st.sampled_from([b"\n", b"\r\n"])), max_size=25),
    st.binary(max_size=5).map(lambda raw: raw.replace(b"\n", b"")),
    _CHUNKS,
    st.sampled_from([MAX_LINE_BYTES, 30, 64]),
)
def test_report_independent_of_read_sizes(
    bom: bool,
    rows: list[tuple[bytes, bytes]],
    tail: bytes,
    sizes: list[int],
    max_line_bytes: int,
) -> None:
    """Whatever the content (bad bytes, empty lines, duplicates, long lines, a BOM), the report
    is the same when the stream arrives in small reads of any size as in the largest reads
    the line limit allows (the whole file, at the default limit)."""
    data = (BOM if bom else b"") + b"".join(row + end for row, end in rows) + tail
    whole = validate_stream(io.BytesIO(data), max_line_bytes=max_line_bytes)
    chunked = validate_stream(Chunked(data, sizes), max_line_bytes=max_line_bytes)
    assert chunked == whole
