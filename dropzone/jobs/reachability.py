"""Whether Ark answers, and what it refuses the account: each told once when it starts and
once when it ends.

Every API call reports here (through the client's observer): no answer at all, or a 5xx, is a
failed call; any other answer, an error of ours included, proves the platform is there. During
an outage every due file fails on every retry, so per-file lines would grow the log by one line
per file per retry; instead the submitter keeps those at debug, and this module logs
``ark.unreachable`` once :data:`OUTAGE_AFTER` calls in a row failed and ``ark.reachable`` at
the first answer after that, with what happened in between. Metrics and ``/healthz`` read
:meth:`Reachability.outage`.

The account's refusals (:class:`~dropzone.ark.errors.Held`: credentials, the clock, a service
not activated, an overdue account, a model not opened) hold every file of a watch on every
retry too: :meth:`Reachability.hold` logs each code once (``ark.auth_failed`` or
``ark.account_blocked``, with what to do), and the first Create answered after them logs
``ark.holds_ended``.

:func:`after_call` is the pure transition; :class:`Reachability` holds the state for threads.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from dropzone.ark import errors
from dropzone.log import get_logger

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime


@dataclass(frozen=True)
class Hold:
    """The account refused with ``code`` since ``since``; ``hint`` says what to do."""

    code: str
    since: datetime
    message: str
    hint: str
    answers: int


# Failed calls in a row that make an outage: a lone 5xx among answers is a retry, not news.
OUTAGE_AFTER = 3


@dataclass(frozen=True)
class Outage:
    """Ark has not answered since ``since``: ``failed_calls`` calls in a row, the latest for
    ``reason``; ``declared`` once there were :data:`OUTAGE_AFTER` of them."""

    since: datetime
    failed_calls: int
    reason: str
    declared: bool = False


def is_failure(outcome: str) -> bool:
    """An observer outcome that says the platform did not answer (transport error or 5xx)."""
    return outcome == "transport_error" or outcome.startswith("5")


def after_call(
    outage: Outage | None, *, failed: bool, reason: str, now: datetime
) -> tuple[Outage | None, bool]:
    """The failures in a row after one call, and whether this call declared or ended an
    outage (the two moments that are logged)."""
    if not failed:
        return None, outage is not None and outage.declared
    if outage is None:
        outage = Outage(since=now, failed_calls=0, reason=reason)
    failed_calls = outage.failed_calls + 1
    declared = failed_calls >= OUTAGE_AFTER
    changed = declared and not outage.declared
    return replace(outage, failed_calls=failed_calls, reason=reason, declared=declared), changed


class Reachability:
    """The daemon's one view of whether Ark answers; safe to share between threads."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._outage: Outage | None = None
        self._holds: dict[str, Hold] = {}
        self._log = get_logger()
        self.on_held: Callable[[str], None] | None = None  # a metric, counted by code

    def outage(self) -> Outage | None:
        """The outage under way, once declared; None while Ark answers."""
        with self._lock:
            return self._outage if self._outage is not None and self._outage.declared else None

    def observe(self, action: str, outcome: str, seconds: float, detail: str = "") -> None:
        """The client's observer: one call's outcome (``detail`` says why it failed)."""
        del seconds  # latency is the metrics' business
        now = self._clock()
        with self._lock:
            before = self._outage
            self._outage, changed = after_call(
                before, failed=is_failure(outcome), reason=detail or outcome, now=now
            )
            after = self._outage
        if not changed:
            return
        if after is not None:
            self._log.warning(
                "ark.unreachable",
                action=action,
                failed_calls=after.failed_calls,
                since=after.since.isoformat(),
                reason=after.reason,
                note="files stay pending and are retried with backoff; logged again when back",
            )
        elif before is not None:
            self._log.info(
                "ark.reachable",
                down_s=round((now - before.since).total_seconds(), 3),
                failed_calls=before.failed_calls,
                last_reason=before.reason,
            )

    # --- the account's refusals ------------------------------------------------------------

    def holds(self) -> list[Hold]:
        with self._lock:
            return list(self._holds.values())

    def hold(self, error: errors.Held) -> None:
        """One Held answer; one log line when its code is new since the last Create that was
        answered."""
        code = error.code or type(error).__name__
        now = self._clock()
        with self._lock:
            seen = self._holds.get(code)
            answers = seen.answers + 1 if seen else 1
            since = seen.since if seen else now
            self._holds[code] = Hold(code, since, error.message, error.hint, answers)
        if self.on_held is not None:
            self.on_held(code)
        if seen is not None:
            return
        event = error.event
        skew = error.skew_s if isinstance(error, errors.AuthError) else None
        self._log.error(
            event,
            code=code,
            message=error.message,
            hint=error.hint,
            clock_skew_s=skew,
            note="every file stays pending and is retried with backoff until this is fixed",
        )

    def create_answered(self) -> None:
        """A Create was answered: whatever held the account is over."""
        with self._lock:
            ended, self._holds = self._holds, {}
        if ended:
            self._log.info(
                "ark.holds_ended",
                codes=sorted(ended),
                answers=sum(hold.answers for hold in ended.values()),
            )
