"""Hints from a feed made into ledger entries, for the watches that name that feed.

Each hint is only a hint: the object is looked up (HEAD) for its current ETag and size and
merged as a listing of its key alone would merge it (``Ledger.record_object``), so a duplicate
event records nothing, a stale one (the object gone) nothing, and a replaced object its new
version. A watch's ``min_age_s`` holds the object that long after the event, then it is looked
up again (held in memory: a restart drops the hold, and the reconcile listing finds the file).
A lookup or ledger failure is raised to the feed, which delivers the message again (the
forwarder's retry, an uncommitted offset): what was recorded before it is known by then.
"""

from __future__ import annotations

import heapq
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Literal, Protocol

from dropzone import plan
from dropzone.errors import DropzoneError
from dropzone.ledger import Listed, State
from dropzone.log import get_logger

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from datetime import datetime

    from dropzone.config import WatchRule
    from dropzone.events.notification import Hint, Notification
    from dropzone.ledger import LedgerWrites
    from dropzone.sources.base import StoredObject

EventOutcome = Literal["recorded", "known", "stale", "unmatched", "held", "ignored", "malformed"]


class EventObserver(Protocol):
    """Told of each event's outcome (``ops.Metrics`` counts them)."""

    def event(self, feed: str, outcome: EventOutcome, n: int = 1) -> None: ...


@dataclass
class Taken:
    """What one message came to, by outcome; ``recorded``: the entries' keys."""

    recorded: list[str] = field(default_factory=list)
    counts: dict[EventOutcome, int] = field(default_factory=dict)

    def count(self, outcome: EventOutcome, n: int = 1) -> None:
        if n:
            self.counts[outcome] = self.counts.get(outcome, 0) + n


class EventIntake:
    """Merges the hints of one feed into the ledger; safe to share between threads.

    ``rules``: the watches now (a reload changes them); ``lookup(rule, key)``: the object's
    current version in the rule's bucket, or None when it is not there (raises
    ``SourceError`` when it cannot tell); ``wake``: the submitters."""

    def __init__(  # noqa: PLR0913 - every parameter is an independent, injected dependency
        self,
        *,
        feed: str,
        rules: Callable[[], Sequence[WatchRule]],
        lookup: Callable[[WatchRule, str], StoredObject | None],
        ledger: LedgerWrites,
        clock: Callable[[], datetime],
        wake: Callable[[], None],
        observer: EventObserver | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.feed = feed
        self._rules = rules
        self._lookup = lookup
        self._ledger = ledger
        self._clock = clock
        self._wake = wake
        self._observer = observer
        self._monotonic = monotonic
        self._held: list[tuple[float, int, str, tuple[str, ...]]] = []  # due, order, watch, keys
        self._held_lock = threading.Condition()
        self._order = 0
        self._malformed_seen: set[str] = set()
        self._log = get_logger(feed=feed)

    def take(self, notification: Notification) -> Taken:
        """Every hint of one message; raises (``DropzoneError``) when one could not be told
        apart, so that the message comes again."""
        taken = Taken()
        taken.count("ignored", notification.ignored)
        taken.count("malformed", len(notification.malformed))
        self._tell_malformed(notification.malformed)
        rules = self.rules()
        for hint in notification.hints:
            matched = False
            for rule in rules:
                keys = self._keys_for(rule, hint)
                if not keys:
                    continue
                matched = True
                if rule.min_age_s > 0:
                    self._hold(rule, keys)
                    taken.count("held")
                    continue
                outcome, key = self._merge(rule, keys)
                taken.count(outcome)
                if key is not None:
                    taken.recorded.append(key)
            if not matched:
                taken.count("unmatched")
        self._tell(taken)
        return taken

    def rules(self) -> list[WatchRule]:
        """The watches this feed triggers, now."""
        return [rule for rule in self._rules() if rule.feed == self.feed]

    def _keys_for(self, rule: WatchRule, hint: Hint) -> tuple[str, ...]:
        """The spellings of the hint's key this watch takes as input, in order."""
        if hint.bucket != rule.bucket:
            return ()
        is_candidate = plan.candidate_filter(rule)
        return tuple(key for key in hint.keys if is_candidate(key))

    def _merge(self, rule: WatchRule, keys: Sequence[str]) -> tuple[EventOutcome, str | None]:
        """The first spelling the bucket holds, merged; the outcome, and the key recorded."""
        found = next((obj for obj in map(partial(self._lookup, rule), keys) if obj), None)
        if found is None:
            return "stale", None
        recorded = self._ledger.record_object(
            rule.name,
            rule.bucket,
            Listed(found.key, found.etag, found.size),
            new_state=State.PENDING,
            on_change=rule.on_change,
            now=self._clock(),
        )
        if not recorded:
            return "known", None
        for entry in recorded:
            self._log.info(
                "object.detected",
                watch=rule.name,
                key=entry.key,
                etag=entry.etag,
                size=entry.size,
                state=entry.state,
                by="event",
            )
        self._wake()
        return "recorded", found.key

    # --- objects held for min_age_s --------------------------------------------------------

    def _hold(self, rule: WatchRule, keys: tuple[str, ...]) -> None:
        with self._held_lock:
            self._order += 1
            due = self._monotonic() + rule.min_age_s
            heapq.heappush(self._held, (due, self._order, rule.name, keys))
            self._held_lock.notify()

    def held(self) -> int:
        with self._held_lock:
            return len(self._held)

    def take_due(self) -> int:
        """The held objects whose time has come, looked up and merged; how many were."""
        due = self._due()
        rules = {rule.name: rule for rule in self.rules()}
        taken = Taken()
        for watch, keys in due:
            rule = rules.get(watch)
            if rule is None:
                continue
            try:
                outcome, _ = self._merge(rule, keys)
            except DropzoneError as exc:
                # The reconcile listing finds it: a hint is never the only way in.
                self._log.warning("event.dropped", watch=watch, key=keys[0], error=str(exc))
                continue
            taken.count(outcome)
        self._tell(taken)
        return len(due)

    def _due(self) -> list[tuple[str, tuple[str, ...]]]:
        now = self._monotonic()
        due: list[tuple[str, tuple[str, ...]]] = []
        with self._held_lock:
            while self._held and self._held[0][0] <= now:
                _, _, watch, keys = heapq.heappop(self._held)
                due.append((watch, keys))
        return due

    def keep(self, stop_event: threading.Event) -> threading.Thread:
        """Merge held objects as they come due, on a thread of its own, until stopped."""

        def loop() -> None:
            while not stop_event.is_set():
                with self._held_lock:
                    wait = self._held[0][0] - self._monotonic() if self._held else 1.0
                    if wait > 0:
                        self._held_lock.wait(min(wait, 1.0))
                self.take_due()

        thread = threading.Thread(target=loop, name=f"events-{self.feed}", daemon=True)
        thread.start()
        return thread

    def _tell(self, taken: Taken) -> None:
        if self._observer is not None:
            for outcome, n in taken.counts.items():
                self._observer.event(self.feed, outcome, n)

    def _tell_malformed(self, kinds: Iterable[str]) -> None:
        """Each kind of malformed event logged once (a feed full of them would fill the log;
        the metric counts every one)."""
        for kind in kinds:
            if kind not in self._malformed_seen:
                self._malformed_seen.add(kind)
                self._log.warning(
                    "event.malformed",
                    kind=kind,
                    note="dropped; this kind is logged once, dropzone_events_total counts each",
                )
