"""One listing page against what the ledger knows about the same key range: pure, no I/O.

S3 ListObjectsV2 returns keys in UTF-8 binary order, which is also Python's ``str`` order and
SQLite's BINARY collation. A page therefore covers a contiguous key range, ``(after, through]``,
and the ledger only needs its own rows of that range to tell what is new, what is gone and what
came back: memory stays bounded by the page size, never by the number of entries.

Presence is tracked per version (key and ETag), not per key: a version replaced by a newer
upload is gone even though its key is still listed, so the ledger can prune it after the
retention period instead of keeping every version of a busy key forever.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence


@dataclass(frozen=True, slots=True)
class Listed:
    """One object a source reports; ``eligible`` is False while it is too young to count."""

    key: str
    etag: str
    size: int
    eligible: bool = True


class Known(NamedTuple):
    """What the diff needs of one ledger row; rows read from the database are plain tuples
    of the same shape, used as they come (the poll reads a thousand per page)."""

    id: int
    key: str
    etag: str
    gone: bool


@dataclass(frozen=True)
class Page:
    """One listing page: the matching objects and the raw key range the page covered.

    ``after`` is the last raw key of the previous page (exclusive; None for the first page) and
    ``through`` the last raw key of this one (inclusive; None for the last page, which runs to
    the end). The bounds come from the raw page, before any pattern filter, so that a range
    with no matching object still proves that the ledger's keys in it are gone.
    """

    listed: Sequence[Listed]
    after: str | None = None
    through: str | None = None

    def __post_init__(self) -> None:
        # A key outside the range would be compared with rows that were never fetched and
        # recorded as new: refuse the call instead.
        # (The least and greatest key decide it: a first listing pages a whole bucket.)
        keys = [item.key for item in self.listed]
        if keys and not (self.covers(min(keys)) and self.covers(max(keys))):
            outside = next(key for key in keys if not self.covers(key))
            raise ValueError(
                f"listed key {outside!r} lies outside the page's range "
                f"({self.after!r}, {self.through!r}]"
            )

    def covers(self, key: str) -> bool:
        return (self.after is None or key > self.after) and (
            self.through is None or key <= self.through
        )


@dataclass(frozen=True)
class PageDiff:
    """What a page changes in the ledger; an unchanged page yields an empty diff."""

    new: tuple[Listed, ...] = ()
    new_versions: tuple[Listed, ...] = ()
    gone: tuple[int, ...] = ()
    back: tuple[int, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.new or self.new_versions or self.gone or self.back)


def diff_page(listed: Iterable[Listed], known: Iterable[Known]) -> PageDiff:
    """Compare a page's objects with the ledger rows of the same key range.

    - ``new``: eligible objects whose key the ledger has never seen;
    - ``new_versions``: eligible objects whose key is known but whose ETag is not;
    - ``gone``: ids of rows not yet marked gone whose version is not listed;
    - ``back``: ids of rows marked gone whose version is listed again.

    An ineligible object is still present: its row (if any) is neither gone nor new.
    """
    rows = list(known)
    if not rows:  # a first listing's page: everything eligible is new
        return PageDiff(new=tuple(item for item in listed if item.eligible))
    first, versions = _by_key(rows)
    new: list[Listed] = []
    new_versions: list[Listed] = []
    back: list[int] = []
    present: set[int] = set()
    for item in listed:
        match = first.get(item.key)
        if match is None:
            if item.eligible:
                new.append(item)
            continue
        if match[2] != item.etag or item.key in versions:
            match = next((row for row in versions.get(item.key, ()) if row[2] == item.etag), None)
            if match is None:
                if item.eligible:
                    new_versions.append(item)
                continue
        present.add(match[0])
        if match[3]:
            back.append(match[0])
    gone = tuple(row[0] for row in rows if not row[3] and row[0] not in present)
    return PageDiff(tuple(new), tuple(new_versions), gone, tuple(back))


def _by_key(rows: Sequence[Known]) -> tuple[dict[str, Known], dict[str, list[Known]]]:
    """The first row of each key, and the rows of the keys with more than one version.

    Nearly every key has one version, so the common case is one dict lookup and one
    comparison. Rows are read by position: the ledger passes its database rows as plain
    tuples."""
    first: dict[str, Known] = {}
    versions: dict[str, list[Known]] = {}
    for row in rows:
        key = row[1]
        if key in first:
            versions.setdefault(key, [first[key]]).append(row)
        else:
            first[key] = row
    return first, versions
