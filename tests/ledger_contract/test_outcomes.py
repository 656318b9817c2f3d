"""The contract: outcomes, each a guarded move of the transition table."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from dropzone.ledger import (
    EntryNotFound,
    InvalidTransition,
    Ledger,
    LedgerError,
    RequestCounts,
    State,
)
from tests.ledger_contract.helpers import T0, W, add, at, submitting

if TYPE_CHECKING:
    from tests.ledger_contract.conftest import Store


def test_record_submitted(ledger: Ledger) -> None:
    """Submitted: the job id and output folder are kept, the last error cleared."""
    entry = submitting(ledger)
    done = ledger.record_submitted(entry.id, "bi-1", "out/a/", at(2), input_tag="tag")
    assert (done.state, done.job_id, done.output_dir, done.input_tag) == (
        State.SUBMITTED,
        "bi-1",
        "out/a/",
        "tag",
    )
    assert (done.error, done.updated_at, done.claimed_at) == (None, at(2), at(1))
    assert ledger.get(entry.id) == done


def test_record_duplicate(ledger: Ledger) -> None:
    """Duplicate: the guard's existing job id is recorded."""
    entry = submitting(ledger)
    dup = ledger.record_duplicate(entry.id, "bi-other", "out/a/", at(2))
    assert (dup.state, dup.job_id) == (State.DUPLICATE, "bi-other")


def test_an_awaiting_duplicate_goes_back_to_pending_once_its_job_ended(
    ledger: Ledger,
) -> None:
    """A duplicate marked to await its job is tracked like one; once that job ended it is
    pending again (due now, the job dropped, a note why), exactly once: a second end, or an
    end of another job, changes nothing."""
    entry = submitting(ledger)
    waiting = ledger.record_duplicate(entry.id, "bi-v1", "out/a/", at(2), awaits_job=True)
    assert (waiting.state, waiting.job_id, waiting.awaits_job) == (State.DUPLICATE, "bi-v1", True)
    assert [e.id for e in ledger.tracking(10)] == [entry.id]
    ledger.record_phase(entry.id, "Running", RequestCounts(10, 4, 0), at(3))
    assert ledger.end_wait(entry.id, "bi-other", "Completed", at(4)) is None

    back = ledger.end_wait(entry.id, "bi-v1", "Completed", at(5))
    assert back is not None
    assert (back.state, back.job_id, back.phase, back.request_counts) == (
        State.PENDING,
        None,
        None,
        None,
    )
    assert (back.awaits_job, back.output_dir, back.next_attempt_at) == (False, None, None)
    assert (
        back.error == "job bi-v1 of another version ended Completed; this version is submitted now"
    )
    assert ledger.end_wait(entry.id, "bi-v1", "Completed", at(6)) is None
    assert ledger.tracking(10) == []
    assert [e.id for e in ledger.claim_due(10, at(6))] == [entry.id]


def test_a_duplicate_that_does_not_await_is_never_released(ledger: Ledger) -> None:
    """A plain duplicate (the default "resubmit") is an outcome: its job's end leaves it."""
    entry = submitting(ledger)
    ledger.record_duplicate(entry.id, "bi-v1", None, at(2))
    assert ledger.end_wait(entry.id, "bi-v1", "Completed", at(3)) is None
    assert ledger.get(entry.id).state is State.DUPLICATE


@pytest.mark.parametrize("start", [State.PENDING, State.SUBMITTING, State.WAITING])
def test_record_rejected_from_each_allowed_state(ledger: Ledger, start: State) -> None:
    """Rejected (with its reason) from pending, submitting or waiting."""
    entry = add(ledger, "k", State.WAITING if start is State.WAITING else State.PENDING)
    if start is State.SUBMITTING:
        ledger.claim_one(entry.id, at(1))
    rejected = ledger.record_rejected(entry.id, "InvalidParameter: bad", at(2))
    assert (rejected.state, rejected.error) == (State.REJECTED, "InvalidParameter: bad")


@pytest.mark.parametrize("start", [State.PENDING, State.SUBMITTING])
def test_record_invalid(ledger: Ledger, start: State) -> None:
    """Invalid (preflight) from pending or submitting."""
    entry = add(ledger, "k")
    if start is State.SUBMITTING:
        ledger.claim_one(entry.id, at(1))
    assert ledger.record_invalid(entry.id, "line 3: not JSON", at(2)).state is State.INVALID


def test_schedule_retry_and_release(ledger: Ledger) -> None:
    """A retry goes back to pending at a later time with its attempts kept; a release goes
    back due now, keeping the last error for the record."""
    entry = submitting(ledger)
    retry = ledger.schedule_retry(entry.id, at(30), "429 throttled", at(2), transient=False)
    assert (retry.state, retry.attempts, retry.next_attempt_at, retry.error) == (
        State.PENDING,
        1,
        at(30),
        "429 throttled",
    )
    ledger.claim_due(1, at(30))
    released = ledger.release(entry.id, at(31))
    assert (released.state, released.next_attempt_at, released.attempts) == (State.PENDING, None, 2)
    assert released.error == "429 throttled"


def test_only_transient_retries_count_as_transient_failures(ledger: Ledger) -> None:
    """Every claim is an attempt, but only a retry recorded as transient adds a transient
    failure: throttled or unauthorised retries, releases and promotions leave it alone."""
    entry = add(ledger, "k", State.WAITING)
    assert ledger.promote_waiting(entry.id, at(1)).transient_failures == 0
    outcomes = [("throttled", False), ("HTTP 503", True), ("HTTP 401", False), ("timeout", True)]
    seen = []
    for number, (reason, transient) in enumerate(outcomes, start=1):
        (claimed,) = ledger.claim_due(1, at(10 * number))
        retry = ledger.schedule_retry(
            entry.id, at(10 * number), reason, at(10 * number), transient=transient
        )
        seen.append((claimed.attempts, retry.attempts, retry.transient_failures))
    assert seen == [(1, 1, 0), (2, 2, 1), (3, 3, 1), (4, 4, 2)]
    ledger.claim_due(1, at(100))
    released = ledger.release(entry.id, at(101))
    assert (released.attempts, released.transient_failures) == (5, 2)
    assert ledger.get(entry.id).transient_failures == 2


def test_defer_reconcile_keeps_the_claim(ledger: Ledger) -> None:
    """An unknown outcome that cannot be checked yet stays submitting, with the claim time
    that dates the attempt, and a time to look again."""
    entry = submitting(ledger)
    deferred = ledger.defer_reconcile(entry.id, at(20), "list failed", at(5))
    assert (deferred.state, deferred.next_attempt_at, deferred.claimed_at) == (
        State.SUBMITTING,
        at(20),
        at(1),
    )
    assert ledger.claim_due(5, at(100)) == []


@pytest.mark.parametrize(
    ("operation", "start"),
    [
        ("submitted", State.PENDING),
        ("duplicate", State.PENDING),
        ("retry", State.PENDING),
        ("release", State.PENDING),
        ("invalid", State.WAITING),
        ("rejected", State.SUBMITTED),
        ("defer", State.PENDING),
    ],
)
def test_illegal_outcomes_are_refused(ledger: Ledger, operation: str, start: State) -> None:
    """An outcome for an entry in the wrong state raises InvalidTransition and changes
    nothing."""
    entry = add(ledger, "k", State.WAITING if start is State.WAITING else State.PENDING)
    if start is State.SUBMITTED:
        ledger.claim_one(entry.id, at(1))
        ledger.record_submitted(entry.id, "bi-1", None, at(2))
    before = ledger.get(entry.id)
    calls = {
        "submitted": lambda: ledger.record_submitted(entry.id, "bi-x", None, at(9)),
        "duplicate": lambda: ledger.record_duplicate(entry.id, "bi-x", None, at(9)),
        "retry": lambda: ledger.schedule_retry(entry.id, at(99), "x", at(9), transient=True),
        "release": lambda: ledger.release(entry.id, at(9)),
        "invalid": lambda: ledger.record_invalid(entry.id, "x", at(9)),
        "rejected": lambda: ledger.record_rejected(entry.id, "x", at(9)),
        "defer": lambda: ledger.defer_reconcile(entry.id, at(99), "x", at(9)),
    }
    with pytest.raises(InvalidTransition) as caught:
        calls[operation]()
    assert caught.value.old is start
    assert caught.value.entry_id == entry.id
    assert ledger.get(entry.id) == before


def test_the_guard_refuses_a_stale_writer(store: Store) -> None:
    """The state check is in the UPDATE itself: a second connection acting on what it read
    earlier cannot move an entry that has moved on meanwhile."""
    with store.open() as one, store.beside() as two:
        entry = submitting(one)
        one.record_submitted(entry.id, "bi-1", None, at(2))
        with pytest.raises(InvalidTransition):
            two.release(entry.id, at(3))
        assert two.get(entry.id).state is State.SUBMITTED


def test_unknown_entry(ledger: Ledger) -> None:
    """An id that does not exist (forgotten, pruned) is EntryNotFound, not a wrong state."""
    with pytest.raises(EntryNotFound):
        ledger.get(42)
    with pytest.raises(EntryNotFound):
        ledger.record_rejected(42, "x", T0)
    with pytest.raises(EntryNotFound):
        ledger.record_phase(42, "Running", None, T0)


def test_record_phase_tracking_and_active_jobs(ledger: Ledger) -> None:
    """Phases and request counts are recorded for entries with a job; tracking lists the
    jobs that may still change; active_jobs counts the ones holding capacity."""
    fresh = submitting(ledger, "a")
    ledger.record_submitted(fresh.id, "bi-a", None, at(2))
    running = submitting(ledger, "b")
    ledger.record_submitted(running.id, "bi-b", None, at(2))
    ledger.record_phase(running.id, "Running", RequestCounts(10, 4, 1), at(3))
    finished = submitting(ledger, "c")
    ledger.record_submitted(finished.id, "bi-c", None, at(2))
    done = ledger.record_phase(finished.id, "Completed", RequestCounts(10, 10, 0), at(4))
    kept = ledger.record_phase(running.id, "Running", None, at(5))
    assert kept.request_counts == RequestCounts(10, 4, 1), "an answer without counts keeps them"
    assert done.phase == "Completed"

    assert [entry.job_id for entry in ledger.tracking(10)] == ["bi-a", "bi-b"]
    assert [entry.job_id for entry in ledger.tracking(1)] == ["bi-a"]
    assert ledger.active_jobs(W) == 2
    assert ledger.active_jobs("other") == 0
    with pytest.raises(LedgerError, match="no job"):
        ledger.record_phase(add(ledger, "d").id, "Running", None, at(6))


def test_an_unknown_phase_is_tracked_and_holds_capacity(ledger: Ledger) -> None:
    """A phase this version does not know is tracked and counts as active; Terminating is
    tracked but has let go of its capacity."""
    paused = submitting(ledger, "a")
    ledger.record_submitted(paused.id, "bi-a", None, at(2))
    ledger.record_phase(paused.id, "Pausing", None, at(3))
    stopping = submitting(ledger, "b")
    ledger.record_submitted(stopping.id, "bi-b", None, at(2))
    ledger.record_phase(stopping.id, "Terminating", None, at(4))
    assert [entry.job_id for entry in ledger.tracking(10)] == ["bi-a", "bi-b"]
    assert ledger.active_jobs(W) == 1
    ledger.record_phase(paused.id, "Completed", None, at(5))
    assert ledger.active_jobs(W) == 0


def test_tracking_resumes_after_the_last_entry_of_a_batch(ledger: Ledger) -> None:
    """Batches walk the tracked entries in (updated_at, id) order, one after another."""
    for number, key in enumerate("abcde"):
        entry = submitting(ledger, key)
        ledger.record_submitted(entry.id, f"bi-{key}", None, at(10 - number // 2))
    order = ["bi-e", "bi-c", "bi-d", "bi-a", "bi-b"]  # by updated_at, then by id
    first = ledger.tracking(2)
    second = ledger.tracking(2, after=first[-1])
    third = ledger.tracking(2, after=second[-1])
    assert [e.job_id for e in [*first, *second, *third]] == order
    assert ledger.tracking(2, after=third[-1]) == []
