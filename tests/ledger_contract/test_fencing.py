"""The contract: fenced claims. A claim stamps a token and a node; a write of an attempt whose
claim was taken over since records nothing; a watch's cap is counted and claimed at once."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from dropzone.ledger import ClaimLost, Ledger, State
from tests.ledger_contract.helpers import T0, B, W, add, at, run_together, submitting

if TYPE_CHECKING:
    from tests.ledger_contract.conftest import Store


def test_a_claim_stamps_a_rising_token_and_its_node(ledger: Ledger) -> None:
    for key in ("a", "b", "c"):
        add(ledger, key)
    (first,) = ledger.claim_due(1, at(1), node="n1")
    (second,) = ledger.claim_due(1, at(1), node="n2")
    third = ledger.claim_one(ledger.find(W, B, "c")[0].id, at(1), node="n1")
    assert third is not None
    assert (first.claimed_by, second.claimed_by, third.claimed_by) == ("n1", "n2", "n1")
    tokens = [entry.claim_token or 0 for entry in (first, second, third)]
    assert 0 not in tokens
    assert tokens == sorted(tokens)
    assert len(set(tokens)) == 3
    assert ledger.get(first.id).claim_token == first.claim_token


def test_a_retried_entry_is_claimed_with_a_new_token(ledger: Ledger) -> None:
    entry = submitting(ledger)
    ledger.schedule_retry(entry.id, at(2), "5xx", at(1), transient=True, fence=entry.claim_token)
    (again,) = ledger.claim_due(1, at(3), node="n2")
    assert again.claim_token is not None
    assert entry.claim_token is not None
    assert again.claim_token > entry.claim_token
    with pytest.raises(ClaimLost, match=f"entry {entry.id}: claim {entry.claim_token}"):
        ledger.release(entry.id, at(4), fence=entry.claim_token)
    assert ledger.get(entry.id).state is State.SUBMITTING


@pytest.mark.parametrize(
    "write",
    [
        "submitted",
        "duplicate",
        "rejected",
        "invalid",
        "retry",
        "defer",
        "release",
        "sending",
    ],
)
def test_a_stale_attempt_records_nothing_over_its_new_owner(ledger: Ledger, write: str) -> None:
    """Node n1 claimed, stalled past its lease; n2 took the attempt over. Every write n1 makes
    with its old token is refused with ClaimLost naming n2, and the entry is as n2 left it."""
    stale = ledger.claim_one(add(ledger, "in/a.jsonl").id, at(1), node="n1")
    assert stale is not None
    owner = ledger.take_over(stale, "n2", at(5))
    assert owner is not None
    assert (owner.claimed_by, owner.state, owner.claimed_at) == ("n2", State.SUBMITTING, at(1))
    token = stale.claim_token
    writes = {
        "submitted": lambda: ledger.record_submitted(stale.id, "bi-1", "out/", at(6), fence=token),
        "duplicate": lambda: ledger.record_duplicate(stale.id, "bi-1", "out/", at(6), fence=token),
        "rejected": lambda: ledger.record_rejected(stale.id, "no", at(6), fence=token),
        "invalid": lambda: ledger.record_invalid(stale.id, "bad", at(6), fence=token),
        "retry": lambda: ledger.schedule_retry(
            stale.id, at(9), "5xx", at(6), transient=True, fence=token
        ),
        "defer": lambda: ledger.defer_reconcile(stale.id, at(9), "?", at(6), fence=token),
        "release": lambda: ledger.release(stale.id, at(6), fence=token),
        "sending": lambda: ledger.mark_sending(stale.id, at(6), fence=token),
    }
    with pytest.raises(ClaimLost, match="taken over by n2"):
        writes[write]()
    assert ledger.get(stale.id) == owner
    # The new owner's own writes go through.
    done = ledger.record_submitted(stale.id, "bi-2", "out/", at(7), fence=owner.claim_token)
    assert (done.state, done.job_id) == (State.SUBMITTED, "bi-2")


def test_a_write_in_the_wrong_state_is_still_an_invalid_transition(ledger: Ledger) -> None:
    entry = submitting(ledger)
    done = ledger.record_submitted(entry.id, "bi-1", "out/", at(2), fence=entry.claim_token)
    with pytest.raises(Exception, match="submitted -> pending") as raised:
        ledger.release(entry.id, at(3), fence=done.claim_token)
    assert not isinstance(raised.value, ClaimLost)


def test_two_nodes_taking_one_attempt_over_one_wins(store: Store) -> None:
    with store.open() as ledger:
        stale = ledger.claim_one(add(ledger, "in/a.jsonl").id, at(1), node="gone")
        assert stale is not None
        others = [store.beside() for _ in range(6)]
        won: list[str] = []

        def take(index: int) -> None:
            if others[index].take_over(stale, f"n{index}", at(2)) is not None:
                won.append(f"n{index}")

        try:
            run_together(len(others), take)
        finally:
            for other in others:
                other.close()
        assert len(won) == 1
        assert ledger.get(stale.id).claimed_by == won[0]


def test_a_capped_watch_is_never_claimed_past_its_cap(store: Store) -> None:
    """Eight claimers on their own connections race for a watch with max_active_jobs = 3 and
    one job still running: together they claim exactly 2."""
    with store.open() as ledger:
        running = submitting(ledger, "in/running.jsonl")
        ledger.record_submitted(running.id, "bi-0", "out/", at(1), fence=running.claim_token)
        for number in range(20):
            ledger.add_object(W, B, f"in/{number:02d}", "e", 1, State.PENDING, T0)
        others = [store.beside() for _ in range(8)]
        claimed: list[int] = []

        def claim(index: int) -> None:
            for _ in range(3):
                batch = others[index].claim_capped(W, 3, 1, at(2), node=f"n{index}")
                claimed.extend(entry.id for entry in batch)

        try:
            run_together(len(others), claim)
        finally:
            for other in others:
                other.close()
        assert len(claimed) == 2
        assert ledger.counts(W)[State.SUBMITTING] == 2
        # A slot frees when the running job ends; attempts in flight still count.
        ledger.record_phase(running.id, "Completed", None, at(3))
        assert len(ledger.claim_capped(W, 3, 5, at(4), node="n0")) == 1
        assert ledger.claim_capped(W, 3, 5, at(4), node="n0") == []
