"""The submit side of a daemon: claims, workers, the in-flight set and stranded entries.

A worker with nothing in hand takes the next entry this node has claimed, and when there is
none, claims up to ``claim_ahead`` due entries in one transaction (one durable commit for as
many Creates, where a claim each cost a synced commit each: the largest CPU cost a job had
beyond the bare call). The same transaction records the jobs made since the last claim
(:mod:`dropzone.jobs.made`), and a worker that finds nothing to claim, or a drain, records
those left alone. Claims are committed before any of their Creates is sent, so a crash
anywhere leaves a state the next start knows how to finish: a claim never sent is reconciled
by its tag like any other. A drain gives back the claims no worker took. An entry whose
outcome could not be written (a full disk) is settled by its tag later, as a restart would.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dropzone.daemon.wakeup import Wakeup
from dropzone.ledger import ClaimLost, EntryNotFound, LedgerError, State
from dropzone.log import get_logger

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from dropzone.daemon.parts import OpsEvents, WatchSet
    from dropzone.jobs.submitter import Submitter
    from dropzone.ledger import Entry, JobMade, Ledger

IDLE_WAIT_S = 1.0
_MIN_WAIT_S = 0.05
_UNRECORDED = "its outcome could not be recorded"
# A claim takes what the workers may send within about this long. Each claim is a durable
# commit, so a larger one costs a job less; its entries wait in memory until a worker sends
# them, and one claimed more than a second before its Create is re-dated (one commit more).
CLAIM_HORIZON_S = 0.5
MAX_CLAIM_PER_WORKER = 4


def claim_size(workers: int, requests_per_second: float) -> int:
    """How many due entries one claim takes: a worker's worth at least, and as many as the
    request cap lets go out within :data:`CLAIM_HORIZON_S`, up to four a worker."""
    by_rate = int(requests_per_second * CLAIM_HORIZON_S)
    return max(1, workers, min(MAX_CLAIM_PER_WORKER * workers, by_rate))


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


def _fixed(size: int) -> Callable[[], int]:
    return lambda: size


class SubmitWork:
    """``watches`` is read at each claim: the daemon swaps its set on a reload."""

    def __init__(  # noqa: PLR0913 - every parameter is an independent, injected part
        self,
        *,
        ledger: Ledger,
        submitter: Submitter,
        watches: Callable[[], WatchSet],
        ops: OpsEvents,
        clock: Callable[[], datetime],
        stop_event: threading.Event,
        wake: Wakeup,
        node: str,
        claim_ahead: int | Callable[[], int] = 1,
    ) -> None:
        """``node``: this process's id in the ledger, stamped on its claims. ``claim_ahead``:
        how many due entries one claim takes at most, or what tells it at each claim (the
        daemon's :func:`claim_size`, from the request cap this node has now)."""
        self.ledger = ledger
        self.node = node
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
        self._claim_ahead: Callable[[], int] = (
            claim_ahead if callable(claim_ahead) else _fixed(max(1, claim_ahead))
        )
        self._claimed: deque[Entry] = deque()  # claimed here, held, no worker's yet
        self._claimed_lock = threading.Lock()
        self._claim_done = threading.Condition(self._claimed_lock)
        self._claiming = False  # a worker is claiming, outside the lock
        self._log = get_logger()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def reconcile_stranded(self) -> int:
        """Settle ``submitting`` entries no worker here holds: this node's that are due to be
        looked at again, and those of nodes that are gone (a crash, a lapsed lease), each
        taken over first so that its former node records nothing more."""
        now = self._clock()
        count = 0
        for stranded in self.ledger.stranded(self.node, now):
            entry = stranded.entry
            if self._stop_event.is_set():
                break
            if not self._hold(entry.id):
                continue
            try:
                if entry.claimed_by != self.node:
                    taken = self.ledger.take_over(entry, self.node, now)
                    if taken is None:
                        continue  # another node took it first, or it moved on
                    self._log.info(
                        "claim.taken_over",
                        entry_id=entry.id,
                        key=entry.key,
                        from_node=entry.claimed_by,
                        owner_may_live=stranded.owner_may_live,
                    )
                    entry = taken
                state = self.submitter.reconcile(
                    entry, reason="found in submitting", owner_may_live=stranded.owner_may_live
                )
                self._outcome(entry.watch, state)
                count += 1
            except ClaimLost as exc:
                self._claim_lost(exc)
            except LedgerError as exc:
                self._log.error("ledger.failed", error=str(exc), entry_id=entry.id)
                with self._in_flight_lock:
                    self._unrecorded.add(entry.id)
            finally:
                self._release(entry.id)
        return count

    def record_jobs_made(self) -> None:
        """Write the jobs made that no claim took with it yet; a failed write keeps them for
        the next (a drain's failure leaves their entries to be reconciled by tag)."""
        jobs_made = self.submitter.jobs_made
        if jobs_made is None or not len(jobs_made):
            return
        made = jobs_made.take()
        try:
            refused = self.ledger.record_jobs_made(made)
        except LedgerError as exc:
            jobs_made.give_back(made)
            self._log.error("ledger.failed", error=str(exc), jobs_made=len(made))
            return
        self._refused(refused)

    def submit_one(self) -> bool:
        """Submit the next entry claimed here, claiming when there is none; False when
        nothing was due."""
        entry = self._next_claimed()
        if entry is None:
            return False
        try:
            self._outcome(entry.watch, self.submitter.submit(entry))
        except ClaimLost as exc:
            self._claim_lost(exc)
        except LedgerError:
            with self._in_flight_lock:
                self._unrecorded.add(entry.id)
            raise
        finally:
            self._release(entry.id)
        return True

    def release_claimed(self) -> int:
        """Give back the claims no worker took (at a drain): pending again, no Create sent
        for them. One that cannot be given back stays ``submitting`` under this node's claim,
        and is reconciled by its tag (a later start, or another node)."""
        self.record_jobs_made()
        with self._claimed_lock:
            waiting = list(self._claimed)
            self._claimed.clear()
        released = 0
        for entry in waiting:
            try:
                self.ledger.release(entry.id, self._clock(), fence=entry.claim_token)
                released += 1
            except ClaimLost as exc:
                self._claim_lost(exc)
            except LedgerError as exc:
                self._log.error("ledger.failed", error=str(exc), entry_id=entry.id)
            finally:
                self._release(entry.id)
        return released

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
                if entry.state is State.SUBMITTING and entry.claimed_by == self.node:
                    self._outcome(entry.watch, self.submitter.reconcile(entry, reason=_UNRECORDED))
            except EntryNotFound:
                pass  # nothing left to settle
            except ClaimLost as exc:
                self._claim_lost(exc)
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

    def seconds_to_next_due(self, *, while_due: float = _MIN_WAIT_S) -> float:
        """Until the next pending entry comes due, at most a second; ``while_due``: the wait
        while some are due now. A floor, not zero, for the workers: an entry due but not
        claimable (a watch at max_active_jobs, or held by a busy worker) would otherwise make
        them spin on the ledger's lock. ``run --once`` waits a second then, for the workers
        are on those entries and say when they go idle (it looked every 50 ms, re-reading the
        ledger under its lock twenty times a second while they worked)."""
        due = self.ledger.next_due_at()
        if due is None:
            return IDLE_WAIT_S
        left = (due - self._clock()).total_seconds()
        if left <= 0:
            return while_due
        return max(_MIN_WAIT_S, min(IDLE_WAIT_S, left))

    def unsettled(self) -> int:
        self.record_jobs_made()  # else counted as submitting still
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
                self.record_jobs_made()  # a claim that found nothing wrote them, unless it failed
                if was_busy:  # only then: run_once need not look again at every idle turn
                    self.idle.notify()
                self.wake.wait(mark, self._idle_wait_s())

    def _claim_lost(self, exc: ClaimLost) -> None:
        """This node was stalled or cut off past its lease, and another took the attempt over:
        not a failure of the entry's, whose outcome the new owner finds."""
        self._log.warning(
            "claim.lost", entry_id=exc.entry_id, token=exc.token, held_by=exc.holder, node=self.node
        )

    def _outcome(self, watch: str, state: State) -> None:
        self.tally.add(state)
        self._ops.outcome(watch, state)

    def _next_claimed(self) -> Entry | None:
        """The next entry claimed here. The next claim is made while some claimed are left,
        by the worker that took one of the last: the others take theirs meanwhile, where they
        all waited for each claim's durable commit."""
        limit = max(1, self._claim_ahead())
        with self._claimed_lock:
            while not self._claimed and self._claiming:
                self._claim_done.wait()  # another worker's claim, whose entries are for all
            entry = self._claimed.popleft() if self._claimed else None
            refill = (
                # Half a claim left: the next claim's commit is made while they are sent.
                len(self._claimed) < (limit + 1) // 2
                and not self._claiming
                and not self._stop_event.is_set()
            )
            self._claiming = self._claiming or refill
        if not refill:
            return entry
        try:
            self._refill(limit)
        except LedgerError as exc:
            if entry is None:
                raise
            self._log.error("ledger.failed", error=str(exc))  # the entry in hand goes on
        if entry is not None:
            return entry
        with self._claimed_lock:
            return self._claimed.popleft() if self._claimed else None

    def _refill(self, limit: int) -> None:
        claimed: list[Entry] = []
        try:
            claimed = self._claim(limit)
        finally:
            with self._claimed_lock:
                for entry in claimed:
                    self._hold(entry.id)  # held from its claim: nothing here reconciles it
                    self._claimed.append(entry)
                self._claiming = False
                self._claim_done.notify_all()

    def _claim(self, limit: int) -> list[Entry]:
        jobs_made = self.submitter.jobs_made
        made = jobs_made.take() if jobs_made is not None else []
        try:
            return self._claim_recording(made, limit)
        except LedgerError:
            if jobs_made is not None:
                jobs_made.give_back(made)
            raise

    def _claim_recording(self, made: list[JobMade], limit: int) -> list[Entry]:
        """Claim, the jobs ``made`` recorded in the first claim's transaction."""
        now = self._clock()
        watches = self._watches()
        if not watches.caps:
            claim = self.ledger.settle_and_claim(made, limit, now, node=self.node)
            self._refused(claim.refused)
            return claim.entries
        # With a cost guard, claim per watch: a capped watch's active jobs and attempts in
        # flight (on every node) are counted and its free slots claimed in one transaction.
        for name in watches.names:
            claim = self.ledger.settle_and_claim(
                made, limit, now, watch=name, cap=watches.caps.get(name), node=self.node
            )
            self._refused(claim.refused)
            made.clear()  # written: nothing for the next watch's claim, nor to give back
            if claim.entries:
                return claim.entries
        return []

    def _refused(self, refused: list[JobMade]) -> None:
        """Jobs made whose claim another node took over before they were written: theirs to
        record now (it finds the job by its tag), as when the write came at once."""
        for job in refused:
            self._log.warning(
                "claim.lost",
                entry_id=job.entry_id,
                token=job.fence,
                job_id=job.job_id,
                node=self.node,
            )

    def _idle_wait_s(self) -> float:
        """How long an idle worker waits for a wake-up. With a cost guard, the entries due may
        all be held back by their watch's cap: looking again every 50 ms re-counted the ledger
        twenty times a second per worker and slowed a flood's ingestion several-fold. A slot
        frees when a job ends (tracking wakes the workers) or once a second at the latest."""
        if self._watches().caps:
            return IDLE_WAIT_S
        try:
            return min(IDLE_WAIT_S, self.seconds_to_next_due())
        except LedgerError as exc:
            # The ledger that failed the claim may fail this look too (a server's connections
            # cut): the worker waits its longest and lives, where the error ended its thread.
            self._log.error("ledger.failed", error=str(exc))
            return IDLE_WAIT_S

    def _hold(self, entry_id: int) -> bool:
        with self._in_flight_lock:
            if entry_id in self._in_flight:
                return False
            self._in_flight.add(entry_id)
            return True

    def _release(self, entry_id: int) -> None:
        with self._in_flight_lock:
            self._in_flight.discard(entry_id)
