"""The outcome of preflight for one file and its wording, as a person or a report reads it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

SCHEMA: Final = "dropzone-error/1"
_HINT: Final = (
    'Each line must be one JSON object {"custom_id": "<unique string>", "body": {...}}, '
    "encoded as UTF-8 without a byte order mark, with no empty lines; the whole file must "
    "not exceed the size limit. Fix the lines listed and upload the file again; "
    "`dropzone validate FILE` runs the same checks locally."
)


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
            return f"valid: {count_text(self.lines, 'line')}"
        first = f", first: {self.problems[0]}" if self.problems else ""
        return f"invalid: {count_text(self.total_problems, 'problem')}{first}"

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


def size_text(limit: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if limit >= scale and limit % scale == 0:
            return f"{limit // scale} {unit}"
    return f"{limit} bytes"


def count_text(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
