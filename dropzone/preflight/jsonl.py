"""Preflight validation of batch input files: streaming JSONL checks in bounded memory.

Ark accepts a file and only finds a bad line after the job has started (the job then ends
``Failed``), so dropzone checks each file before submitting it: UTF-8 without a byte order
mark, one JSON object per line, ``custom_id`` a non-empty string unique in the file, ``body``
an object, and the size within Ark's limit.

Memory is bounded by one line (at most ``MAX_LINE_BYTES``) plus one read chunk, plus the
custom_id index, which cannot be constant: it grows by a fixed amount per line whatever the
ids' length, 66 MiB for a million lines (see :class:`~dropzone.preflight.ids.FirstLines`).
The stream is cut into lines by :mod:`dropzone.preflight.lines`; this module checks them.
"""

from __future__ import annotations

import json
import os
import stat
from typing import TYPE_CHECKING, Any, Final, NoReturn

from dropzone.preflight.ids import FirstLines
from dropzone.preflight.lines import LineReader, Readable
from dropzone.preflight.report import Problem, Report, size_text

if TYPE_CHECKING:
    from pathlib import Path

MAX_FILE_BYTES: Final = 5 * 1024**3
# Ark publishes no line limit. 64 MiB holds any plausible request, including several images
# inlined as base64, while one such line held as bytes, as text and parsed stays within a few
# hundred MB. A longer line is reported and skipped without ever being held whole.
MAX_LINE_BYTES: Final = 64 * 1024**2
MAX_PROBLEMS: Final = 20

_JSON_SPACE: Final = " \t\r"


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
        checker.problem(
            None, f"file is larger than {size_text(max_file_bytes)}: {declared_size} bytes"
        )
        return checker.report(0)
    reader = LineReader(
        stream, checker, max_line_bytes=max_line_bytes, max_file_bytes=max_file_bytes
    )
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
        self._ids = FirstLines()
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
        self.problem(
            self.lines, f"longer than {size_text(limit)}, the limit for one line; not checked"
        )

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
