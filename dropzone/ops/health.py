"""Liveness: the heartbeat the main loop beats, and the pure verdict ``/healthz`` serves.

One :class:`Heartbeat` is the only place the daemon reports progress. The systemd watchdog
ping and ``/healthz`` (and so the container's HEALTHCHECK) both read it, so they can never
disagree about whether the daemon is alive.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol, TypedDict

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

    from dropzone.jobs.reachability import Outage

STALE_AFTER_INTERVALS = 3


class WatchHealth(TypedDict):
    ok: bool
    last_poll: str | None  # ISO-8601 UTC; None before the first successful poll
    seconds_since: float | None
    due: int


class ArkHealth(TypedDict):
    reachable: bool
    unreachable_since: str | None  # ISO-8601 UTC, during an outage
    failed_calls: int
    reason: str | None


class HealthBody(TypedDict):
    ok: bool
    # What is wrong but not cured by a restart (an Ark outage): said here, while ``ok`` (and
    # so the HTTP status a supervisor acts on) stays about this process's own health.
    degraded: list[str]
    ark: ArkHealth
    ledger_writable: bool
    checked_at: str
    started_at: str
    stale_after_s: float
    watches: dict[str, WatchHealth]


@dataclass(frozen=True)
class ArkStatus:
    """What /healthz tells of the platform: an outage under way, and what it refuses the
    account (one line each, saying what to do)."""

    outage: Outage | None = None
    held: tuple[str, ...] = ()


def _iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def health_report(  # noqa: PLR0913 - each an independent part of the verdict
    now: float,
    poll_interval_s: float,
    last_polls: Mapping[str, float | None],
    due: Mapping[str, int],
    *,
    ledger_writable: bool,
    started_at: float,
    ark: ArkStatus = ArkStatus(),
    feeds: Sequence[str] = (),
) -> tuple[bool, HealthBody]:
    """Healthy when the ledger is writable and every watch polled within three intervals.

    ``ark``: an outage, and what the platform refuses the account; ``feeds``: what keeps an
    event feed from delivering (its watches' reconcile listings go on). All go in ``degraded``
    and do not fail the verdict (a restart would cure none).

    Times are unix seconds. A watch that has never polled counts as healthy until three
    intervals have passed since ``started_at``: a daemon that just started is not dead.
    """
    stale_after = STALE_AFTER_INTERVALS * poll_interval_s
    in_grace = now - started_at <= stale_after
    watches: dict[str, WatchHealth] = {}
    for name in sorted(set(last_polls) | set(due)):
        last = last_polls.get(name)
        since = None if last is None else round(max(0.0, now - last), 3)
        watches[name] = {
            "ok": in_grace if since is None else since <= stale_after,
            "last_poll": None if last is None else _iso(last),
            "seconds_since": since,
            "due": due.get(name, 0),
        }
    ok = ledger_writable and all(watch["ok"] for watch in watches.values())
    ark_outage = ark.outage
    ark_body: ArkHealth = {
        "reachable": ark_outage is None,
        "unreachable_since": None if ark_outage is None else _iso(ark_outage.since.timestamp()),
        "failed_calls": 0 if ark_outage is None else ark_outage.failed_calls,
        "reason": None if ark_outage is None else ark_outage.reason,
    }
    degraded = [] if ark_outage is None else [f"ark unreachable: {ark_outage.reason}"]
    degraded += ark.held
    degraded += feeds
    return ok, {
        "ok": ok,
        "degraded": degraded,
        "ark": ark_body,
        "ledger_writable": ledger_writable,
        "checked_at": _iso(now),
        "started_at": _iso(started_at),
        "stale_after_s": stale_after,
        "watches": watches,
    }


class WatchdogSink(Protocol):
    def watchdog(self) -> object: ...


class Heartbeat:
    """Progress reports from the main loop; answers "is a watchdog ping due?".

    ``beat()`` marks loop progress on the injected monotonic ``clock``; ``polled()`` records a
    watch's successful poll in unix seconds (the daemon passes the time it already has). A
    ping is due at half the watchdog interval, and only after progress since the last ping,
    so a ping from any thread still proves the loop moved.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        watchdog_interval_s: float | None = None,
        watches: Iterable[str] = (),
    ) -> None:
        self._clock = clock
        self.watchdog_interval_s = watchdog_interval_s
        self._lock = threading.Lock()
        self._beats = 0
        self._beats_at_ping = 0
        self._last_beat: float | None = None
        self._last_ping: float | None = None
        self._polls: dict[str, float | None] = dict.fromkeys(watches)

    def beat(self) -> None:
        with self._lock:
            self._beats += 1
            self._last_beat = self._clock()

    def polled(self, watch: str, at_unix: float) -> None:
        """A successful poll of ``watch``: also progress of the loop."""
        with self._lock:
            self._polls[watch] = at_unix
        self.beat()

    def last_polls(self) -> dict[str, float | None]:
        with self._lock:
            return dict(self._polls)

    def seconds_since_beat(self) -> float | None:
        with self._lock:
            return None if self._last_beat is None else self._clock() - self._last_beat

    def watchdog_due(self) -> bool:
        with self._lock:
            if self.watchdog_interval_s is None or self._beats == self._beats_at_ping:
                return False
            return (
                self._last_ping is None
                or self._clock() - self._last_ping >= self.watchdog_interval_s / 2
            )

    def watchdog_pinged(self) -> None:
        with self._lock:
            self._last_ping = self._clock()
            self._beats_at_ping = self._beats

    def pulse(self, sink: WatchdogSink) -> None:
        """The main loop's one call per turn: beat, and ping the watchdog when it is due."""
        self.beat()
        if self.watchdog_due():
            sink.watchdog()
            self.watchdog_pinged()


def health_probe(  # noqa: PLR0913 - each an independent source of the verdict
    *,
    heartbeat: Heartbeat,
    poll_interval_s: float,
    started_at: float,
    due: Callable[[], Mapping[str, int]],
    ledger_writable: Callable[[], bool],
    wall_clock: Callable[[], float] = time.time,
    ark: Callable[[], ArkStatus] = ArkStatus,
    feeds: Callable[[], Sequence[str]] = tuple,
) -> Callable[[], tuple[bool, HealthBody]]:
    """The ``health`` callable for :class:`~dropzone.ops.http.OpsServer`.

    It runs on the HTTP server's threads: ``due`` and ``ledger_writable`` must be safe to
    call from there (the SQLite ledger is, behind its lock).
    """

    def probe() -> tuple[bool, HealthBody]:
        return health_report(
            wall_clock(),
            poll_interval_s,
            heartbeat.last_polls(),
            due(),
            ledger_writable=ledger_writable(),
            started_at=started_at,
            ark=ark(),
            feeds=feeds(),
        )

    return probe


def readiness_probe(
    ledger_usable: Callable[[], bool],
) -> Callable[[], tuple[bool, Mapping[str, object]]]:
    """The ``ready`` callable for :class:`~dropzone.ops.http.OpsServer`: ready while the
    ledger can be written (SQLite: the file in place and writable; PostgreSQL: the database
    answers). Asked at every request, on the server's threads."""

    def probe() -> tuple[bool, Mapping[str, object]]:
        usable = ledger_usable()
        return usable, {"ready": usable, "ledger": "ok" if usable else "unusable"}

    return probe
