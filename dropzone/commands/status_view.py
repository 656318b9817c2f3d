"""``dropzone status`` on a terminal: a table a person reads, and a summary line (pure).

Scripts read the tab-separated lines or ``--json``; this rendering may change for readability.
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import TYPE_CHECKING

from dropzone.ledger import State

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence
    from datetime import datetime

    from dropzone.ledger import Entry

HEADER = ("WATCH", "KEY", "STATE", "JOB", "PHASE", "AGE", "ERROR")
GAP = "  "
# A key longer than this is cut at its start: the end (the file name) tells keys apart.
KEY_WIDTH = 60
# The error column is cut to the terminal's width, but never below this.
MIN_ERROR_WIDTH = 24
_UNITS = (("d", 86_400), ("h", 3_600), ("m", 60))


def age_text(seconds: float) -> str:
    """A duration in its largest whole unit: ``42s``, ``5m``, ``3h``, ``12d``."""
    seconds = max(0.0, seconds)
    for unit, size in _UNITS:
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _cut_start(text: str, width: int) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1) :]


def _cut_end(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def presence(entries: Iterable[Entry]) -> Iterator[tuple[Entry, str | None]]:
    """Each entry with ``(deleted)`` when no version of its key is listed any more, or
    ``(replaced)`` when another version is; None while it is the listed version.

    ``entries`` come ordered by watch, bucket and key (as the ledger streams them).
    """
    for _, group in itertools.groupby(entries, key=lambda e: (e.watch, e.bucket, e.key)):
        versions = list(group)
        some_listed = any(entry.gone_since is None for entry in versions)
        for entry in versions:
            if entry.gone_since is None:
                yield entry, None
            else:
                yield entry, "(replaced)" if some_listed else "(deleted)"


def _state_text(entry: Entry) -> str:
    return f"{entry.state} (awaits job)" if entry.awaits_job else str(entry.state)


def _row(entry: Entry, note: str | None, now: datetime) -> tuple[str, ...]:
    key = _cut_start(entry.key, KEY_WIDTH)
    return (
        entry.watch,
        f"{key} {note}" if note else key,
        _state_text(entry),
        entry.job_id or "-",
        entry.phase or "-",
        age_text((now - entry.first_seen_at).total_seconds()),
        " ".join((entry.error or "").split()),  # one line, whatever the API's message held
    )


def summary(entries: Sequence[Entry], gone: int) -> str:
    """``5 entries: 3 submitted, 1 duplicate, 1 rejected; 1 deleted or replaced``."""
    if not entries:
        return "no entries"
    counts = Counter(entry.state for entry in entries)
    by_state = ", ".join(f"{counts[state]} {state}" for state in State if counts[state])
    noun = "entry" if len(entries) == 1 else "entries"
    line = f"{len(entries)} {noun}: {by_state}"
    return f"{line}; {gone} deleted or replaced" if gone else line


def table(entries: Sequence[Entry], now: datetime, width: int) -> list[str]:
    """The header, one aligned row per entry (``width``: the terminal's columns), and the
    summary line. ``now`` dates the age column (time since the version was first seen)."""
    marked = list(presence(entries))
    rows = [HEADER, *(_row(entry, note, now) for entry, note in marked)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(HEADER) - 1)]
    lead = sum(widths) + len(GAP) * len(widths)
    error_width = max(MIN_ERROR_WIDTH, width - lead)
    lines = []
    for row in rows:
        cells = [cell.ljust(size) for cell, size in zip(row, widths, strict=False)]
        lines.append(GAP.join([*cells, _cut_end(row[-1], error_width)]).rstrip())
    gone = sum(1 for _, note in marked if note)
    return [*lines, summary(entries, gone)]
