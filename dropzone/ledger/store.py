"""What every ledger store does, written once: the base class a store fills with a few primitives.

The model is Powertools' idempotency persistence layer: the base class owns the logic (which
state change each outcome is, how a listing page is merged, why a guarded write matched no
row), and a store (:class:`~dropzone.ledger.sqlite.SqliteLedger`) supplies transactions that
run the portable statements of :mod:`dropzone.ledger.sql`, plus what only it can know: how it
opens, whether its file is still in place, how it closes. What a store must do is specified
once, by the contract suite ``tests/ledger_contract/``, which every store passes.

Times travel as fixed-width ISO-8601 UTC text (:func:`~dropzone.ledger.model.to_text`): it
sorts in time order in any engine, so the SQL compares them without a store's own types.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from functools import partial
from typing import TYPE_CHECKING, Self

from dropzone.ledger import model, sql
from dropzone.ledger.diff import Listed, Page, diff_page
from dropzone.ledger.leases import Leases
from dropzone.ledger.model import (
    ClaimLost,
    Entry,
    EntryNotFound,
    InvalidTransition,
    LedgerFailed,
    OnChange,
    Recorded,
    RequestCounts,
    ScopeStatus,
    State,
    from_text,
    to_text,
)
from dropzone.ledger.operator import OperatorWrites
from dropzone.ledger.outbox import Outbox
from dropzone.ledger.queries import Queries
from dropzone.ledger.rows import entry_of, new_entry

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from contextlib import AbstractContextManager
    from datetime import datetime
    from types import TracebackType

    from dropzone.ledger.diff import Known
    from dropzone.ledger.primitives import Row, Tx


class LedgerStore(Queries, OperatorWrites, Leases, Outbox, ABC):
    """The :class:`~dropzone.ledger.protocol.Ledger` over a store's primitives."""

    # --- the primitives a store supplies -----------------------------------------------

    @property
    @abstractmethod
    def where(self) -> str:
        """The store as messages name it (the file, the server and database)."""

    @abstractmethod
    def write(self, *, durable: bool = True) -> AbstractContextManager[Tx]:
        """One write transaction, committed when the block ends without error: on disk when
        the call returns, or, with ``durable=False``, at the latest with the next durable
        commit (a store whose commits cost this process nothing to wait for may keep every
        one durable)."""

    # How an INSERT keeps the ids it is given (``ledger copy``); after it, what makes the next
    # new id follow them. SQLite takes given ids as they are.
    keep_ids_clause = ""

    def after_copy(self, tx: Tx, highest_id: int) -> None:
        """Called in the copy's transaction once every row is in; ``highest_id``: the highest
        id the source ever gave (new ids must follow it)."""

    @abstractmethod
    def next_token(self, tx: Tx) -> int:
        """A fencing token greater than every one given before (a sequence of the store's)."""

    def lock_watch(self, tx: Tx, watch: str) -> None:
        """Hold the watch's cap until ``tx`` ends, so that two claims cannot both take its last
        free slot; a store whose write transactions are serialised anyway has nothing to do."""

    def highest_id(self, tx: Tx) -> int:
        """The highest entry id this store has given, the deleted ones' included where it
        knows them."""
        return int(tx.rows("SELECT coalesce(max(id), 0) AS highest FROM entries")[0]["highest"])

    def unsynced(self) -> bool:
        """Whether a commit made with ``durable=False`` may not be on disk yet (a store that
        keeps every commit durable has none)."""
        return False

    @abstractmethod
    def displaced(self) -> str | None:
        """Why what is written now would be lost to the next start, or None."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- guarded writes ----------------------------------------------------------------

    def _apply(
        self,
        write: sql.Guarded,
        entry_id: int,
        sets: tuple[object, ...],
        now: datetime,
        fence: int | None = None,
        *,
        outcome: bool = False,
        ends_attempt: bool = False,
    ) -> Entry:
        """Run a state-guarded write in a transaction of its own; with ``fence``, only while
        the entry's claim is still that token's. ``outcome``: the write ends the upload, and
        a watch that asked to hear of that hears of it, by a notice in the same transaction
        (only this write tells: later writes of the entry leave the outcome as it was).

        ``ends_attempt``: what an attempt ended in (a job made, a duplicate, a refusal, a
        retry). Its commit need not wait for the disk: a power cut that loses it leaves the
        entry in ``submitting`` under its durable claim, which is reconciled by its tag as
        after a crash between the Create and its outcome, and the worker's next claim (a
        durable commit, made at once) takes it to disk. One fsync a job instead of two."""
        with self.write(durable=not ends_attempt) as tx:
            entry = _guarded(tx, write, entry_id, sets, now, fence)
            if outcome:
                self.tell(tx, entry, now)
            return entry

    # --- scope -------------------------------------------------------------------------

    def begin_watch(self, watch: str, bucket: str, prefix: str, now: datetime) -> ScopeStatus:
        """Record the watch's scope. A changed bucket or prefix starts a new baseline: the
        watch's entries are marked gone (pruned later, unless the new listing finds them)."""
        stamp = to_text(now)
        with self.write() as tx:
            rows = tx.rows(sql.WATCH_SCOPE, (watch,))
            if not rows:
                tx.run(sql.BEGIN_WATCH, (watch, bucket, prefix, stamp))
                return ScopeStatus.FIRST_START
            if (rows[0]["bucket"], rows[0]["prefix"]) == (bucket, prefix):
                return ScopeStatus.UNCHANGED
            tx.run(sql.RESCOPE_WATCH, (bucket, prefix, stamp, watch))
            tx.run(sql.RESCOPE_ENTRIES, (stamp, watch))
            return ScopeStatus.CHANGED

    def baseline_done(self, watch: str) -> bool:
        """Whether the watch's first full listing (of its current scope) completed."""
        with self.read() as tx:
            rows = tx.rows(sql.BASELINE_DONE, (watch,))
        return bool(rows and rows[0]["baseline_done"])

    def mark_baseline_done(self, watch: str) -> None:
        with self.write() as tx:
            if tx.run(sql.MARK_BASELINE_DONE, (watch,)) == 0:
                raise LedgerFailed(f"ledger {self.where}: watch {watch!r} was never begun")

    # --- what sources saw --------------------------------------------------------------

    def record_page(
        self,
        watch: str,
        bucket: str,
        page: Page,
        *,
        new_state: State,
        on_change: OnChange,
        now: datetime,
    ) -> Recorded:
        """Merge one listing page into the ledger, in one transaction.

        New keys go in as ``new_state`` (PENDING, or BASELINE during a first listing). New
        versions of known keys go in as PENDING with ``on_change="resubmit"``, and as BASELINE
        with ``on_change="ignore"`` (noted in ``error``) or during a first listing. An
        unchanged page costs one indexed range read and no write; a first listing's plain
        baseline versions go in by one batched insert, counted in ``Recorded.baseline``.
        """
        listed, range_read = page.listed, partial(_known, watch=watch, bucket=bucket, page=page)
        return self._merge(
            (watch, bucket), listed, range_read, new_state, on_change, now, count_baseline=True
        )

    def record_object(
        self,
        watch: str,
        bucket: str,
        found: Listed,
        *,
        new_state: State,
        on_change: OnChange,
        now: datetime,
    ) -> list[Entry]:
        """Merge one object as a lookup of its key saw it (an event's hint, confirmed by a
        HEAD), as a listing of that key alone would: a new key or version is recorded, other
        versions of the key are marked gone, a known version changes nothing."""

        def key_read(tx: Tx) -> list[Known]:
            rows: list[Known] = tx.tuples(sql.KNOWN_KEY, (watch, bucket, found.key))
            return rows

        recorded = self._merge((watch, bucket), [found], key_read, new_state, on_change, now)
        return recorded.entries

    def _merge(
        self,
        scope: tuple[str, str],
        listed: Sequence[Listed],
        read_known: Callable[[Tx], list[Known]],
        new_state: State,
        on_change: OnChange,
        now: datetime,
        *,
        count_baseline: bool = False,
    ) -> Recorded:
        if new_state not in {State.PENDING, State.BASELINE}:
            raise ValueError(f"new objects start as pending or baseline, not {new_state}")
        ignored = new_state is State.BASELINE or on_change == "ignore"
        version_state = State.BASELINE if ignored else State.PENDING
        version_note = "on_change=ignore" if on_change == "ignore" else None
        stamp = to_text(now)
        with self.write() as tx:
            diff = diff_page(listed, read_known(tx))
            if not diff:
                return Recorded([])
            if diff.gone:
                tx.run_many(sql.MARK_GONE, [(stamp, entry_id) for entry_id in diff.gone])
            if diff.back:
                tx.run_many(sql.MARK_BACK, [(entry_id,) for entry_id in diff.back])
            quiet: list[Listed] = []  # plain baseline, counted rather than built
            told: list[tuple[Listed, State, str | None]] = []
            for items, state, note in (
                (diff.new, new_state, None),
                (diff.new_versions, version_state, version_note),
            ):
                if count_baseline and state is State.BASELINE and note is None:
                    quiet.extend(items)
                else:
                    told.extend((item, state, note) for item in items)
            baseline = _insert_baseline(tx, scope, quiet, stamp) if quiet else 0
            created = _insert(tx, scope, told, now)
        return Recorded(sorted(created, key=lambda entry: entry.key), baseline)

    def add_object(
        self, watch: str, bucket: str, key: str, etag: str, size: int, state: State, now: datetime
    ) -> tuple[Entry, bool]:
        """Record one version unless known; returns its entry and whether it was created."""
        if state not in model.START_STATES:
            raise ValueError(f"an entry starts as baseline, waiting or pending, not {state}")
        with self.write() as tx:
            created = _insert(tx, (watch, bucket), [(Listed(key, etag, size), state, None)], now)
            if created:
                return created[0], True
            rows = tx.rows(sql.SELECT_IDENTITY, (watch, bucket, key, etag))
        return entry_of(rows[0]), False

    def add_objects(
        self,
        watch: str,
        bucket: str,
        found: Sequence[tuple[Listed, State, str | None]],
        now: datetime,
    ) -> list[Entry]:
        """Record many versions in one transaction, each unless known; returns those created.

        A version found unusable as it was detected (a file that cannot be read, an upload the
        store refuses) starts ``rejected`` with its reason: visible, and never claimed."""
        for _, state, _ in found:
            if state not in model.START_STATES and state is not State.REJECTED:
                raise ValueError(f"an entry starts as baseline, waiting or pending, not {state}")
        if not found:
            return []
        with self.write() as tx:
            created = _insert(tx, (watch, bucket), found, now)
            for entry in created:
                self.tell(tx, entry, now)
            return created

    def update_waiting(self, entry_id: int, etag: str, size: int, now: datetime) -> Entry:
        """A local file still settling changed: its waiting entry takes the new version.

        A :class:`LedgerFailed` if that version already has an entry of its own.
        """
        with self.write() as tx:
            rows = tx.rows(sql.SELECT_ID, (entry_id,))
            if rows:
                found = rows[0]
                identity = (found["watch"], found["bucket"], found["key"], etag)
                if found["etag"] != etag and tx.rows(sql.SELECT_IDENTITY, identity):
                    raise LedgerFailed(
                        f"entry {entry_id}: version {etag} of {found['key']} already has an"
                        " entry of its own"
                    )
            return _guarded(tx, sql.NEW_VERSION, entry_id, (etag, size), now)

    def promote_waiting(self, entry_id: int, now: datetime) -> Entry:
        """A waiting entry is ready: pending, due now."""
        return self._apply(sql.PROMOTE, entry_id, (), now)

    # --- claims ------------------------------------------------------------------------

    def claim_due(
        self, limit: int, now: datetime, watch: str | None = None, *, node: str | None = None
    ) -> list[Entry]:
        """Move up to ``limit`` due pending entries to submitting, oldest first, stamped with
        a new fencing token and ``node``.

        One conditional UPDATE: however many threads or processes claim at once, each entry
        is claimed by exactly one of them. The attempt count goes up by one.
        """
        return self.settle_and_claim((), limit, now, watch=watch, node=node).entries

    def claim_capped(
        self, watch: str, cap: int, limit: int, now: datetime, *, node: str | None = None
    ) -> list[Entry]:
        """As :meth:`claim_due` for one watch with ``max_active_jobs = cap``: its jobs still
        active and its attempts in flight (on any node) are counted, and the claim takes only
        the free slots, in one transaction that holds the watch's cap."""
        return self.settle_and_claim((), limit, now, watch=watch, cap=cap, node=node).entries

    def settle_and_claim(
        self,
        made: Sequence[model.JobMade],
        limit: int,
        now: datetime,
        *,
        watch: str | None = None,
        cap: int | None = None,
        node: str | None = None,
    ) -> model.Claim:
        """Record the jobs ``made`` and claim (:meth:`claim_due`, or :meth:`claim_capped` with
        a ``cap``, which needs ``watch``) in one durable transaction: an attempt's outcome
        shares the commit of the next claim, where it had one of its own (a transaction, a
        commit and the entry read back, for a row the worker does not read)."""
        try:
            with self.write() as tx:
                if cap is None:
                    refused = _record_made(tx, made)
                    claimed = self._claim(tx, limit, now, watch, node)
                else:
                    if watch is None:
                        raise ValueError("a capped claim is one watch's")
                    self.lock_watch(tx, watch)
                    # Recorded after the count or before it, an attempt is one of the cap's
                    # either way: in flight while submitting, an active job once submitted.
                    refused = _record_made(tx, made)
                    in_flight = tx.rows(sql.IN_FLIGHT, (watch, State.SUBMITTING))[0]
                    active = tx.rows(sql.ACTIVE_JOBS, (watch, State.SUBMITTED))[0]
                    free = min(limit, cap - int(in_flight["in_flight"]) - int(active["active"]))
                    claimed = self._claim(tx, free, now, watch, node) if free > 0 else []
                # Nothing claimed, nothing recorded, no earlier outcome left to sync: only the
                # token moved. An idle worker claims about once a second, and each such
                # commit synced the disk.
                _roll_back_unless(bool(claimed or made) or self.unsynced())
                return model.Claim(claimed, refused)
        except _NothingToCommit:
            return model.Claim([], [])

    def record_jobs_made(self, made: Sequence[model.JobMade]) -> list[model.JobMade]:
        """Record the jobs ``made`` in one transaction (not durable: as any attempt's outcome,
        :meth:`_apply`); returns those whose claim was taken over meanwhile (not recorded)."""
        if not made:
            return []
        with self.write(durable=False) as tx:
            return _record_made(tx, made)

    def _claim(
        self, tx: Tx, limit: int, now: datetime, watch: str | None, node: str | None
    ) -> list[Entry]:
        """Up to ``limit`` due entries claimed under one new token, oldest first."""
        rows = self.claim_rows(tx, limit, to_text(now), watch, (self.next_token(tx), node))
        return sorted(map(entry_of, rows), key=lambda entry: (entry.first_seen_at, entry.id))

    def claim_rows(
        self, tx: Tx, limit: int, now: str, watch: str | None, claim: tuple[int, str | None]
    ) -> list[Row]:
        """The claim itself, one statement; ``claim``: its token and node. A store whose
        engine plans it differently (a subquery the planner may run again) gives its own."""
        pending = State.PENDING
        values = (model.CLAIM.target, now, *claim, now, pending, now, watch, watch, limit, pending)
        return tx.rows(sql.CLAIM_DUE, values)

    def claim_one(self, entry_id: int, now: datetime, *, node: str | None = None) -> Entry | None:
        """Claim this entry now, due or not; None if it is not pending (or not there)."""
        stamp = to_text(now)
        with self.write() as tx:
            claim = (stamp, self.next_token(tx), node)
            rows = tx.rows(sql.CLAIM_ONE.sql, sql.CLAIM_ONE.values(claim, stamp, entry_id))
        return entry_of(rows[0]) if rows else None

    def take_over(self, entry: Entry, node: str, now: datetime) -> Entry | None:
        """Take a stranded ``submitting`` entry over to reconcile it: a new token and owner,
        so that its former owner, should it wake up, records nothing more. None when another
        node took it first, or it moved on meanwhile."""
        seen = (entry.claim_token or 0,)
        with self.write() as tx:
            sets = (self.next_token(tx), node)
            values = sql.TAKE_OVER.values(sets, to_text(now), entry.id, seen)
            rows = tx.rows(sql.TAKE_OVER.sql, values)
        return entry_of(rows[0]) if rows else None

    # --- outcomes ----------------------------------------------------------------------

    def record_submitted(
        self,
        entry_id: int,
        job_id: str,
        output_dir: str | None,
        now: datetime,
        *,
        input_tag: str | None = None,
        fence: int | None = None,
    ) -> Entry:
        values = (job_id, output_dir, input_tag)
        return self._apply(sql.SUBMITTED, entry_id, values, now, fence, ends_attempt=True)

    def record_duplicate(
        self,
        entry_id: int,
        existing_job_id: str,
        output_dir: str | None,
        now: datetime,
        *,
        input_tag: str | None = None,
        awaits_job: bool = False,
        fence: int | None = None,
    ) -> Entry:
        """``awaits_job``: the entry is another version than the input of the job the guard
        named, and goes back to pending once that job ends (:meth:`end_wait`)."""
        sets = (existing_job_id, output_dir, input_tag, int(awaits_job))
        return self._apply(
            sql.DUPLICATE, entry_id, sets, now, fence, outcome=True, ends_attempt=True
        )

    def end_wait(self, entry_id: int, job_id: str, phase: str, now: datetime) -> Entry | None:
        """A duplicate awaiting ``job_id``, which ended in ``phase``: back to pending, due now.

        One conditional write, so it happens once however often the job is seen ended; None
        when the entry no longer awaits that job (retried, forgotten, or released already).
        """
        note = f"job {job_id} of another version ended {phase}; this version is submitted now"
        values = sql.AWAITED.values((note,), to_text(now), entry_id, (job_id,))
        with self.write() as tx:
            rows = tx.rows(sql.AWAITED.sql, values)
        return entry_of(rows[0]) if rows else None

    def record_rejected(
        self, entry_id: int, reason: str, now: datetime, *, fence: int | None = None
    ) -> Entry:
        return self._apply(
            sql.REJECTED, entry_id, (reason,), now, fence, outcome=True, ends_attempt=True
        )

    def record_invalid(
        self, entry_id: int, reason: str, now: datetime, *, fence: int | None = None
    ) -> Entry:
        return self._apply(
            sql.INVALID, entry_id, (reason,), now, fence, outcome=True, ends_attempt=True
        )

    def schedule_retry(
        self,
        entry_id: int,
        next_attempt_at: datetime,
        reason: str,
        now: datetime,
        *,
        transient: bool,
        fence: int | None = None,
    ) -> Entry:
        """Back to pending, due at ``next_attempt_at``; the attempt count is kept.

        ``transient``: the attempt failed transiently, and counts as one more transient
        failure; a throttled or unauthorised attempt does not.
        """
        sets = (to_text(next_attempt_at), reason, int(transient))
        return self._apply(sql.RETRY_LATER, entry_id, sets, now, fence, ends_attempt=True)

    def release(self, entry_id: int, now: datetime, *, fence: int | None = None) -> Entry:
        """Back to pending, due now: no call was made, or reconciliation found no job."""
        return self._apply(sql.RELEASE, entry_id, (), now, fence)

    def mark_sending(
        self, entry_id: int, signed_at: datetime, *, fence: int | None = None
    ) -> Entry:
        """A submitting entry's Create is about to be sent: ``claimed_at`` dates the attempt
        by the moment its request was signed. The attempt's last write before its Create,
        so that a node which lost its claim meanwhile sends nothing."""
        return self._apply(sql.SENDING, entry_id, (to_text(signed_at),), signed_at, fence)

    def defer_reconcile(
        self,
        entry_id: int,
        next_attempt_at: datetime,
        reason: str,
        now: datetime,
        *,
        transient: bool = False,
        fence: int | None = None,
    ) -> Entry:
        """Keep a submitting entry whose outcome is still unknown; look again at the time.

        ``claimed_at`` is kept: it still dates the attempt that is being reconciled.
        ``transient``: the look failed (Ark did not answer), one more transient failure.
        """
        sets = (to_text(next_attempt_at), reason, int(transient))
        return self._apply(sql.DEFER, entry_id, sets, now, fence)

    def record_phase(
        self, entry_id: int, phase: str, request_counts: RequestCounts | None, now: datetime
    ) -> Entry:
        """The job's latest phase, and its request counts when the answer had them."""
        counts = (
            (None, None, None)
            if request_counts is None
            else (request_counts.total, request_counts.completed, request_counts.failed)
        )
        with self.write() as tx:
            rows = tx.rows(sql.SET_PHASE, (phase, *counts, to_text(now), entry_id))
            if not rows:
                if tx.rows(sql.SELECT_STATE, (entry_id,)):
                    raise LedgerFailed(f"entry {entry_id} has no job whose phase could change")
                raise EntryNotFound(entry_id)
            entry = entry_of(rows[0])
            if entry.state is State.SUBMITTED:
                # A job of its own ending; a duplicate follows the job it names, but was told
                # of as it was recorded.
                self.tell(tx, entry, now)
        return entry


def _guarded(
    tx: Tx,
    write: sql.Guarded,
    entry_id: int,
    sets: tuple[object, ...],
    now: datetime,
    fence: int | None = None,
) -> Entry:
    """A state-guarded write (and fenced, with a token); refused, say why (the entry is gone,
    elsewhere, or another node's now)."""
    if fence is None:
        rows = tx.rows(write.sql, write.values(sets, to_text(now), entry_id))
    else:
        rows = tx.rows(write.fenced_sql, write.values(sets, to_text(now), entry_id, (fence,)))
    if not rows:
        _refuse(tx, entry_id, write.target, fence)
    return entry_of(rows[0])


class _NothingToCommit(Exception):
    """Raised in a write transaction that changed nothing worth keeping: rolled back."""


def _roll_back_unless(changed: bool) -> None:
    if not changed:
        raise _NothingToCommit


def _record_made(tx: Tx, made: Sequence[model.JobMade]) -> list[model.JobMade]:
    """Each job made recorded as its entry's outcome, where its claim is still the entry's;
    those refused, returned."""
    refused: list[model.JobMade] = []
    for job in made:
        sets = (job.job_id, job.output_dir, None)
        values = sql.SUBMITTED.values(sets, to_text(job.at), job.entry_id, (job.fence,))
        if tx.run(sql.SUBMITTED.fenced_update, values) != 1:
            refused.append(job)
    return refused


def _refuse(tx: Tx, entry_id: int, target: State, fence: int | None) -> None:
    """Say why a guarded write matched no row: the entry is gone, another node holds its
    claim now, or it is in the wrong state."""
    rows = tx.rows(sql.SELECT_STATE, (entry_id,))
    if not rows:
        raise EntryNotFound(entry_id)
    found = rows[0]
    if fence is not None and found["claim_token"] != fence:
        raise ClaimLost(entry_id, fence, found["claimed_by"])
    raise InvalidTransition(State(found["state"]), target, entry_id)


def _known(tx: Tx, *, watch: str, bucket: str, page: Page) -> list[Known]:
    # Plain tuples, handed to the diff as they come: this is the poll's hot path.
    bounds = tuple(bound for bound in (page.after, page.through) if bound is not None)
    statement = sql.KNOWN[page.after is None, page.through is None]
    rows: list[Known] = tx.tuples(statement, (watch, bucket, *bounds))
    return rows


def _insert(
    tx: Tx,
    scope: tuple[str, str],
    items: Sequence[tuple[Listed, State, str | None]],
    now: datetime,
) -> list[Entry]:
    """Insert the versions not yet known; returns the entries created.

    The entries are built from what was inserted rather than read back: a first listing
    inserts every object of the bucket, and parsing each row again would double its cost.
    """
    watch, bucket = scope
    stamp = to_text(now)
    moment = from_text(stamp)  # the stored precision, as a read would return it
    created: list[Entry] = []
    for item, state, note in items:
        values = (watch, bucket, item.key, item.etag, item.size, state, note, stamp, stamp)
        for (entry_id,) in tx.tuples(sql.INSERT, values):
            created.append(new_entry(entry_id, scope, item, state, note, moment))
    return created


def _insert_baseline(tx: Tx, scope: tuple[str, str], items: Sequence[Listed], stamp: str) -> int:
    """Insert baseline versions by one batched statement, without reading their ids back;
    returns how many went in (a version already known is skipped)."""
    watch, bucket = scope
    rows = [(watch, bucket, item.key, item.etag, item.size, stamp, stamp) for item in items]
    return tx.run_many(sql.INSERT_BASELINE, rows)
