"""Hints from a feed made into ledger entries, for the watches that name that feed.

Each hint is only a hint: the object is looked up (HEAD) for its current ETag and size and
merged as a listing of its key alone would merge it (``Ledger.record_object``), so a duplicate
event records nothing, a stale one (the object gone) nothing, and a replaced object its new
version. Until a watch's first listing has finished, its hints are left to that listing
(``early``): it alone decides what was there before (``on_start``). A lookup or ledger failure
is raised to the feed, which delivers the message again (the forwarder's retry, an uncommitted
offset): what was recorded before it is known by then; a bucket that refuses the lookup
(access denied, no such bucket) is no failure to retry, and the event is dropped (``refused``).

A watch's ``min_age_s`` holds the object in memory until its LastModified is that old, then
looks it up again: the message is acknowledged once the object is held, so a restart drops
the hold and the reconcile listing finds the file (set ``min_age_s = 0`` on an event watch to
submit at the event). A lookup that fails when the hold comes due is tried again later.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Literal, Protocol

from dropzone import plan
from dropzone.errors import DropzoneError
from dropzone.ledger import Listed, State
from dropzone.log import get_logger
from dropzone.sources.base import SourceConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from datetime import datetime

    from dropzone.config import WatchRule
    from dropzone.events.notification import Hint, Notification
    from dropzone.ledger import LedgerWrites
    from dropzone.sources.base import StoredObject

EventOutcome = Literal[
    "recorded", "known", "stale", "unmatched", "early", "refused", "held", "ignored", "malformed"
]
# A held object whose lookup fails is tried again this long after, up to MAX_HOLD_TRIES times;
# after that the reconcile listing finds it.
HOLD_RETRY_S = 5.0
MAX_HOLD_TRIES = 12


class EventObserver(Protocol):
    """Told of each event's outcome (``ops.Metrics`` counts them)."""

    def event(self, feed: str, outcome: EventOutcome, n: int = 1) -> None: ...
    def object_detected(self, watch: str, n: int = 1) -> None: ...


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
        # (watch, spellings) -> (when due, failed lookups); one hold per object, however many
        # events name it (an appendable object sends one per append).
        self._held: dict[tuple[str, tuple[str, ...]], tuple[float, int]] = {}
        self._held_lock = threading.Condition()
        self._listed_once: set[tuple[str, str, str]] = set()  # watches whose first listing ended
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
                if not self._first_listing_done(rule):
                    taken.count("early")
                    continue
                if rule.min_age_s > 0:
                    self._hold(rule, keys, self._monotonic() + rule.min_age_s)
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

    def _first_listing_done(self, rule: WatchRule) -> bool:
        scope = (rule.name, rule.bucket, rule.prefix)
        if scope in self._listed_once:
            return True
        if self._ledger.baseline_done(rule.name):
            self._listed_once.add(scope)  # stays done while the scope does
            return True
        return False

    def _merge(
        self, rule: WatchRule, keys: Sequence[str], *, young: bool = False
    ) -> tuple[EventOutcome, str | None]:
        """The first spelling the bucket holds, merged; the outcome, and the key recorded.
        ``young``: held for min_age_s, and held again (``held``) while it is still too young."""
        try:
            found = next((obj for obj in map(partial(self._lookup, rule), keys) if obj), None)
        except SourceConfigError as exc:
            self._log.error("event.refused_lookup", watch=rule.name, key=keys[0], error=str(exc))
            return "refused", None
        if found is None:
            return "stale", None
        settled_at = found.last_modified + timedelta(seconds=rule.min_age_s)
        if young and settled_at > self._clock():
            wait_s = (settled_at - self._clock()).total_seconds()
            self._hold(rule, tuple(keys), self._monotonic() + min(wait_s, rule.min_age_s))
            return "held", None
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
        if self._observer is not None:
            self._observer.object_detected(rule.name, len(recorded))
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

    def _hold(self, rule: WatchRule, keys: tuple[str, ...], due: float, tries: int = 0) -> None:
        with self._held_lock:
            held = self._held.get((rule.name, keys))
            if held is None or due < held[0]:
                self._held[rule.name, keys] = (due, tries)
            self._held_lock.notify()

    def held(self) -> int:
        with self._held_lock:
            return len(self._held)

    def take_due(self) -> int:
        """The held objects whose time has come, looked up and merged; how many were."""
        due = self._due()
        if not due:
            return 0
        rules = {rule.name: rule for rule in self.rules()}
        taken = Taken()
        for watch, keys, tries in due:
            rule = rules.get(watch)
            if rule is None:
                continue  # the watch is gone (a reload) or no longer fed
            try:
                outcome, _ = self._merge(rule, keys, young=True)
            except DropzoneError as exc:
                if tries + 1 >= MAX_HOLD_TRIES:
                    # The reconcile listing finds it: a hint is never the only way in.
                    self._log.warning("event.dropped", watch=watch, key=keys[0], error=str(exc))
                    continue
                self._hold(rule, keys, self._monotonic() + HOLD_RETRY_S, tries + 1)
                continue
            if outcome != "held":
                taken.count(outcome)
        self._tell(taken)
        return len(due)

    def _due(self) -> list[tuple[str, tuple[str, ...], int]]:
        now = self._monotonic()
        with self._held_lock:
            due = [(w, k, tries) for (w, k), (at, tries) in self._held.items() if at <= now]
            for watch, keys, _ in due:
                del self._held[watch, keys]
        return due

    def _next_due(self) -> float | None:
        with self._held_lock:
            return min((at for at, _ in self._held.values()), default=None)

    def keep(self, stop_event: threading.Event) -> threading.Thread:
        """Merge held objects as they come due, on a thread of its own, until stopped."""

        def loop() -> None:
            while not stop_event.is_set():
                with self._held_lock:
                    next_due = self._next_due()
                    wait = 1.0 if next_due is None else next_due - self._monotonic()
                    if wait > 0:
                        self._held_lock.wait(min(wait, 1.0))
                try:
                    self.take_due()
                except Exception:  # noqa: BLE001 - logged; the holds go on being served
                    self._log.exception("event.hold_failed")

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
