"""One poll of a bucket watch: the listing, page by page, merged into the ledger.

Ages are measured on the server's clock (each page's Date header): TOS appendable objects grow
in place and are listed while growing, and a local clock may be off.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from dropzone import plan
from dropzone.ledger import Listed, Page, ScopeStatus, State
from dropzone.log import get_logger

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from dropzone.config import WatchRule
    from dropzone.ledger import Entry, Ledger
    from dropzone.sources.base import ListingPage, StoredObject
    from dropzone.watches.first_start import FirstStart


@dataclass(frozen=True)
class PollResult:
    watch: str
    objects: int
    matching: int
    new: int
    baseline: int
    duration_s: float


def eligible(obj: StoredObject, server_now: datetime, min_age_s: float) -> bool:
    """An object counts once its LastModified is ``min_age_s`` old by the server's clock."""
    return min_age_s <= 0 or obj.last_modified <= server_now - timedelta(seconds=min_age_s)


def listed_for(rule: WatchRule, page: ListingPage) -> list[Listed]:
    """The page's objects this watch cares about, marked eligible or still settling."""
    is_candidate = plan.candidate_filter(rule)
    return [
        Listed(obj.key, obj.etag, obj.size, eligible(obj, page.server_time, rule.min_age_s))
        for obj in page.objects
        if is_candidate(obj.key)
    ]


def start_state(rule: WatchRule, *, first_listing: bool) -> State:
    """What a newly seen object becomes: baseline during the first listing, if so configured."""
    if first_listing and rule.on_start == "skip-existing":
        return State.BASELINE
    return State.PENDING


class BucketWatch:
    """Polls one bucket watch into the ledger; sources never see the ledger, this does."""

    def __init__(
        self,
        rule: WatchRule,
        pages: Callable[[str], Iterable[ListingPage]],
        ledger: Ledger,
        clock: Callable[[], datetime],
        first_start: FirstStart | None = None,
        on_new: Callable[[], None] | None = None,
    ) -> None:
        """``first_start``: asked before a first listing baselines what is there. ``on_new``:
        called once a page has recorded entries to submit (the workers start on them while
        the listing goes on)."""
        self.rule = rule
        self._first_start = first_start
        self._on_new = on_new
        self._pages = pages
        self._ledger = ledger
        self._clock = clock
        self._log = get_logger(watch=rule.name, bucket=rule.bucket)

    def begin(self) -> bool:
        """Record the watch's scope; True when this is (again) a first listing."""
        rule = self.rule
        status = self._ledger.begin_watch(rule.name, rule.bucket, rule.prefix, self._clock())
        if status is ScopeStatus.CHANGED:
            self._log.warning(
                "watch.scope_changed",
                prefix=rule.prefix,
                note="bucket or prefix changed: a new baseline starts",
            )
        return status is not ScopeStatus.UNCHANGED or not self._ledger.baseline_done(rule.name)

    def poll(self) -> PollResult:
        started = time.monotonic()
        first_listing = self.begin()
        if first_listing and self._first_start is not None:
            self._first_start.check(self.rule)  # raises FirstStartHeld
        new_state = start_state(self.rule, first_listing=first_listing)
        objects = matching = new = 0
        after: str | None = None
        for page in self._pages(self.rule.prefix):
            if not page.objects and not page.is_last:
                continue  # an empty middle page proves nothing about any key range
            listed = listed_for(self.rule, page)
            recorded = self._ledger.record_page(
                self.rule.name,
                self.rule.bucket,
                Page(listed, after=after, through=None if page.is_last else page.last_key),
                new_state=new_state,
                on_change=self.rule.on_change,
                now=self._clock(),
            )
            objects += len(page.objects)
            matching += len(listed)
            new += recorded.count
            self._report(recorded.entries)
            if self._on_new is not None and any(
                entry.state is State.PENDING for entry in recorded.entries
            ):
                self._on_new()
            after = page.last_key if page.last_key is not None else after
        if first_listing:
            self._ledger.mark_baseline_done(self.rule.name)
        baseline = new if new_state is State.BASELINE else 0
        if baseline:
            self._log.info("object.baseline", count=baseline, on_start=self.rule.on_start)
        result = PollResult(
            self.rule.name, objects, matching, new - baseline, baseline, time.monotonic() - started
        )
        # A poll that found nothing is the daemon's heartbeat: at info it would fill the log.
        log = self._log.info if result.new or baseline else self._log.debug
        log(
            "poll.completed",
            objects=objects,
            matching=matching,
            new=result.new,
            duration_s=round(result.duration_s, 3),
        )
        return result

    def _report(self, recorded: list[Entry]) -> None:
        # A plain baseline is only counted (one summary line for it, not one per object).
        # Bound once a page: each call through the module's lazy logger makes a logger anew.
        log = self._log.bind()
        for entry in recorded:
            log.info(
                "object.detected",
                key=entry.key,
                etag=entry.etag,
                size=entry.size,
                state=entry.state,
            )
