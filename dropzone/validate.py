"""Preflight validation of batch input files: streaming JSONL checks in bounded memory.

Ark accepts a file and only finds a bad line after the job has started (the job then ends
``Failed``), so dropzone checks each file before submitting it: UTF-8 without a byte order
mark, one JSON object per line, ``custom_id`` a non-empty string unique in the file, ``body``
an object, and the size within Ark's limit.

Memory is bounded by one line (at most ``MAX_LINE_BYTES``) plus one read chunk, plus the
custom_id index, which cannot be constant: it grows by a fixed amount per line whatever the
ids' length, 66 MiB for a million lines (see ``_FirstLines``). The stream is read in
``CHUNK_BYTES`` pieces and never seeked, so a botocore ``StreamingBody`` works as well as a
local file.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn, Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import TextIO

MAX_FILE_BYTES: Final = 5 * 1024**3
# Ark publishes no line limit. 64 MiB holds any plausible request, including several images
# inlined as base64, while one such line held as bytes, as text and parsed stays within a few
# hundred MB. A longer line is reported and skipped without ever being held whole.
MAX_LINE_BYTES: Final = 64 * 1024**2
# Big enough that per-read overhead vanishes next to parsing; no bigger, as a read is held
# twice at once (as bytes and decoded).
CHUNK_BYTES: Final = 1024**2
MAX_PROBLEMS: Final = 20
SCHEMA: Final = "dropzone-error/1"

_BOM: Final = b"\xef\xbb\xbf"
_DICT_IDS: Final = 1 << 19
_ENTRY_BYTES: Final = 13
_JSON_SPACE: Final = " \t\r"
_HINT: Final = (
    'Each line must be one JSON object {"custom_id": "<unique string>", "body": {...}}, '
    "encoded as UTF-8 without a byte order mark, with no empty lines; the whole file must "
    "not exceed the size limit. Fix the lines listed and upload the file again; "
    "`dropzone validate FILE` runs the same checks locally."
)


class Readable(Protocol):
    """What is read: an open binary file, a botocore ``StreamingBody``, ..."""

    def read(self, size: int, /) -> bytes: ...


@dataclass(frozen=True)
class Problem:
    """One finding; ``line`` is 1-based, None for the file as a whole."""

    line: int | None
    message: str

    def __str__(self) -> str:
        return self.message if self.line is None else f"line {self.line}: {self.message}"


@dataclass(frozen=True)
class Report:
    """The outcome for one file; ``problems`` holds the first few of ``total_problems``."""

    valid: bool
    lines: int
    bytes: int
    problems: tuple[Problem, ...]
    total_problems: int

    def summary(self) -> str:
        if self.valid:
            return f"valid: {_count(self.lines, 'line')}"
        first = f", first: {self.problems[0]}" if self.problems else ""
        return f"invalid: {_count(self.total_problems, 'problem')}{first}"

    def to_json(self) -> dict[str, Any]:
        """The body of the ``<key>.dropzone-error.json`` report object."""
        hint = "The file is valid." if self.valid else _HINT
        if self.total_problems > len(self.problems):
            hint += f" Only the first {len(self.problems)} problems are listed."
        return {
            "schema": SCHEMA,
            "valid": self.valid,
            "lines": self.lines,
            "bytes": self.bytes,
            "total_problems": self.total_problems,
            "problems": [{"line": p.line, "message": p.message} for p in self.problems],
            "hint": hint,
        }


def validate_stream(
    stream: Readable,
    *,
    declared_size: int | None = None,
    max_problems: int = MAX_PROBLEMS,
    max_line_bytes: int = MAX_LINE_BYTES,
    max_file_bytes: int = MAX_FILE_BYTES,
) -> Report:
    """Read ``stream`` to its end (or to the size limit) and check it line by line.

    Read errors propagate: a failed read says nothing about the file, and the caller must not
    mark it invalid for that. ``max_file_bytes`` is there for Ark's 2 GiB individual-account
    limit; ``max_line_bytes`` mostly for tests.
    """
    if max_line_bytes < 1:
        raise ValueError(f"max_line_bytes must be at least 1, not {max_line_bytes}")
    checker = _Checker(max_problems)
    if declared_size is not None and declared_size > max_file_bytes:
        checker.problem(None, f"file is larger than {_size(max_file_bytes)}: {declared_size} bytes")
        return checker.report(0)
    reader = _Reader(stream, checker, max_line_bytes=max_line_bytes, max_file_bytes=max_file_bytes)
    read = reader.run()
    if read == 0:
        checker.problem(None, "file is empty")
    elif declared_size is not None and read != declared_size and not reader.stopped:
        checker.problem(
            None,
            f"read {read} bytes but the size was given as {declared_size}: "
            "the file changed while it was read",
        )
    return checker.report(read)


def validate_path(path: Path, *, max_problems: int = MAX_PROBLEMS) -> Report:
    """``validate_stream`` on a local file; an unreadable file is a problem, not an exception."""
    try:
        # Unbuffered: the validator reads big chunks itself, a buffer would only add a copy.
        with path.open("rb", buffering=0) as file:
            status = os.fstat(file.fileno())
            # Pipes and devices (`dropzone validate /dev/stdin`) report no meaningful size.
            size = status.st_size if stat.S_ISREG(status.st_mode) else None
            return validate_stream(file, declared_size=size, max_problems=max_problems)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return Report(
            valid=False,
            lines=0,
            bytes=0,
            problems=(Problem(None, f"cannot read {path}: {reason}"),),
            total_problems=1,
        )


def command(paths: Sequence[str], out: TextIO) -> int:
    """``dropzone validate FILE...``: 0 when every file is valid, 1 otherwise."""
    all_valid = True
    for name in paths:
        report = validate_path(Path(name))
        if report.valid:
            print(f"{name}: valid ({_count(report.lines, 'line')})", file=out)
            continue
        all_valid = False
        print(f"{name}: invalid", file=out)
        for problem in report.problems:
            print(f"  {problem}", file=out)
        if report.total_problems > len(report.problems):
            print(f"  ... and {report.total_problems - len(report.problems)} more", file=out)
    return 0 if all_valid else 1


# --- reading -------------------------------------------------------------------------------


class _Reader:
    """Cuts the stream into blocks of whole lines for ``_Checker``.

    A block is everything up to the last newline of a read, with the unfinished line carried
    over; newlines never occur inside a multi-byte UTF-8 sequence, so a block always decodes
    on its own. A carried line that grows past the limit is dropped and the rest of it is
    skipped up to its newline, so it never sits in memory whole.
    """

    def __init__(
        self, stream: Readable, checker: _Checker, *, max_line_bytes: int, max_file_bytes: int
    ) -> None:
        self._read = stream.read
        self._checker = checker
        self._max_line = max_line_bytes
        self._max_file = max_file_bytes
        # No read may exceed the line limit, so that a line lying wholly inside one read is
        # short enough by construction and only carried lines need measuring.
        self._chunk = min(CHUNK_BYTES, max_line_bytes)
        self.total = 0  # bytes read
        self.stopped = False  # reading stopped at the size limit
        self._position = 0  # file offset of the next byte fed
        self._carry: list[bytes] = []  # the unfinished line, in pieces
        self._carry_len = 0
        self._carry_at = 0
        self._skipping = False  # in a line that is too long

    def run(self) -> int:
        for piece in self._start():
            self._feed(piece)
        while not self.stopped:
            piece = self._next()
            if not piece:
                break
            self._feed(piece)
        if not self.stopped:
            self._finish()
        return self.total

    def _next(self) -> bytes:
        piece = self._read(self._chunk)
        self.total += len(piece)
        if self.total > self._max_file:
            self._checker.problem(
                None,
                f"file is larger than {_size(self._max_file)}; "
                f"stopped reading at {self.total} bytes",
            )
            self.stopped = True
            return b""
        return piece

    def _start(self) -> list[bytes]:
        """The first pieces, with a byte order mark removed (and reported)."""
        pieces: list[bytes] = []
        while sum(map(len, pieces)) < len(_BOM):
            piece = self._next()
            if not piece:
                break
            pieces.append(piece)
        if not b"".join(pieces).startswith(_BOM):
            return pieces
        # RFC 8259 forbids writing a BOM and only allows parsers to ignore one; Python's json
        # and Go's encoding/json both reject it. Ark's parser is unpublished and a line it
        # cannot parse fails the job after it started, so the BOM is an error. The rest of
        # line 1 is still checked, to list every problem in one pass.
        self._checker.problem(
            1, "the file starts with a UTF-8 byte order mark (BOM); save it as UTF-8 without BOM"
        )
        self._position = len(_BOM)
        return [b"".join(pieces)[len(_BOM) :]]

    def _feed(self, piece: bytes) -> None:
        at = self._position
        self._position += len(piece)
        if self._skipping:
            newline = piece.find(b"\n")
            if newline < 0:
                return
            self._skipping = False
            self._checker.long_line(self._max_line)
            piece = piece[newline + 1 :]
            at += newline + 1
        last = piece.rfind(b"\n")
        if last < 0:
            self._hold(piece, at)
            return
        block, block_at = piece[: last + 1], at
        if self._carry:
            newline = piece.find(b"\n")
            if self._carry_len + newline > self._max_line:
                self._checker.long_line(self._max_line)
                block, block_at = piece[newline + 1 : last + 1], at + newline + 1
            else:
                block, block_at = b"".join([*self._carry, block]), self._carry_at
            self._carry.clear()
            self._carry_len = 0
        if block:
            self._checker.block(block, block_at, final=False)
        if last + 1 < len(piece):
            self._hold(piece[last + 1 :], at + last + 1)

    def _hold(self, piece: bytes, at: int) -> None:
        if not piece:
            return
        if not self._carry:
            self._carry_at = at
        self._carry.append(piece)
        self._carry_len += len(piece)
        if self._carry_len > self._max_line:
            self._carry.clear()
            self._carry_len = 0
            self._skipping = True

    def _finish(self) -> None:
        """The end of the stream: the last line may have no newline."""
        if self._skipping:
            self._checker.long_line(self._max_line)
        elif self._carry:
            self._checker.block(b"".join(self._carry), self._carry_at, final=True)


# --- checking ------------------------------------------------------------------------------


def _reject_constant(name: str) -> NoReturn:
    # Python's json reads NaN and Infinity; JSON has no such values and strict parsers refuse
    # them.
    raise ValueError(f"{name} is not a JSON value")


def _any_int(_digits: str) -> int:
    # Python refuses to convert integers longer than 4300 digits; they are still valid JSON,
    # and nothing needs their value.
    return 0


class _Checker:
    """Checks whole lines and keeps the tallies: line count, problems, custom_ids seen."""

    def __init__(self, max_problems: int) -> None:
        self.lines = 0
        self._max_problems = max_problems
        self._problems: list[Problem] = []
        self._total_problems = 0
        self._ids = _FirstLines()
        # raw_decode instead of json.loads: no whitespace regex around each call, which is a
        # fifth of the time per line; anything unusual goes to _check_slowly, which parses with
        # the full rules again and words the message.
        self._fast = json.JSONDecoder(parse_constant=_reject_constant).raw_decode
        self._strict = json.JSONDecoder(parse_constant=_reject_constant, parse_int=_any_int).decode

    def problem(self, line: int | None, message: str) -> None:
        self._total_problems += 1
        if len(self._problems) < self._max_problems:
            self._problems.append(Problem(line, message))

    def report(self, size: int) -> Report:
        return Report(
            valid=self._total_problems == 0,
            lines=self.lines,
            bytes=size,
            problems=tuple(self._problems),
            total_problems=self._total_problems,
        )

    def long_line(self, limit: int) -> None:
        self.lines += 1
        self.problem(self.lines, f"longer than {_size(limit)}, the limit for one line; not checked")

    def block(self, data: bytes, at: int, *, final: bool) -> None:
        """Whole lines, each ending in a newline, except when ``final`` (the end of the file).

        ``at`` is the block's offset in the file, for pointing at bad bytes.
        """
        # Decoding the block as a whole is the UTF-8 check, at memory speed; json.loads on
        # bytes would not do: it guesses UTF-16 and UTF-32 and lets encoded surrogates pass.
        try:
            text = data.decode()
        except UnicodeDecodeError:
            self._block_by_line(data, at, final=final)
            return
        if "\r" in text:
            # Only for CRLF files: replace() scans even when it finds nothing, at a cost of
            # almost a microsecond a line on text that is not pure ASCII.
            text = text.replace("\r\n", "\n")
        lines = text.split("\n")
        if not final:
            lines.pop()  # the empty string after the last newline
        self._check(lines)

    def _block_by_line(self, data: bytes, at: int, *, final: bool) -> None:
        """The same as ``block``, line by line, to locate the bytes that are not UTF-8."""
        raws = data.split(b"\n")
        if not final:
            raws.pop()
        for index, raw in enumerate(raws):
            try:
                text = raw.decode()
            except UnicodeDecodeError as exc:
                self.lines += 1
                bad = raw[exc.start : exc.end].hex(" ")
                self.problem(
                    self.lines,
                    f"not valid UTF-8 at byte offset {exc.start} of the line, offset "
                    f"{at + exc.start} of the file ({bad}: {exc.reason})",
                )
            else:
                terminated = not final or index < len(raws) - 1
                self._check([text.removesuffix("\r") if terminated else text])
            at += len(raw) + 1

    def _check(self, lines: list[str]) -> None:
        """The hot loop: a valid line costs one parse, two lookups and one index probe."""
        number = self.lines
        parse = self._fast
        first_line = self._ids.first_line
        for text in lines:
            number += 1
            try:
                value, end = parse(text)
            except (ValueError, RecursionError):
                self._check_slowly(text, number)
                continue
            # Exact type checks: json builds plain dicts and strs, and `is` is the cheapest test.
            if end != len(text) or type(value) is not dict:
                self._check_slowly(text, number)
                continue
            custom_id = value.get("custom_id")
            if type(custom_id) is not str or not custom_id or type(value.get("body")) is not dict:
                self._check_slowly(text, number)
                continue
            first = first_line(custom_id, number)
            if first != number:
                self.problem(number, _duplicate(custom_id, first))
        self.lines = number

    def _check_slowly(self, text: str, number: int) -> None:
        """Every check with its message, for lines the hot loop could not accept."""
        if not text.strip(_JSON_SPACE):
            # Each line is one request: an empty line is an empty request, not a separator.
            self.problem(number, "empty line" if not text else "a line of only whitespace")
            return
        try:
            value = self._strict(text)
        except json.JSONDecodeError as exc:
            self.problem(number, f"not valid JSON: {exc.msg} at column {exc.colno}")
            return
        except ValueError as exc:
            self.problem(number, f"not valid JSON: {exc}")
            return
        except RecursionError:
            self.problem(number, "JSON nested too deeply to check")
            return
        if not isinstance(value, dict):
            self.problem(number, f"must be a JSON object, got {_kind(value)}")
            return
        self._check_custom_id(value, number)
        if "body" not in value:
            self.problem(number, "body is missing")
        elif not isinstance(value["body"], dict):
            self.problem(number, f"body must be a JSON object, got {_kind(value['body'])}")

    def _check_custom_id(self, request: dict[str, Any], number: int) -> None:
        if "custom_id" not in request:
            self.problem(number, "custom_id is missing")
            return
        custom_id = request["custom_id"]
        if not isinstance(custom_id, str):
            self.problem(number, f"custom_id must be a string, got {_kind(custom_id)}")
        elif not custom_id:
            self.problem(number, "custom_id is empty")
        else:
            first = self._ids.first_line(custom_id, number)
            if first != number:
                self.problem(number, _duplicate(custom_id, first))


class _FirstLines:
    """custom_id -> the line it first appeared on, in memory that does not grow with id length.

    Ids are unbounded strings, so only an 80-bit blake2b digest of each is kept. Two ids share
    a digest with probability about n**2 / 2**81, 1e-10 for the 18 million lines of a 5 GiB
    file of 300-byte lines; a collision would report a false duplicate, it can never hide a
    real one.

    The first ``_DICT_IDS`` digests go in a dict: the fastest lookup, but about 113 bytes per id
    (a bytes and an int object plus the entry), 56 MiB at the cap. Later ids go in 65536 byte
    arrays of 13-byte entries (8 more digest bytes, then the line number in 5 bytes), picked by
    the first 2 digest bytes: about 14 MiB per million ids, plus 4 MiB of empty arrays, but
    about 1 us more per line, as each id touches two objects that are rarely in cache.
    Measured: 66 MiB for a million lines, 79 MiB for two million; a 5 GiB file of 18 million
    lines needs about 0.3 GB where a dict alone would take 2 GB.
    """

    def __init__(self) -> None:
        self._dict: dict[bytes, int] = {}
        self._buckets: list[bytearray] = []

    def first_line(self, custom_id: str, line: int) -> int:
        """The line ``custom_id`` was first seen on, recording ``line`` if it is new."""
        # surrogatepass: JSON escapes can produce lone surrogates, which strict UTF-8 refuses.
        # Slicing the default 64-byte digest is faster than passing digest_size.
        digest = hashlib.blake2b(custom_id.encode("utf-8", "surrogatepass")).digest()[:10]
        if len(self._dict) < _DICT_IDS:
            return self._dict.setdefault(digest, line)
        first = self._dict.get(digest)
        return self._compact(digest, line) if first is None else first

    def _compact(self, digest: bytes, line: int) -> int:
        if not self._buckets:
            self._buckets = [bytearray() for _ in range(1 << 16)]
        bucket = self._buckets[digest[0] << 8 | digest[1]]
        key = digest[2:]
        found = bucket.find(key)
        while found >= 0:
            # Entries start at multiples of 13; a match straddling two entries is not one.
            if found % _ENTRY_BYTES == 0:
                return int.from_bytes(bucket[found + len(key) : found + _ENTRY_BYTES], "little")
            found = bucket.find(key, found + 1)
        bucket += key + line.to_bytes(_ENTRY_BYTES - len(key), "little")
        return line


# --- wording -------------------------------------------------------------------------------


def _duplicate(custom_id: str, first: int) -> str:
    # Quoted and escaped as JSON so that quotes and control characters stay visible; lone
    # surrogates (from JSON escapes) escaped too, or printing the message would fail.
    shown = json.dumps(custom_id[:80], ensure_ascii=False)
    shown = shown.encode("utf-8", "backslashreplace").decode()
    return f"custom_id {shown}{'...' if len(custom_id) > 80 else ''} already used on line {first}"


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _size(limit: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if limit >= scale and limit % scale == 0:
            return f"{limit // scale} {unit}"
    return f"{limit} bytes"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
