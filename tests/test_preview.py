"""The read-only preview behind `run --dry-run` and `check --list`: pure, no listing, no ledger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from dropzone.commands.preview import Verdict, preview_watch
from dropzone.config import WatchRule
from dropzone.sources.base import ListingPage, StoredObject

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping, Sequence

    from dropzone.commands.preview import KnownVersions

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def _rule(on_start: str) -> WatchRule:
    return WatchRule.model_validate(
        {
            "name": "w",
            "bucket": "b",
            "prefix": "in/",
            "model": {"name": "m-1"},
            "min_age_s": 60,
            "on_start": on_start,
        }
    )


def _object(key: str, etag: str, age_s: float) -> StoredObject:
    return StoredObject(key, etag, 10, NOW - timedelta(seconds=age_s))


PAGES = [
    ListingPage(
        objects=(
            _object("in/a.jsonl", "e1", 600),  # known version
            _object("in/b.jsonl", "e2", 600),  # new, old enough
            _object("in/c.jsonl", "e3", 5),  # new, too young
        ),
        last_key="in/c.jsonl",
        is_last=False,
        server_time=NOW,
    ),
    ListingPage(
        objects=(_object("in/d.txt", "e4", 600),),  # not a candidate
        last_key="in/d.txt",
        is_last=True,
        server_time=NOW,
    ),
]


def _known(asked: list[Sequence[str]]) -> KnownVersions:
    def known(keys: Sequence[str]) -> Mapping[str, Collection[str]]:
        asked.append(list(keys))
        return {"in/a.jsonl": {"e1"}}

    return known


def test_each_object_gets_the_daemons_verdict_and_the_ledger_is_asked_once_a_page() -> None:
    asked: list[Sequence[str]] = []
    preview = preview_watch(_rule("submit-existing"), PAGES, _known(asked), first_listing=True)
    verdicts = [(seen.obj.key, seen.verdict) for seen in preview.items]
    assert verdicts == [
        ("in/a.jsonl", Verdict.KNOWN),
        ("in/b.jsonl", Verdict.SUBMIT),
        ("in/c.jsonl", Verdict.WAIT),
        ("in/d.txt", Verdict.OTHER),
    ]
    assert preview.baselines is False
    # Candidates only, one question per page (the second page has none).
    assert asked == [["in/a.jsonl", "in/b.jsonl", "in/c.jsonl"], []]


def test_a_first_listing_that_skips_existing_baselines_what_is_ready() -> None:
    preview = preview_watch(_rule("skip-existing"), PAGES, _known([]), first_listing=True)
    assert preview.baselines is True
    new = {seen.obj.key: seen.verdict for seen in preview.items if seen.verdict.is_new}
    assert new == {"in/b.jsonl": Verdict.BASELINE, "in/c.jsonl": Verdict.WAIT}


def test_a_later_listing_submits_even_when_the_first_skipped_existing() -> None:
    preview = preview_watch(_rule("skip-existing"), PAGES, _known([]), first_listing=False)
    assert preview.baselines is False
    assert [s.verdict for s in preview.items if s.obj.key == "in/b.jsonl"] == [Verdict.SUBMIT]
