"""Delivering the outbox: each due notice to its watch's targets, settled or put off.

A notice is settled ``delivered`` only once every target of its watch took it; a failed try
puts it off (1 s, doubling, up to 10 minutes, with jitter), and a notice older than its
watch's ``give_up_after_s`` is given up, said once at error level. Delivery is at least
once: a crash between a target's answer and the settling write delivers it again, under the
same delivery ID, which is what a receiver deduplicates on.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Protocol

from dropzone.jobs.policy import RetryPolicy, backoff_delay
from dropzone.ledger import LedgerError
from dropzone.log import get_logger
from dropzone.notify.targets import DeliveryFailed

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from datetime import datetime

    from dropzone.ledger import LedgerWrites
    from dropzone.ledger.notices import Notice
    from dropzone.notify.targets import Target

NOTICE_BACKOFF = RetryPolicy(base_s=1.0, cap_s=600.0)
# How long a notice is tried for when nothing says otherwise (a watch's give_up_after_s).
DEFAULT_GIVE_UP_S = 86400.0
UNKNOWN_WATCH_GIVE_UP_S = DEFAULT_GIVE_UP_S


@dataclass(frozen=True)
class Route:
    """What a watch asked for: the events it wants, who hears of them, and for how long a
    notice is tried."""

    events: frozenset[str]
    targets: tuple[Target, ...]
    give_up_after_s: float


class NoticeObserver(Protocol):
    def notified(self, watch: str, outcome: str) -> None: ...


class NoObserver:
    def notified(self, watch: str, outcome: str) -> None:
        pass


class Notifier:
    """``routes``: read at each round (a reload gives new ones)."""

    def __init__(
        self,
        *,
        ledger: LedgerWrites,
        routes: Callable[[], Mapping[str, Route]],
        clock: Callable[[], datetime],
        observer: NoticeObserver | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._ledger = ledger
        self._routes = routes
        self._clock = clock
        self._observer = observer or NoObserver()
        self._jitter = jitter
        self._log = get_logger()

    def deliver_due(self, limit: int = 100, stopping: Callable[[], bool] = lambda: False) -> int:
        """One round: every notice due now, tried once; returns how many were settled.

        ``stopping``: asked before each notice, so that a stop waits for the try under way
        (at most a target's time-out) and leaves the rest due for the next round."""
        settled = 0
        for notice in self._ledger.notices_due(self._clock(), limit):
            if stopping():
                break
            try:
                settled += self._deliver(notice)
            except LedgerError as exc:
                # Not settled, so tried again: a repeat, never a loss.
                self._log.error("ledger.failed", error=str(exc), delivery_id=notice.delivery_id)
        return settled

    def _deliver(self, notice: Notice) -> bool:
        route = self._routes().get(notice.watch)
        if route is None:
            return self._not_ours(notice)
        if notice.event not in route.events:
            # The watch no longer asks for it (a reload): nobody to tell.
            return self._skip(notice)
        for target in route.targets:
            if not target.wants(notice.event):
                continue
            try:
                target.deliver(notice)
            except DeliveryFailed as exc:
                return self._failed(notice, route, str(exc))
            except Exception as exc:  # noqa: BLE001 - one notice's fault must not stop the rest
                # Only the kind: the message may hold the URL, and the URL a token.
                return self._failed(notice, route, f"{target.name}: {type(exc).__name__}")
        self._ledger.settle_notice(notice.id, "delivered", self._clock())
        self._observer.notified(notice.watch, "delivered")
        self._log.info(
            "notice.delivered",
            watch=notice.watch,
            notice=notice.event,
            delivery_id=notice.delivery_id,
            tries=notice.tries + 1,
        )
        return True

    def _skip(self, notice: Notice) -> bool:
        self._ledger.settle_notice(notice.id, "skipped", self._clock())
        self._observer.notified(notice.watch, "skipped")
        return True

    def _not_ours(self, notice: Notice) -> bool:
        """A watch this node's config has not got: replicas part way through a rolling
        update differ, and the node that has it may hold the role next. Put off, not a
        failed try; skipped once as old as a notice is tried for by default."""
        now = self._clock()
        if (now - notice.happened_at).total_seconds() >= UNKNOWN_WATCH_GIVE_UP_S:
            self._log.warning(
                "notice.skipped",
                watch=notice.watch,
                notice=notice.event,
                delivery_id=notice.delivery_id,
                reason="no watch of that name in the configuration",
            )
            return self._skip(notice)
        delay_s = backoff_delay(notice.tries + 1, NOTICE_BACKOFF, self._jitter())
        due = now + timedelta(seconds=delay_s)
        self._ledger.defer_notice(notice.id, due, f"watch {notice.watch!r} is not configured here")
        return False

    def _failed(self, notice: Notice, route: Route, reason: str) -> bool:
        now = self._clock()
        age_s = (now - notice.happened_at).total_seconds()
        fields = {"watch": notice.watch, "notice": notice.event, "delivery_id": notice.delivery_id}
        if age_s >= route.give_up_after_s:
            given_up = f"{reason}; given up after {notice.tries + 1} tries over {age_s:.0f} s"
            self._ledger.settle_notice(notice.id, "gave_up", now, error=given_up)
            self._observer.notified(notice.watch, "gave_up")
            self._log.error("notice.gave_up", error=given_up, **fields)
            return True
        delay_s = backoff_delay(notice.tries + 1, NOTICE_BACKOFF, self._jitter())
        self._ledger.defer_notice(notice.id, now + timedelta(seconds=delay_s), reason)
        self._observer.notified(notice.watch, "failed")
        self._log.warning("notice.failed", error=reason, retry_in_s=round(delay_s, 1), **fields)
        return False
