"""The contract: queries, and the operators' commands."""

from __future__ import annotations

import pytest

from dropzone.ledger import (
    InvalidTransition,
    Ledger,
    RequestCounts,
    State,
)
from tests.ledger_contract.helpers import T0, B, W, add, at, page, record, submitting


def test_entries_stream_in_order_across_chunks(ledger: Ledger) -> None:
    """`status` streams every entry by watch then key, over more rows than one chunk, with
    state and watch filters."""
    keys = [f"k{number:04d}" for number in range(1_203)]
    record(ledger, page(keys))
    ledger.add_object("alpha", B, "z", "e", 1, State.BASELINE, T0)
    listed = [(entry.watch, entry.key) for entry in ledger.entries()]
    assert listed == [("alpha", "z"), *[(W, key) for key in keys]]
    assert [e.key for e in ledger.entries(state=State.BASELINE)] == ["z"]
    assert len(list(ledger.entries(watch=W))) == 1_203
    assert len(list(ledger.in_state(State.PENDING))) == 1_203
    assert list(ledger.in_state(State.PENDING, watch="alpha")) == []


def test_in_state_is_oldest_first(ledger: Ledger) -> None:
    """in_state lists by first sighting (the order reconciliation should follow)."""
    ledger.add_object(W, B, "b", "e", 1, State.PENDING, at(1))
    ledger.add_object(W, B, "a", "e", 1, State.PENDING, at(2))
    assert [e.key for e in ledger.in_state(State.PENDING)] == ["b", "a"]


def test_counts_oldest_unsubmitted_and_next_due(ledger: Ledger) -> None:
    """The numbers behind metrics and the daemon's sleep."""
    assert ledger.next_due_at() is None
    assert ledger.oldest_unsubmitted(W) is None
    ledger.add_object(W, B, "base", "e", 1, State.BASELINE, at(0))
    waiting = ledger.add_object(W, B, "wait", "e", 1, State.WAITING, at(1))[0]
    entry = submitting(ledger, "k")
    ledger.schedule_retry(entry.id, at(50), "x", at(2), transient=True)
    counts = ledger.counts()
    assert counts[State.BASELINE] == counts[State.WAITING] == counts[State.PENDING] == 1
    assert counts[State.SUBMITTED] == 0
    assert set(counts) == set(State)
    assert ledger.counts("other")[State.PENDING] == 0
    assert ledger.oldest_unsubmitted(W) == T0
    assert ledger.next_due_at() == at(50)

    ledger.promote_waiting(waiting.id, at(3))
    assert ledger.next_due_at() == at(3), "an entry due now answers with a past time"


def test_find_returns_every_version(ledger: Ledger) -> None:
    """find gives all versions of one object, oldest first."""
    add(ledger, "k", etag="e1")
    ledger.add_object(W, B, "k", "e2", 1, State.PENDING, at(1))
    assert [e.etag for e in ledger.find(W, B, "k")] == ["e1", "e2"]
    assert ledger.find(W, "other-bucket", "k") == []


def test_backfill(ledger: Ledger) -> None:
    """backfill moves baseline entries (of one watch, or all) to pending, due now."""
    add(ledger, "a", State.BASELINE)
    ledger.add_object("other", B, "b", "e", 1, State.BASELINE, T0)
    assert ledger.backfill(W, at(1)) == 1
    assert ledger.counts("other")[State.BASELINE] == 1
    assert ledger.backfill(None, at(2)) == 1
    assert len(ledger.claim_due(10, at(2))) == 2


def test_retry(ledger: Ledger) -> None:
    """retry brings chosen states (and keys) back to pending with a fresh start; a state
    that cannot go back is refused before anything changes."""
    rejected = submitting(ledger, "r")
    ledger.schedule_retry(rejected.id, at(1), "HTTP 503", at(1), transient=True)
    ledger.claim_due(1, at(1))
    assert ledger.record_rejected(rejected.id, "no", at(2)).transient_failures == 1
    invalid = add(ledger, "i")
    ledger.record_invalid(invalid.id, "bad", at(2))
    done = submitting(ledger, "s")
    ledger.record_submitted(done.id, "bi", None, at(2))

    with pytest.raises(InvalidTransition):
        ledger.retry({State.REJECTED, State.SUBMITTED}, None, at(3))
    assert ledger.get(rejected.id).state is State.REJECTED

    assert ledger.retry({State.REJECTED, State.INVALID}, ["i", "missing"], at(3)) == 1
    assert ledger.get(rejected.id).state is State.REJECTED
    assert ledger.retry({State.REJECTED}, None, at(4)) == 1
    again = ledger.get(rejected.id)
    assert (again.state, again.attempts, again.transient_failures) == (State.PENDING, 0, 0)
    assert (again.error, again.next_attempt_at) == (None, None)


def test_retry_of_a_duplicate_drops_the_job_it_named(ledger: Ledger) -> None:
    """A duplicate (awaiting or not) goes back to pending only when its state is asked for;
    it then holds no job, no phase and no wait: the next claim submits it afresh."""
    plain = submitting(ledger, "p")
    ledger.record_duplicate(plain.id, "bi-1", "out/p/", at(2))
    ledger.record_phase(plain.id, "Completed", RequestCounts(3, 3, 0), at(3))
    waiting = submitting(ledger, "w")
    ledger.record_duplicate(waiting.id, "bi-2", None, at(2), awaits_job=True)
    assert ledger.retry({State.REJECTED, State.INVALID}, None, at(4)) == 0
    assert ledger.retry({State.DUPLICATE}, ["p"], at(4)) == 1
    back = ledger.get(plain.id)
    assert (back.state, back.job_id, back.phase, back.request_counts, back.output_dir) == (
        State.PENDING,
        None,
        None,
        None,
        None,
    )
    assert ledger.retry({State.DUPLICATE}, None, at(5)) == 1
    assert (ledger.get(waiting.id).state, ledger.get(waiting.id).awaits_job) == (
        State.PENDING,
        False,
    )


def test_forget_makes_an_object_new_again(ledger: Ledger) -> None:
    """forget deletes every version of the keys (in one watch, or all); the next listing
    records the object as new."""
    record(ledger, page(["a", "b"]))
    ledger.add_object("other", B, "a", "e1", 1, State.PENDING, T0)
    assert ledger.forget(W, ["a", "zzz"]) == 1
    assert [e.key for e in record(ledger, page(["a", "b"]), now=at(1))] == ["a"]
    assert ledger.forget(None, ["a"]) == 2


def test_prune_drops_only_long_gone_entries(ledger: Ledger) -> None:
    """prune deletes entries gone since before the cut-off; present entries, recently gone
    ones and unreconciled submissions stay."""
    record(ledger, page(["old", "recent", "present", "inflight"]))
    ledger.claim_one(ledger.find(W, B, "inflight")[0].id, T0)
    record(ledger, page(["recent", "present"]), now=at(10))
    record(ledger, page(["present"]), now=at(100))
    assert ledger.prune(at(50)) == 1
    assert sorted(e.key for e in ledger.entries()) == ["inflight", "present", "recent"]
    assert ledger.prune(at(10_000)) == 1
    assert sorted(e.key for e in ledger.entries()) == ["inflight", "present"]


def test_upcoming_is_what_is_being_submitted_and_due_oldest_first(ledger: Ledger) -> None:
    """What a look-up of jobs by tag asks about next: versions in submitting and pending ones
    due, in claim order; not one due later, nor one settled, nor baseline."""
    ledger.add_object(W, B, "a", "e1", 1, State.PENDING, at(1))
    ledger.add_object(W, B, "b", "e2", 1, State.PENDING, at(2))
    later = ledger.add_object(W, B, "c", "e3", 1, State.PENDING, at(3))[0]
    ledger.add_object(W, B, "d", "e4", 1, State.BASELINE, at(4))
    done = ledger.add_object(W, B, "e", "e5", 1, State.PENDING, at(5))[0]
    claimed = ledger.claim_one(later.id, at(6))
    assert claimed is not None
    ledger.schedule_retry(
        later.id, at(600), "later", at(7), transient=True, fence=claimed.claim_token
    )
    claimed = ledger.claim_one(done.id, at(8))
    assert claimed is not None
    ledger.record_submitted(done.id, "job-1", "out/", at(9), fence=claimed.claim_token)
    first = ledger.claim_due(1, at(10))[0]
    assert first.key == "a"
    assert ledger.upcoming(10, at(11)) == [(W, B, "a", "e1"), (W, B, "b", "e2")]
    assert [version.key for version in ledger.upcoming(1, at(11))] == ["a"]
    assert [version.key for version in ledger.upcoming(10, at(601))] == ["a", "b", "c"]
