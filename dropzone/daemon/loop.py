"""The daemon's main loop: polls, folder watches, reconciliation and tracking, then a drain.

Threads: the main loop polls every watch (and keeps /healthz and the watchdog fed);
``concurrency`` workers (:mod:`dropzone.daemon.work`) claim due entries and submit them; one
loop reconciles stranded entries and one tracks jobs. Nothing that waits on Ark runs in the
main loop.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from dropzone.daemon.lease import LeaseKeeper
from dropzone.daemon.parts import NO_NOTICES, NO_OPS, NO_TRACKING, no_reload
from dropzone.daemon.wakeup import Wakeup
from dropzone.daemon.work import IDLE_WAIT_S, SubmitWork, claim_size
from dropzone.ledger import LedgerError
from dropzone.log import get_logger
from dropzone.sources.base import SourceConfigError, SourceError
from dropzone.watches.first_start import FirstStartHeld

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from dropzone.daemon.parts import JobTracking, Notices, OpsEvents, Reload, WatchSet
    from dropzone.daemon.work import RunTally
    from dropzone.jobs.submitter import Submitter
    from dropzone.ledger import Ledger
    from dropzone.watches.bucket import BucketWatch, PollResult
    from dropzone.watches.folder import FolderWatch


# The default lease ([ledger] lease_ttl_s) for a daemon built without one.
_LEASE_TTL_S = 30.0


@dataclass(frozen=True)
class DaemonOptions:
    poll_interval_s: float = 30.0
    concurrency: int = 4
    drain_timeout_s: float = 30.0
    once_max_wait_s: float = 300.0
    retention_days: int = 30
    track_interval_s: float = 60.0


class Daemon:
    def __init__(  # noqa: PLR0913 - every parameter is an independent, injected part
        self,
        *,
        ledger: Ledger,
        watches: WatchSet,
        submitter: Submitter,
        options: DaemonOptions,
        clock: Callable[[], datetime],
        ops: OpsEvents = NO_OPS,
        tracker: JobTracking = NO_TRACKING,
        reload: Reload = no_reload,
        wake: Wakeup | None = None,
        first_starts_held: dict[str, str] | None = None,
        lease: LeaseKeeper | None = None,
        notices: Notices = NO_NOTICES,
        requests_per_second: Callable[[], float] | None = None,
        warm_up: Callable[[], None] | None = None,
    ) -> None:
        """``wake``: what a folder watch calls when it records new work (built before the
        daemon, with the watches); ``first_starts_held``: watch -> why its first start waits,
        shared with /healthz; ``lease``: this node's (its id, renewed while the daemon runs);
        ``requests_per_second``: the Ark request cap this node has now (its share of the
        account's), which sizes its claims (None: a worker's worth each); ``warm_up``: what
        readies the Ark client (its TLS context, a first client), run beside ``run_once``'s
        listing. Each is new when nothing else needs it."""
        self.ledger = ledger
        self.lease = lease or LeaseKeeper(ledger=ledger, ttl_s=_LEASE_TTL_S, clock=clock)
        self.watches = watches
        self.submitter = submitter
        self.options = options
        self._clock = clock
        self._ops = ops
        self._tracker = tracker
        self._notices = notices
        self._roles_held: set[str] = set()
        self._reload = reload
        self.first_starts_held = first_starts_held if first_starts_held is not None else {}
        self._warm_up = warm_up
        self.stop_event = threading.Event()
        self.reload_requested = threading.Event()
        self.work = SubmitWork(
            ledger=ledger,
            submitter=submitter,
            watches=lambda: self.watches,
            ops=ops,
            clock=clock,
            stop_event=self.stop_event,
            wake=wake if wake is not None else Wakeup(),
            node=self.lease.node,
            claim_ahead=(
                options.concurrency
                if requests_per_second is None
                else lambda: claim_size(options.concurrency, requests_per_second())
            ),
        )
        self.last_poll: dict[str, PollResult] = {}
        self._listed_at: dict[str, float] = {}  # when each watch was last listed (monotonic)
        self._started_folders: set[int] = set()
        self._exit_code = 0
        self._log = get_logger()

    @property
    def folders(self) -> tuple[FolderWatch, ...]:
        return self.watches.folders

    @property
    def tally(self) -> RunTally:
        return self.work.tally

    def stop(self) -> None:
        """Finish: the loops see it at once (signal handlers and the demo call this)."""
        self.stop_event.set()
        self.work.idle.notify()
        self.work.wake.notify()

    def wake(self) -> None:
        """New work is due: let an idle worker look now rather than at its next tick."""
        self.work.wake.notify()

    def submit_one(self) -> bool:
        return self.work.submit_one()

    def reconcile_stranded(self) -> int:
        return self.work.reconcile_stranded()

    def holds(self, role: str) -> bool:
        """Whether this node holds a singleton role now (takes it when no live node does).
        Not knowing (the ledger cannot be reached) is not holding: the work waits a round."""
        try:
            held = self.ledger.hold_role(role, self.lease.node, self._clock())
        except LedgerError as exc:
            self._log.error("ledger.failed", error=str(exc), role=role)
            return False
        if held:
            self._roles_held.add(role)
        return held

    def let_go(self, role: str) -> None:
        """This node no longer does the role's work (a reload took it away): another node
        that does takes it now, not once this node's lease lapses."""
        if role not in self._roles_held:
            return
        try:
            self.ledger.release_role(role, self.lease.node)
        except LedgerError as exc:
            self._log.error("ledger.failed", error=str(exc), role=role)
            return
        self._roles_held.discard(role)

    # --- the pieces ------------------------------------------------------------------------

    def poll_all(self) -> bool:
        """Poll every watch once; True when every watch was listed."""
        ok = True
        for watch in self.watches.buckets:
            if self.stop_event.is_set():
                return False
            if not self._listing_due(watch):
                self._ops.polled(watch.rule.name, None)  # its feed is the trigger meanwhile
                continue
            listed = self._poll(watch)
            if listed:
                self._listed_at[watch.rule.name] = time.monotonic()
            ok = listed and ok
        if any(id(folder) not in self._started_folders for folder in self.folders):
            self.start_folders()  # a folder whose first start was held asks again
        for folder in self.folders:
            folder.check_waiting()
            root = folder.rule.local_dir
            if root is not None and root.is_dir():
                self._ops.polled(folder.rule.name, None, folder=True)
        self._ops.ready_when_polled(self.watches.names)
        self.work.wake.notify()
        return ok

    def _listing_due(self, watch: BucketWatch) -> bool:
        """A watch fed by events is listed every ``reconcile_interval_s`` (the first time at
        once, and after a failed listing at the next round); others at every poll."""
        rule = watch.rule
        listed_at = self._listed_at.get(rule.name)
        if rule.feed is None or listed_at is None:
            return True
        return time.monotonic() - listed_at >= rule.reconcile_interval_s

    def _poll(self, watch: BucketWatch) -> bool:
        """One watch's poll; True when it was listed."""
        name = watch.rule.name
        if not self.holds(f"list:{name}"):
            # Another live node lists this watch; what it finds is claimed by every node.
            self._ops.polled(name, None)
            return True
        try:
            result = self.last_poll[name] = watch.poll()
            self._ops.polled(name, result)
        except FirstStartHeld as exc:
            self._first_start_held(name, exc)
            return False
        except SourceConfigError as exc:
            # Not fatal: the daemon goes on polling (a bucket may yet be created), but no
            # retry fixes a configuration, so it is an error for the operator.
            self._log.error(
                "poll.failed",
                watch=name,
                error=str(exc),
                hint="check the watch's bucket and prefix and the credentials' access",
            )
            return False
        except SourceError as exc:
            self._log.warning("poll.failed", watch=name, error=str(exc))
            return False
        except LedgerError as exc:
            # A full disk, say: the listing is merged again at the next poll; nothing is lost.
            self._log.error("ledger.failed", watch=name, error=str(exc))
            return False
        self.first_starts_held.pop(name, None)
        return True

    def track(self) -> None:
        if not self.holds("track"):
            return
        try:
            self._tracker.track_once()
        except Exception:  # noqa: BLE001 - tracking is best effort; the next round tries again
            self._log.exception("track.failed")
        # A duplicate whose awaited job ended is pending now: no need to wait for a tick.
        self.work.wake.notify()

    def notify(self) -> int:
        """Deliver the notices due now (one node does, by the role); how many were settled."""
        if not self._notices.active():
            self.let_go("notify")
            return 0
        if not self.holds("notify"):
            return 0
        try:
            return self._notices.deliver_due(stopping=self.stop_event.is_set)
        except Exception:  # noqa: BLE001 - delivery is retried; the next round tries again
            self._log.exception("notify.failed")
            return 0

    def start_folders(self) -> bool:
        """Start folder watches not yet running; True once each has its first full scan."""
        fresh = [f for f in self.folders if id(f) not in self._started_folders]
        self._started_folders.update(id(f) for f in fresh)
        if len(fresh) <= 1:
            return all(self._start_folder(folder) for folder in fresh)
        # Side by side: each start waits for the files already there to settle, and N watches
        # one after another would hold the first bucket poll back N times as long.
        with ThreadPoolExecutor(len(fresh), thread_name_prefix="folder-start") as pool:
            return all(list(pool.map(self._start_folder, fresh)))  # each, even after a failure

    def _start_folder(self, folder: FolderWatch) -> bool:
        try:
            started = folder.start()
        except FirstStartHeld as exc:
            self._first_start_held(folder.rule.name, exc)
            self._started_folders.discard(id(folder))  # asked again at the next poll
            return False
        except SourceError as exc:
            # The other watches keep working; /healthz shows this one as never polled.
            self._log.error("watch.failed", watch=folder.rule.name, error=str(exc))
            return False
        self.first_starts_held.pop(folder.rule.name, None)
        return started

    def _first_start_held(self, watch: str, exc: FirstStartHeld) -> None:
        """Told once per reason, not at every poll; the watch counts as alive (a restart
        changes nothing), and /healthz says why in ``degraded``."""
        if self.first_starts_held.get(watch) != str(exc):
            level = self._log.error if exc.settled else self._log.warning
            level("watch.first_start_held", watch=watch, reason=str(exc))
        self.first_starts_held[watch] = str(exc)
        self._ops.polled(watch, None)

    def reload(self) -> None:
        """Apply a new configuration between two rounds of the main loop (SIGHUP)."""
        fresh = self._reload(self.watches)
        if fresh is None:
            return
        self.watches = fresh
        self.start_folders()
        self.work.wake.notify()

    def prune(self) -> int:
        if not self.holds("prune"):
            return 0
        cutoff = self._clock() - timedelta(days=self.options.retention_days)
        removed = self.ledger.prune(cutoff)
        if removed:
            self._log.info("ledger.pruned", entries=removed, gone_before=cutoff.isoformat())
        return removed

    # --- run -------------------------------------------------------------------------------

    def run(self) -> int:
        """The daemon: poll, submit, reconcile, until ``stop_event``; then drain."""
        self._log.info("daemon.started", watches=self.watches.names, node=self.lease.node)
        self.lease.renew()
        self.lease.keep(self.stop_event)
        # Ark work runs beside the listing, never in its loop: a platform that accepts
        # connections and never answers held the polls (and /healthz) for its time-outs.
        workers = [*self.work.start_workers(self.options.concurrency), *self._start_ark_loops()]
        self.start_folders()
        next_poll = time.monotonic()
        while not self.stop_event.is_set():
            if self.reload_requested.is_set():
                self.reload_requested.clear()
                self.reload()
                next_poll = time.monotonic()
            if time.monotonic() >= next_poll:
                if self._ledger_displaced():
                    break
                self.poll_all()
                self.prune()
                next_poll = time.monotonic() + self.options.poll_interval_s
            self._ops.tick()
            self.stop_event.wait(min(IDLE_WAIT_S, max(0.0, next_poll - time.monotonic())))
        self._drain(workers)
        return self._exit_code

    def _ledger_displaced(self) -> bool:
        """The ledger's file removed or replaced under the daemon: stop (exit 1). What it
        would write from now on would be lost to the next start, which reads the path."""
        problem = self.ledger.displaced()
        if problem is None:
            return False
        self._log.error(
            "ledger.displaced",
            error=problem,
            hint="put the ledger file back in place and restart dropzone; it stopped rather"
            " than write where the next start cannot read",
        )
        self._exit_code = 1
        return True

    def _start_warm_up(self) -> None:
        """The Ark client readied while the first page is listed (a wait for the store's
        answer), where a cron-started run spent 20-30 ms of CPU on it before its first call.
        Not sooner: the TLS context is made holding the interpreter's lock, and would hold up
        the listing's start instead. (The daemon's Ark loops call at once: no need there.)"""
        if self._warm_up is None:
            return
        warm_up = self._warm_up

        def ready() -> None:
            try:
                warm_up()
            except Exception:  # noqa: BLE001 - the first call meets it again and is held, told why
                self._log.debug("ark.warm_up_failed", exc_info=True)

        # Not a daemon thread: the interpreter waits for it at exit (20-30 ms at most), where a
        # run with nothing to do ended while it was inside OpenSSL and crashed (SIGSEGV).
        threading.Thread(target=ready, name="warm-up").start()

    def _start_ark_loops(self) -> list[threading.Thread]:
        loops = [threading.Thread(target=self._reconcile_loop, name="reconcile", daemon=True)]
        if self.options.track_interval_s > 0:
            loops.append(threading.Thread(target=self._track_loop, name="track", daemon=True))
        loops.append(threading.Thread(target=self._notify_loop, name="notify", daemon=True))
        for loop in loops:
            loop.start()
        return loops

    def _reconcile_loop(self) -> None:
        """Stranded entries (this node's due again, and those of nodes gone), once a second;
        those whose outcome could not be written, once a poll interval."""
        next_unrecorded = time.monotonic()
        while not self.stop_event.is_set():
            try:
                self.work.reconcile_stranded()
                if time.monotonic() >= next_unrecorded:  # at the pace of the polls
                    next_unrecorded = time.monotonic() + self.options.poll_interval_s
                    self.work.reconcile_unrecorded()
            except LedgerError as exc:
                self._log.error("ledger.failed", error=str(exc))
            except Exception:  # noqa: BLE001 - a bug in one reconcile must not end them all
                self._log.exception("reconcile.failed")
            self.stop_event.wait(IDLE_WAIT_S)

    def _track_loop(self) -> None:
        while not self.stop_event.is_set():
            self.track()
            self.stop_event.wait(self.options.track_interval_s)

    def _notify_loop(self) -> None:
        while not self.stop_event.is_set():
            self.notify()
            self.stop_event.wait(IDLE_WAIT_S)

    def run_once(self) -> int:
        """Scan once, submit all that is due (retrying within a bounded wait), then exit."""
        self._log.info(
            "daemon.started", watches=self.watches.names, once=True, node=self.lease.node
        )
        self.lease.renew()
        self.lease.keep(self.stop_event)
        self.work.reconcile_stranded()
        if self.options.track_interval_s > 0:
            # One round, so that phases are current and a duplicate whose awaited job ended
            # since the last run is pending (and submitted) in this one.
            self.track()
        folders_ok = self.start_folders()
        # Started before the listing: they submit a page's files while the next is listed.
        workers = self.work.start_workers(self.options.concurrency)
        self._start_warm_up()
        polled = self.poll_all() and folders_ok
        deadline = time.monotonic() + self.options.once_max_wait_s
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            self.work.reconcile_stranded()
            for folder in self.folders:
                folder.check_waiting()
            mark = self.work.idle.mark()
            if self.work.unsettled() == 0:
                break
            until_deadline = max(0.0, deadline - time.monotonic())
            look_again = self.work.seconds_to_next_due(while_due=IDLE_WAIT_S)
            self.work.idle.wait(mark, min(look_again, until_deadline))
        left = self.work.unsettled()
        # The outcomes of this run are written, and their notices with them; one round tells
        # of them (and tries again those an earlier run could not deliver).
        self.notify()
        self._drain(workers)
        if left:
            self._log.warning("run.unfinished", entries=left, note="still due; a later run goes on")
        return 1 if (self.tally.failed or left or not polled) else 0

    def _drain(self, workers: list[threading.Thread]) -> None:
        self.stop()
        self._ops.stopping()
        for folder in self.folders:
            folder.stop()
        self._log.info("daemon.stopping", in_flight=self.work.in_flight)
        deadline = time.monotonic() + self.options.drain_timeout_s
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        self.work.release_claimed()
        abandoned = self.work.in_flight
        if abandoned:
            self._log.warning(
                "daemon.abandoned",
                entries=abandoned,
                note="left in submitting; reconciled by the next start or another node",
            )
        self.lease.leave()
