"""The contract: jobs made, recorded with the next claim's transaction or on their own.

A worker's job made waits for the next claim, which records it in its own durable
transaction; one whose claim another node took over meanwhile is refused (its new owner finds
the job by its tag) and named back, the others recorded all the same."""

from __future__ import annotations

from dropzone.ledger import JobMade, Ledger, State
from tests.ledger_contract.helpers import T0, B, W, add, at


def _made(ledger: Ledger, key: str, node: str = "n1") -> JobMade:
    entry = ledger.claim_one(add(ledger, key).id, at(1), node=node)
    assert entry is not None
    assert entry.claim_token is not None
    return JobMade(entry.id, f"bi-{key}", f"out/{key}/", at(2), entry.claim_token)


def test_a_claim_records_the_jobs_made_and_claims_in_one_transaction(ledger: Ledger) -> None:
    made = [_made(ledger, "a"), _made(ledger, "b")]
    add(ledger, "c")
    claim = ledger.settle_and_claim(made, 8, at(3), node="n1")
    assert [entry.key for entry in claim.entries] == ["c"]
    assert claim.refused == []
    for job in made:
        entry = ledger.get(job.entry_id)
        assert (entry.state, entry.job_id, entry.output_dir) == (
            State.SUBMITTED,
            job.job_id,
            job.output_dir,
        )
        assert (entry.updated_at, entry.error, entry.next_attempt_at) == (at(2), None, None)


def test_jobs_made_are_recorded_by_a_claim_that_finds_nothing(ledger: Ledger) -> None:
    made = [_made(ledger, "a")]
    claim = ledger.settle_and_claim(made, 8, at(3), node="n1")
    assert claim.entries == []
    assert ledger.get(made[0].entry_id).state is State.SUBMITTED


def test_a_job_made_whose_claim_was_taken_over_is_refused_the_others_recorded(
    ledger: Ledger,
) -> None:
    stale, kept = _made(ledger, "a"), _made(ledger, "b")
    owner = ledger.take_over(ledger.get(stale.entry_id), "n2", at(2))
    assert owner is not None
    claim = ledger.settle_and_claim([stale, kept], 8, at(3), node="n1")
    assert claim.refused == [stale]
    assert ledger.get(stale.entry_id) == owner
    assert ledger.get(kept.entry_id).state is State.SUBMITTED


def test_record_jobs_made_alone(ledger: Ledger) -> None:
    assert ledger.record_jobs_made([]) == []
    stale, kept = _made(ledger, "a"), _made(ledger, "b")
    ledger.take_over(ledger.get(stale.entry_id), "n2", at(2))
    assert ledger.record_jobs_made([stale, kept]) == [stale]
    assert ledger.get(kept.entry_id).state is State.SUBMITTED
    assert ledger.get(stale.entry_id).state is State.SUBMITTING


def test_a_capped_claim_counts_a_job_made_as_one_of_its_cap(ledger: Ledger) -> None:
    """max_active_jobs = 2: one job made (recorded by this claim, still running) and one
    attempt in flight leave no slot; the job made, once ended, frees one."""
    made = _made(ledger, "a")
    in_flight = ledger.claim_one(add(ledger, "b").id, at(1), node="n1")
    assert in_flight is not None
    for number in range(3):
        ledger.add_object(W, B, f"in/{number}", "e", 1, State.PENDING, T0)
    claim = ledger.settle_and_claim([made], 5, at(3), watch=W, cap=2, node="n1")
    assert (claim.entries, claim.refused) == ([], [])
    assert ledger.get(made.entry_id).state is State.SUBMITTED
    ledger.record_phase(made.entry_id, "Completed", None, at(4))
    freed = ledger.settle_and_claim([], 5, at(5), watch=W, cap=2, node="n1")
    assert len(freed.entries) == 1


def test_a_job_made_is_recorded_as_record_submitted_records_it(ledger: Ledger) -> None:
    """A job made, recorded by the claim's transaction, is what the fenced
    ``record_submitted`` of its attempt writes: the two paths cannot drift apart."""
    batched, alone = _made(ledger, "a"), _made(ledger, "b")
    ledger.settle_and_claim([batched], 8, at(3), node="n1")
    ledger.record_submitted(
        alone.entry_id, alone.job_id, alone.output_dir, alone.at, fence=alone.fence
    )

    def outcome(entry_id: int) -> dict[str, object]:
        written = vars(ledger.get(entry_id)).copy()
        for identity in ("id", "key", "job_id", "output_dir", "claim_token"):
            del written[identity]
        return written

    assert outcome(batched.entry_id) == outcome(alone.entry_id)
    assert ledger.get(batched.entry_id).job_id == batched.job_id


def test_more_jobs_made_than_one_statement_takes_are_all_recorded(ledger: Ledger) -> None:
    """A drain's many in one transaction, one of them refused (its claim taken over)."""
    made = [_made(ledger, f"k{i:03d}") for i in range(230)]
    stale = made[150]
    ledger.take_over(ledger.get(stale.entry_id), "n2", at(2))
    assert ledger.record_jobs_made(made) == [stale]
    counts = ledger.counts()
    assert (counts[State.SUBMITTED], counts[State.SUBMITTING]) == (229, 1)
