"""A read-only preview of one watch: what its next listing would do, written nowhere, sent nowhere.

``run --dry-run`` prints each decision and ``check --list`` counts them: one walk of the listing
for both, deciding as the daemon's poll does (the watch's candidate filter, ``min_age_s`` on the
server's clock, and whether a first listing baselines what it finds).
"""

from __future__ import annotations

import enum
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dropzone import plan, runtime
from dropzone.ledger import State
from dropzone.watches.bucket import eligible, start_state

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence

    from mypy_boto3_s3 import S3Client

    from dropzone.config import Settings, WatchRule
    from dropzone.ledger import LedgerReads
    from dropzone.sources.base import ListingPage, StoredObject
    from dropzone.sources.tos import TosBucket

    # The versions (ETags) the ledger already holds, for each of a page's keys.
    KnownVersions = Callable[[Sequence[str]], Mapping[str, Collection[str]]]


class Verdict(enum.Enum):
    OTHER = "not a candidate"  # outside the watch's pattern (reports, other suffixes)
    KNOWN = "known"  # this version is in the ledger already
    WAIT = "wait (younger than min_age_s)"
    BASELINE = "baseline (on_start = skip-existing)"
    SUBMIT = "submit"

    @property
    def is_new(self) -> bool:
        return self in {Verdict.WAIT, Verdict.BASELINE, Verdict.SUBMIT}


@dataclass(frozen=True)
class Previewed:
    obj: StoredObject
    verdict: Verdict


@dataclass(frozen=True)
class WatchPreview:
    """``baselines``: this listing would be the watch's first, recording what is new as
    baseline; ``items``: each listed object, lazily, page by page as listed."""

    baselines: bool
    items: Iterator[Previewed]


def preview_watch(
    rule: WatchRule, pages: Iterable[ListingPage], known: KnownVersions, *, first_listing: bool
) -> WatchPreview:
    baselines = start_state(rule, first_listing=first_listing) is State.BASELINE
    return WatchPreview(baselines, _items(rule, pages, known, baselines=baselines))


def _items(
    rule: WatchRule, pages: Iterable[ListingPage], known: KnownVersions, *, baselines: bool
) -> Iterator[Previewed]:
    is_candidate = plan.candidate_filter(rule)
    for page in pages:
        versions = known([obj.key for obj in page.objects if is_candidate(obj.key)])
        for obj in page.objects:
            yield Previewed(obj, _verdict(rule, page, obj, versions, is_candidate, baselines))


def _verdict(
    rule: WatchRule,
    page: ListingPage,
    obj: StoredObject,
    versions: Mapping[str, Collection[str]],
    is_candidate: Callable[[str], bool],
    baselines: bool,
) -> Verdict:
    if not is_candidate(obj.key):
        return Verdict.OTHER
    if obj.etag in versions.get(obj.key, ()):
        return Verdict.KNOWN
    if not eligible(obj, page.server_time, rule.min_age_s):
        return Verdict.WAIT
    return Verdict.BASELINE if baselines else Verdict.SUBMIT


# --- the shell: the listing and the ledger behind a preview --------------------------------


@contextmanager
def watch_previews(settings: Settings) -> Iterator[Callable[[WatchRule], WatchPreview]]:
    """Previews of the configured watches, against the ledger when there is one (read only;
    none yet: every object is new, and each watch's listing would be its first)."""
    s3 = runtime.s3_client(settings, runtime.credentials_for(settings))
    ledger = runtime.existing_ledger(settings)

    def preview(rule: WatchRule) -> WatchPreview:
        pages = _tos_bucket(s3, rule.bucket).pages(rule.prefix)
        first_listing = ledger is None or not ledger.baseline_done(rule.name)
        return preview_watch(rule, pages, _known_in(ledger, rule), first_listing=first_listing)

    try:
        yield preview
    finally:
        if ledger is not None:
            ledger.close()


def _known_in(ledger: LedgerReads | None, rule: WatchRule) -> KnownVersions:
    def known(keys: Sequence[str]) -> Mapping[str, Collection[str]]:
        if ledger is None:
            return {}
        return {key: {e.etag for e in ledger.find(rule.name, rule.bucket, key)} for key in keys}

    return known


def _tos_bucket(s3: S3Client, name: str) -> TosBucket:
    # Imported when a bucket is read: boto3 is a third of the start-up of a command that
    # reads none (check --offline).
    from dropzone.sources.tos import TosBucket  # noqa: PLC0415

    return TosBucket(s3, name)
