"""The contract: claims, each entry claimed once however many claim at once."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from dropzone.ledger import (
    Ledger,
    State,
)
from tests.ledger_contract.helpers import T0, B, W, add, at, run_together, submitting

if TYPE_CHECKING:
    from tests.ledger_contract.conftest import Store


def test_claim_due_takes_due_pending_entries_oldest_first(ledger: Ledger) -> None:
    """Only pending entries that are due are claimed, oldest first, attempts counted."""
    early = ledger.add_object(W, B, "b", "e", 1, State.PENDING, at(0))[0]
    late = ledger.add_object(W, B, "a", "e", 1, State.PENDING, at(5))[0]
    ledger.add_object(W, B, "c", "e", 1, State.BASELINE, at(0))
    ledger.add_object("other", B, "d", "e", 1, State.PENDING, at(0))
    claimed = ledger.claim_due(2, at(10), watch=W)
    assert [entry.id for entry in claimed] == [early.id, late.id]
    assert all(e.state is State.SUBMITTING and e.attempts == 1 for e in claimed)
    assert all(e.claimed_at == at(10) for e in claimed)
    assert ledger.claim_due(10, at(10), watch=W) == []
    assert [e.watch for e in ledger.claim_due(10, at(10))] == ["other"]


def test_claim_respects_next_attempt_at(ledger: Ledger) -> None:
    """A retry scheduled for later is not claimed before its time, and is at its time."""
    entry = submitting(ledger)
    ledger.schedule_retry(entry.id, at(60), "throttled", at(2), transient=False)
    assert ledger.claim_due(1, at(59)) == []
    (again,) = ledger.claim_due(1, at(60))
    assert (again.attempts, again.next_attempt_at) == (2, None)


def test_claim_one(ledger: Ledger) -> None:
    """`dropzone submit` claims its entry even before it is due; never one not pending."""
    entry = submitting(ledger)
    ledger.schedule_retry(entry.id, at(3600), "throttled", at(2), transient=False)
    claimed = ledger.claim_one(entry.id, at(3))
    assert claimed is not None
    assert claimed.state is State.SUBMITTING
    assert ledger.claim_one(entry.id, at(4)) is None
    assert ledger.claim_one(999, at(4)) is None


def test_concurrent_claims_take_each_entry_once(store: Store) -> None:
    """Eight threads on eight connections claim 240 entries at once: each exactly once."""
    with store.open() as setup:
        for number in range(240):
            setup.add_object(W, B, f"k{number:03d}", "e", 1, State.PENDING, T0)
    ledgers = [store.beside() for _ in range(8)]
    claimed: list[list[int]] = [[] for _ in ledgers]

    def work(index: int) -> None:
        while batch := ledgers[index].claim_due(3, at(1)):
            claimed[index].extend(entry.id for entry in batch)

    try:
        run_together(len(ledgers), work)
    finally:
        for opened in ledgers:
            opened.close()
    every = [entry_id for ids in claimed for entry_id in ids]
    assert len(every) == len(set(every)) == 240


def test_threads_sharing_one_ledger_claim_each_entry_once(ledger: Ledger) -> None:
    """The daemon's shape: several workers on one Ledger object, each claim of one entry
    exactly one (a claim whose subquery the planner ran again took several: PostgreSQL bug
    #15715)."""
    for number in range(100):
        add(ledger, f"k{number:03d}")
    seen: list[int] = []
    sizes: set[int] = set()
    lock = threading.Lock()

    def work(_: int) -> None:
        while batch := ledger.claim_due(1, at(1)):
            with lock:
                seen.extend(entry.id for entry in batch)
                sizes.add(len(batch))

    run_together(6, work)
    assert sorted(seen) == sorted(set(seen))
    assert len(seen) == 100
    assert sizes == {1}
