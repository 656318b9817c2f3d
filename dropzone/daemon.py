"""Wiring: the poll loop, the submit workers, reconciliation and a graceful drain.

Threads: the main loop polls every watch (and keeps /healthz and the watchdog fed);
``concurrency`` workers claim due entries from the ledger and submit them; one loop reconciles
stranded entries and one tracks jobs. Nothing that waits on Ark runs in the main loop.
Nothing is handed between threads except through the ledger, so a crash anywhere leaves a
state the next start knows how to finish.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from dropzone.ledger import EntryNotFound, LedgerError, State
from dropzone.log import get_logger
from dropzone.sources.base import SourceConfigError, SourceError
from dropzone.wakeup import Wakeup
from dropzone.watches.first_start import FirstStart, FirstStartHeld

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from dropzone.jobs.submitter import Submitter
    from dropzone.jobs.tracker import Tracker
    from dropzone.ledger import Entry, Ledger
    from dropzone.ops.events import DaemonOps
    from dropzone.watches.bucket import BucketWatch, PollResult
    from dropzone.watches.folder import FolderWatch

_IDLE_WAIT_S = 1.0
_MIN_WAIT_S = 0.05
_UNRECORDED = "its outcome could not be recorded"


@dataclass
class RunTally:
    """What happened to entries during this process's life (for ``run --once``'s exit code)."""

    outcomes: Counter[State] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, state: State) -> None:
        with self.lock:
            self.outcomes[state] += 1

    @property
    def failed(self) -> int:
        return self.outcomes[State.REJECTED] + self.outcomes[State.INVALID]


@dataclass(frozen=True)
class DaemonOptions:
    poll_interval_s: float = 30.0
    concurrency: int = 4
    drain_timeout_s: float = 30.0
    once_max_wait_s: float = 300.0
    retention_days: int = 30
    track_interval_s: float = 60.0


class Daemon:
    def __init__(
        self,
        *,
        ledger: Ledger,
        pollers: Sequence[BucketWatch],
        submitter: Submitter,
        options: DaemonOptions,
        clock: Callable[[], datetime],
    ) -> None:
        self.ledger = ledger
        self.pollers = list(pollers)
        self.submitter = submitter
        self.options = options
        self._clock = clock
        self.stop_event = threading.Event()
        self._wake = Wakeup()  # new work for the workers
        self._worker_idle = Wakeup()  # run_once looks whether all is settled
        self._in_flight: set[int] = set()
        # Submitting entries whose outcome could not be written (a full disk): settled by tag
        # at each poll, as a restart would, once the ledger takes writes again.
        self._unrecorded: set[int] = set()
        self._in_flight_lock = threading.Lock()
        self.tally = RunTally()
        self.last_poll: dict[str, PollResult] = {}
        self.folders: list[FolderWatch] = []
        self.tracker: Tracker | None = None
        self.caps: dict[str, int] = {}  # max_active_jobs per watch
        self.reload_requested = threading.Event()
        self.reload_hook: Callable[[], None] | None = None
        self._started_folders: set[int] = set()
        self.ops: DaemonOps | None = None
        self._cap_lock = threading.Lock()
        self._started_at = clock()  # run() sets it again: its workers' claims are not stranded
        self.first_starts_held: dict[str, str] = {}  # watch -> why its first start waits
        self.first_start: FirstStart | None = None  # asked before a first start baselines
        self._exit_code = 0
        self._log = get_logger()

    def stop(self) -> None:
        """Finish: the loops see it at once (signal handlers and the demo call this)."""
        self.stop_event.set()
        self._worker_idle.notify()
        self._wake.notify()

    def wake(self) -> None:
        """New work is due: let an idle worker look now rather than at its next tick."""
        self._wake.notify()

    # --- the pieces ------------------------------------------------------------------------

    def poll_all(self) -> bool:
        """Poll every watch once; True when every watch was listed."""
        ok = True
        for poller in self.pollers:
            if self.stop_event.is_set():
                return False
            ok = self._poll(poller) and ok
        if any(id(folder) not in self._started_folders for folder in self.folders):
            self.start_folders()  # a folder whose first start was held asks again
        for folder in self.folders:
            folder.check_waiting()
            root = folder.rule.local_dir
            if self.ops is not None and root is not None and root.is_dir():
                self.ops.polled(folder.rule.name, None)
        if self.ops is not None:
            self.ops.ready_when_polled(self._watch_names())
        self._wake.notify()
        return ok

    def _poll(self, poller: BucketWatch) -> bool:
        """One watch's poll; True when it was listed."""
        name = poller.rule.name
        try:
            result = self.last_poll[name] = poller.poll()
            if self.ops is not None:
                self.ops.polled(name, result)
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
        if self.tracker is None:
            return
        try:
            self.tracker.track_once()
        except Exception:  # noqa: BLE001 - tracking is best effort; the next round tries again
            self._log.exception("track.failed")
        # A duplicate whose awaited job ended is pending now: no need to wait for a tick.
        self._wake.notify()

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
        if self.ops is not None:
            self.ops.polled(watch, None)

    def reload(self) -> None:
        """Apply a new configuration between two rounds of the main loop (SIGHUP)."""
        if self.reload_hook is None:
            return
        self.reload_hook()
        self.start_folders()
        self._wake.notify()

    def reconcile_stranded(self, *, all_of_them: bool) -> int:
        """Settle ``submitting`` entries no worker holds: at start-up all, later the due ones."""
        now = self._clock()
        count = 0
        for entry in list(self.ledger.in_state(State.SUBMITTING)):
            if self.stop_event.is_set():
                break
            if all_of_them and _claimed_since(entry, self._started_at):
                continue  # a worker of this process has it: not stranded
            due = entry.next_attempt_at is not None and entry.next_attempt_at <= now
            if not (all_of_them or due) or not self._hold(entry.id):
                continue
            try:
                self._outcome(
                    entry.watch, self.submitter.reconcile(entry, reason="found in submitting")
                )
                count += 1
            except LedgerError as exc:
                self._log.error("ledger.failed", error=str(exc), entry_id=entry.id)
                with self._in_flight_lock:
                    self._unrecorded.add(entry.id)
            finally:
                self._release(entry.id)
        return count

    def submit_one(self) -> bool:
        """Claim one due entry and submit it; False when nothing was due."""
        entry = self._claim()
        if entry is None:
            return False
        self._hold(entry.id)
        try:
            self._outcome(entry.watch, self.submitter.submit(entry))
        except LedgerError:
            with self._in_flight_lock:
                self._unrecorded.add(entry.id)
            raise
        finally:
            self._release(entry.id)
        return True

    def reconcile_unrecorded(self) -> None:
        """Settle the entries whose outcome could not be written, by their tag as a restart
        would; one that fails again is tried at the next poll."""
        with self._in_flight_lock:
            waiting = sorted(self._unrecorded)
        for entry_id in waiting:
            if self.stop_event.is_set() or not self._hold(entry_id):
                continue
            try:
                entry = self.ledger.get(entry_id)
                if entry.state is State.SUBMITTING:
                    self._outcome(entry.watch, self.submitter.reconcile(entry, reason=_UNRECORDED))
            except EntryNotFound:
                pass  # nothing left to settle
            except LedgerError as exc:
                self._log.error("ledger.failed", error=str(exc), entry_id=entry_id)
                continue
            finally:
                self._release(entry_id)
            with self._in_flight_lock:
                self._unrecorded.discard(entry_id)

    def _outcome(self, watch: str, state: State) -> None:
        self.tally.add(state)
        if self.ops is not None:
            self.ops.outcome(watch, state)

    def _claim(self) -> Entry | None:
        now = self._clock()
        if not self.caps:
            claimed = self.ledger.claim_due(1, now)
            return claimed[0] if claimed else None
        # With a cost guard, claim per watch, checking the cap and claiming under one lock so
        # that workers racing for the last free slot cannot overshoot it.
        with self._cap_lock:
            for watch in self._claimable_watches():
                claimed = self.ledger.claim_due(1, now, watch=watch)
                if claimed:
                    return claimed[0]
        return None

    def _idle_wait_s(self) -> float:
        """How long an idle worker waits for a wake-up. With a cost guard, the entries due may
        all be held back by their watch's cap: looking again every 50 ms re-counted the ledger
        twenty times a second per worker and slowed a flood's ingestion several-fold. A slot
        frees when a job ends (tracking wakes the workers) or once a second at the latest."""
        if self.caps:
            return _IDLE_WAIT_S
        return min(_IDLE_WAIT_S, self._seconds_to_next_due())

    def _claimable_watches(self) -> list[str]:
        names = [p.rule.name for p in self.pollers] + [f.rule.name for f in self.folders]
        free: list[str] = []
        for name in names:
            cap = self.caps.get(name)
            if cap is not None:
                # In-flight first, then active: an entry finishing its call in between is then
                # counted twice (briefly too cautious), never missed (which overshot the cap).
                in_flight = self.ledger.counts(name)[State.SUBMITTING]
                busy = in_flight + self.ledger.active_jobs(name)
                if busy >= cap:
                    continue
            free.append(name)
        return free

    def prune(self) -> int:
        cutoff = self._clock() - timedelta(days=self.options.retention_days)
        removed = self.ledger.prune(cutoff)
        if removed:
            self._log.info("ledger.pruned", entries=removed, gone_before=cutoff.isoformat())
        return removed

    # --- run -------------------------------------------------------------------------------

    def run(self) -> int:
        """The daemon: poll, submit, reconcile, until ``stop_event``; then drain."""
        self._log.info("daemon.started", watches=self._watch_names())
        self._started_at = self._clock()
        # Ark work runs beside the listing, never in its loop: a platform that accepts
        # connections and never answers held the polls (and /healthz) for its time-outs.
        workers = [*self._start_workers(), *self._start_ark_loops()]
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
            if self.ops is not None:
                self.ops.tick()
            self.stop_event.wait(min(_IDLE_WAIT_S, max(0.0, next_poll - time.monotonic())))
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

    def _start_ark_loops(self) -> list[threading.Thread]:
        loops = [threading.Thread(target=self._reconcile_loop, name="reconcile", daemon=True)]
        if self.options.track_interval_s > 0:
            loops.append(threading.Thread(target=self._track_loop, name="track", daemon=True))
        for loop in loops:
            loop.start()
        return loops

    def _reconcile_loop(self) -> None:
        """All stranded entries at start, then the due ones, once a second; those whose outcome
        could not be written, once a poll interval."""
        all_of_them = True
        next_unrecorded = time.monotonic()
        while not self.stop_event.is_set():
            try:
                self.reconcile_stranded(all_of_them=all_of_them)
                all_of_them = False
                if time.monotonic() >= next_unrecorded:  # at the pace of the polls
                    next_unrecorded = time.monotonic() + self.options.poll_interval_s
                    self.reconcile_unrecorded()
            except LedgerError as exc:
                self._log.error("ledger.failed", error=str(exc))
            except Exception:  # noqa: BLE001 - a bug in one reconcile must not end them all
                self._log.exception("reconcile.failed")
            self.stop_event.wait(_IDLE_WAIT_S)

    def _track_loop(self) -> None:
        while not self.stop_event.is_set():
            self.track()
            self.stop_event.wait(self.options.track_interval_s)

    def _watch_names(self) -> list[str]:
        return [p.rule.name for p in self.pollers] + [f.rule.name for f in self.folders]

    def run_once(self) -> int:
        """Scan once, submit all that is due (retrying within a bounded wait), then exit."""
        self._log.info("daemon.started", watches=self._watch_names(), once=True)
        self.reconcile_stranded(all_of_them=True)
        if self.options.track_interval_s > 0:
            # One round, so that phases are current and a duplicate whose awaited job ended
            # since the last run is pending (and submitted) in this one.
            self.track()
        folders_ok = self.start_folders()
        polled = self.poll_all() and folders_ok
        deadline = time.monotonic() + self.options.once_max_wait_s
        workers = self._start_workers()
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            self.reconcile_stranded(all_of_them=False)
            for folder in self.folders:
                folder.check_waiting()
            mark = self._worker_idle.mark()
            if self._settled():
                break
            until_deadline = max(0.0, deadline - time.monotonic())
            self._worker_idle.wait(mark, min(self._seconds_to_next_due(), until_deadline))
        left = self._unsettled_count()
        self._drain(workers)
        if left:
            self._log.warning("run.unfinished", entries=left, note="still due; a later run goes on")
        return 1 if (self.tally.failed or left or not polled) else 0

    # --- internals -------------------------------------------------------------------------

    def _start_workers(self) -> list[threading.Thread]:
        workers = [
            threading.Thread(target=self._work, name=f"submit-{i}", daemon=True)
            for i in range(self.options.concurrency)
        ]
        for worker in workers:
            worker.start()
        return workers

    def _work(self) -> None:
        busy = True
        while not self.stop_event.is_set():
            mark = self._wake.mark()
            was_busy = busy
            try:
                busy = self.submit_one()
            except LedgerError as exc:
                # The claim or the outcome could not be written: the entry stays pending or
                # submitting, and is retried or reconciled from there.
                self._log.error("ledger.failed", error=str(exc))
                busy = False
            except Exception:  # noqa: BLE001 - a bug in one submission must not stop the worker
                self._log.exception("worker.failed")
                busy = False
            if not busy:
                if was_busy:  # only then: run_once need not look again at every idle turn
                    self._worker_idle.notify()
                self._wake.wait(mark, self._idle_wait_s())

    def _drain(self, workers: list[threading.Thread]) -> int:
        self.stop()
        if self.ops is not None:
            self.ops.stopping()
        for folder in self.folders:
            folder.stop()
        self._log.info("daemon.stopping", in_flight=len(self._in_flight))
        deadline = time.monotonic() + self.options.drain_timeout_s
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        abandoned = len(self._in_flight)
        if abandoned:
            self._log.warning(
                "daemon.abandoned",
                entries=abandoned,
                note="left in submitting; reconciled next start",
            )
        return 0

    def _seconds_to_next_due(self) -> float:
        due = self.ledger.next_due_at()
        if due is None:
            return _IDLE_WAIT_S
        # A floor, not zero: an entry due but not claimable (a watch at max_active_jobs, or
        # held by a busy worker) would otherwise make the loops spin on the ledger's lock.
        return max(_MIN_WAIT_S, min(_IDLE_WAIT_S, (due - self._clock()).total_seconds()))

    def _settled(self) -> bool:
        return self._unsettled_count() == 0

    def _unsettled_count(self) -> int:
        counts = self.ledger.counts()
        unsettled = (State.WAITING, State.PENDING, State.SUBMITTING)
        return sum(counts.get(state, 0) for state in unsettled)

    def _hold(self, entry_id: int) -> bool:
        with self._in_flight_lock:
            if entry_id in self._in_flight:
                return False
            self._in_flight.add(entry_id)
            return True

    def _release(self, entry_id: int) -> None:
        with self._in_flight_lock:
            self._in_flight.discard(entry_id)


def _claimed_since(entry: Entry, moment: datetime) -> bool:
    return entry.claimed_at is not None and entry.claimed_at >= moment
