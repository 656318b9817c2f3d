"""The contract: the notifications outbox, written with the outcomes it tells of."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from dropzone.ledger import Listed, RequestCounts, State
from dropzone.ledger.notices import EVENTS
from tests.ledger_contract.helpers import T0, B, W, add, at, submitting

if TYPE_CHECKING:
    from dropzone.ledger import Ledger
    from tests.ledger_contract.conftest import Store


def every_event(ledger: Ledger, watch: str = W) -> None:
    ledger.announce({watch: frozenset(EVENTS)})


def test_nothing_is_written_for_a_watch_that_asked_for_nothing(ledger: Ledger) -> None:
    entry = submitting(ledger)
    ledger.record_rejected(entry.id, "no", at(2))
    assert ledger.notices_due(at(100)) == []
    every_event(ledger, watch="another")
    other = submitting(ledger, "in/b.jsonl")
    ledger.record_invalid(other.id, "bad", at(3))
    assert ledger.notices_due(at(100)) == []


def test_each_outcome_is_one_notice_written_with_it(ledger: Ledger) -> None:
    """Rejected, invalid, a duplicate and a job's end each make one notice, due at once, its
    body the entry as the outcome left it; a phase seen again is not a second notice."""
    every_event(ledger)
    rejected = ledger.record_rejected(submitting(ledger, "in/r.jsonl").id, "denied", at(2))
    ledger.record_invalid(submitting(ledger, "in/i.jsonl").id, "line 3: not JSON", at(2))
    ledger.record_duplicate(submitting(ledger, "in/d.jsonl").id, "bi-other", "out/d/", at(2))
    done = ledger.record_submitted(submitting(ledger, "in/c.jsonl").id, "bi-c", "out/c/", at(2))
    ledger.record_phase(done.id, "Running", RequestCounts(10, 4, 0), at(3))
    assert [n.event for n in ledger.notices_due(at(3))] == ["rejected", "invalid", "duplicate"]
    for _ in range(2):
        ledger.record_phase(done.id, "Completed", RequestCounts(10, 9, 1), at(4))
    due = ledger.notices_due(at(4))
    assert [n.event for n in due] == ["rejected", "invalid", "duplicate", "Completed"]
    assert len({n.delivery_id for n in due}) == 4
    completed = json.loads(due[-1].body)
    assert completed["delivery_id"] == due[-1].delivery_id
    assert (completed["event"], completed["job_id"], completed["phase"]) == (
        "Completed",
        "bi-c",
        "Completed",
    )
    assert completed["request_counts"] == {"total": 10, "completed": 9, "failed": 1}
    assert (completed["output_dir"], completed["key"], completed["watch"]) == (
        "out/c/",
        "in/c.jsonl",
        W,
    )
    assert json.loads(due[0].body)["error"] == rejected.error == "denied"
    assert due[0].happened_at == at(2)


def test_only_the_events_asked_for(ledger: Ledger) -> None:
    ledger.announce({W: frozenset({"Failed"})})
    ledger.record_rejected(submitting(ledger, "in/r.jsonl").id, "denied", at(2))
    done = ledger.record_submitted(submitting(ledger, "in/c.jsonl").id, "bi-c", "out/c/", at(2))
    ledger.record_phase(done.id, "Failed", None, at(3))
    assert [n.event for n in ledger.notices_due(at(3))] == ["Failed"]


def test_a_duplicate_that_waits_for_its_job_tells_nothing_yet(ledger: Ledger) -> None:
    every_event(ledger)
    entry = submitting(ledger)
    ledger.record_duplicate(entry.id, "bi-v1", "out/a/", at(2), awaits_job=True)
    assert ledger.notices_due(at(3)) == []


def test_an_upload_found_unusable_as_it_was_detected_is_told_of(ledger: Ledger) -> None:
    every_event(ledger)
    found = [(Listed("in/x.jsonl", "e1", 5), State.REJECTED, "cannot be read")]
    (entry,) = ledger.add_objects(W, B, found, T0)
    (notice,) = ledger.notices_due(T0)
    assert (notice.event, json.loads(notice.body)["key"]) == ("rejected", entry.key)


def test_a_retried_upload_rejected_again_is_a_new_notice(ledger: Ledger) -> None:
    every_event(ledger)
    entry = submitting(ledger)
    ledger.record_rejected(entry.id, "denied", at(2))
    ledger.retry([State.REJECTED], None, at(3))
    again = ledger.claim_one(entry.id, at(4))
    assert again is not None
    ledger.record_rejected(entry.id, "denied again", at(5))
    notices = ledger.notices_due(at(5))
    assert [json.loads(n.body)["error"] for n in notices] == ["denied", "denied again"]
    assert len({n.delivery_id for n in notices}) == 2


def test_a_notice_is_settled_once_and_a_failed_try_is_put_off(ledger: Ledger) -> None:
    every_event(ledger)
    first = ledger.record_rejected(submitting(ledger, "in/a.jsonl").id, "no", at(2))
    ledger.record_rejected(submitting(ledger, "in/b.jsonl").id, "no", at(2))
    a, b = ledger.notices_due(at(2))
    assert ledger.defer_notice(a.id, at(60), "HTTP 503")
    assert [n.id for n in ledger.notices_due(at(59))] == [b.id]
    assert [(n.id, n.tries) for n in ledger.notices_due(at(60))] == [(b.id, 0), (a.id, 1)]
    assert ledger.settle_notice(b.id, "delivered", at(61))
    assert not ledger.settle_notice(b.id, "delivered", at(62)), "settled twice"
    assert not ledger.defer_notice(b.id, at(70), "late"), "a settled notice put off"
    assert ledger.notices_pending() == (1, at(60))
    assert ledger.settle_notice(a.id, "gave_up", at(63), error="HTTP 503 for 1 day")
    assert ledger.notices_due(at(10_000)) == []
    assert ledger.notices_pending() == (0, None)
    assert ledger.get(first.id).state is State.REJECTED


def test_a_notice_outlives_its_entry_until_it_is_settled(ledger: Ledger) -> None:
    """Forgetting an entry (to submit its key again) does not take back what its outcome
    told: the notice is still delivered. Pruning drops a notice only once it is settled and
    its entry is gone."""
    every_event(ledger)
    ledger.record_rejected(submitting(ledger, "in/c.jsonl").id, "no", at(2))
    ledger.record_rejected(submitting(ledger, "in/d.jsonl").id, "no", at(2))
    assert ledger.forget(None, ["in/c.jsonl", "in/d.jsonl"]) == 2
    c, d = ledger.notices_due(at(3))
    assert json.loads(c.body)["key"] == "in/c.jsonl"
    assert ledger.settle_notice(c.id, "delivered", at(4))
    ledger.prune(at(5))
    assert [n.id for n in ledger.notices_due(at(6))] == [d.id]
    assert ledger.notices_pending() == (1, at(2))


def test_notices_outlive_the_handle(store: Store) -> None:
    """Written by one handle, due to the next one (a restart): nothing is lost."""
    with store.open() as first:
        every_event(first)
        add(first, "in/a.jsonl")
        entry = first.claim_due(1, at(1))[0]
        first.record_invalid(entry.id, "bad", at(2))
    with store.open() as second:
        (notice,) = second.notices_due(at(3))
        assert notice.event == "invalid"
        assert second.settle_notice(notice.id, "delivered", at(4))
    with store.open() as third:
        assert third.notices_due(at(5)) == []


def test_a_duplicate_is_told_of_once_however_often_its_job_is_seen(ledger: Ledger) -> None:
    """The tracker follows the job a duplicate names (its phase is shown beside it): each phase
    it sees is a write of the entry, but the duplicate is one outcome, so one notice."""
    every_event(ledger)
    entry = submitting(ledger)
    ledger.record_duplicate(entry.id, "bi-named", "out/a/", at(2))
    for second, phase in enumerate(["Queued", "Running", "Running", "Completed"], start=3):
        ledger.record_phase(entry.id, phase, RequestCounts(4, second - 3, 0), at(second))
    (notice,) = ledger.notices_due(at(10))
    assert notice.event == "duplicate"
    assert json.loads(notice.body)["job_id"] == "bi-named"
