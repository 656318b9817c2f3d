"""The submit side of a daemon: claims, workers, the in-flight set and stranded entries.

Every worker claims one due entry from the ledger at a time and submits it; nothing is handed
between threads except through the ledger, so a crash anywhere leaves a state the next start
knows how to finish. An entry whose outcome could not be written (a full disk) is settled by
its tag later, as a restart would.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dropzone.daemon.wakeup import Wakeup
from dropzone.ledger import EntryNotFound, LedgerError, State
from dropzone.log import get_logger

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from dropzone.daemon.parts import OpsEvents, WatchSet
    from dropzone.jobs.submitter import Submitter
    from dropzone.ledger import Entry, Ledger

IDLE_WAIT_S = 1.0
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


class SubmitWork:
    """``watches`` is read at each claim: the daemon swaps its set on a reload."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        submitter: Submitter,
        watches: Callable[[], WatchSet],
        ops: OpsEvents,
        clock: Callable[[], datetime],
        stop_event: threading.Event,
        wake: Wakeup,
    ) -> None:
        self.ledger = ledger
        self.submitter = submitter
        self._watches = watches
        self._ops = ops
        self._clock = clock
        self._stop_event = stop_event
        self.tally = RunTally()
        self.wake = wake  # new work for the workers
        self.idle = Wakeup()  # run_once looks whether all is settled
        self._in_flight: set[int] = set()
        self._unrecorded: set[int] = set()
        self._in_flight_lock = threading.Lock()
        self._cap_lock = threading.Lock()
        self.started_at = clock()  # a claim since then is this process's: not stranded
        self._log = get_logger()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def reconcile_stranded(self, *, all_of_them: bool) -> int:
        """Settle ``submitting`` entries no worker holds: at start-up all, later the due ones."""
        now = self._clock()
        count = 0
        for entry in list(self.ledger.in_state(State.SUBMITTING)):
            if self._stop_event.is_set():
                break
            if all_of_them and _claimed_since(entry, self.started_at):
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
            if self._stop_event.is_set() or not self._hold(entry_id):
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

    def start_workers(self, count: int) -> list[threading.Thread]:
        workers = [
            threading.Thread(target=self._work, name=f"submit-{i}", daemon=True)
            for i in range(count)
        ]
        for worker in workers:
            worker.start()
        return workers

    def seconds_to_next_due(self) -> float:
        due = self.ledger.next_due_at()
        if due is None:
            return IDLE_WAIT_S
        # A floor, not zero: an entry due but not claimable (a watch at max_active_jobs, or
        # held by a busy worker) would otherwise make the loops spin on the ledger's lock.
        return max(_MIN_WAIT_S, min(IDLE_WAIT_S, (due - self._clock()).total_seconds()))

    def unsettled(self) -> int:
        counts = self.ledger.counts()
        unsettled = (State.WAITING, State.PENDING, State.SUBMITTING)
        return sum(counts.get(state, 0) for state in unsettled)

    # --- internals -------------------------------------------------------------------------

    def _work(self) -> None:
        busy = True
        while not self._stop_event.is_set():
            mark = self.wake.mark()
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
                    self.idle.notify()
                self.wake.wait(mark, self._idle_wait_s())

    def _outcome(self, watch: str, state: State) -> None:
        self.tally.add(state)
        self._ops.outcome(watch, state)

    def _claim(self) -> Entry | None:
        now = self._clock()
        watches = self._watches()
        if not watches.caps:
            claimed = self.ledger.claim_due(1, now)
            return claimed[0] if claimed else None
        # With a cost guard, claim per watch, checking the cap and claiming under one lock so
        # that workers racing for the last free slot cannot overshoot it.
        with self._cap_lock:
            for watch in self._claimable_watches(watches):
                claimed = self.ledger.claim_due(1, now, watch=watch)
                if claimed:
                    return claimed[0]
        return None

    def _idle_wait_s(self) -> float:
        """How long an idle worker waits for a wake-up. With a cost guard, the entries due may
        all be held back by their watch's cap: looking again every 50 ms re-counted the ledger
        twenty times a second per worker and slowed a flood's ingestion several-fold. A slot
        frees when a job ends (tracking wakes the workers) or once a second at the latest."""
        if self._watches().caps:
            return IDLE_WAIT_S
        return min(IDLE_WAIT_S, self.seconds_to_next_due())

    def _claimable_watches(self, watches: WatchSet) -> list[str]:
        free: list[str] = []
        for name in watches.names:
            cap = watches.caps.get(name)
            if cap is not None:
                # In-flight first, then active: an entry finishing its call in between is then
                # counted twice (briefly too cautious), never missed (which overshot the cap).
                in_flight = self.ledger.counts(name)[State.SUBMITTING]
                busy = in_flight + self.ledger.active_jobs(name)
                if busy >= cap:
                    continue
            free.append(name)
        return free

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
