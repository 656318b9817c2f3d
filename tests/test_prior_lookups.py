"""The look-ups of versions' jobs by tag, as workers share them: a List in flight holds up no
worker whose answer is in hand, and a backlog's next batch is asked before a worker needs it.

The platform here is a stand-in of the one port ``PriorJobs`` is given (``find_by_tags``), so
that a List can be held open on purpose; the ledger is a real SQLite file.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from dropzone.jobs.prior import MAX_BATCH, PriorJobs, tag_of
from dropzone.ledger import SqliteLedger, State

if TYPE_CHECKING:
    from collections.abc import Collection, Iterator
    from pathlib import Path

    from dropzone.ark.models import Job
    from dropzone.ledger import Entry

DEADLINE_S = 30.0


class HeldPlatform:
    """Answers "no job" for every tag; while ``hold`` is clear, a List waits for it."""

    def __init__(self) -> None:
        self.lists: list[list[str]] = []
        self.hold = threading.Event()
        self.hold.set()
        self.listing = threading.Event()  # a List has arrived and is being held
        self._lock = threading.Lock()

    def find_by_tags(
        self, key: str, values: Collection[str], project_name: str | None
    ) -> dict[str, list[Job]]:
        with self._lock:
            self.lists.append(list(values))
        self.listing.set()
        if not self.hold.wait(DEADLINE_S):
            raise AssertionError("the test never let the List answer")
        return {}


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[SqliteLedger]:
    with SqliteLedger.open(tmp_path / "ledger.sqlite3", lock=False) as opened:
        yield opened


def _due(ledger: SqliteLedger, count: int) -> list[Entry]:
    now = datetime.now(UTC)
    return [
        ledger.add_object("chat", "bucket", f"in/{n:05}.jsonl", f"e{n}", 1, State.PENDING, now)[0]
        for n in range(count)
    ]


def _prior(platform: HeldPlatform, ledger: SqliteLedger) -> PriorJobs:
    return PriorJobs(api=platform, upcoming=ledger.upcoming, clock=lambda: datetime.now(UTC))


def _default(_watch: str) -> str:
    return "default"


def test_a_worker_whose_answer_is_in_hand_does_not_wait_on_a_list(ledger: SqliteLedger) -> None:
    """One worker's version is not answered and its List hangs; another's answer came with
    the first batch: that one goes on (it waited on the lock the whole List long)."""
    entries = _due(ledger, 3)
    platform = HeldPlatform()
    prior = _prior(platform, ledger)
    assert prior.job_for(entries[0], "default", _default) is None  # answers all three
    late = ledger.add_object(
        "chat", "bucket", "in/late.jsonl", "e", 1, State.PENDING, datetime.now(UTC)
    )[0]
    platform.hold.clear()
    platform.listing.clear()
    asking = threading.Thread(target=prior.job_for, args=(late, "default", _default))
    asking.start()
    assert platform.listing.wait(DEADLINE_S), "the unanswered version was never looked up"

    answered = threading.Event()

    def served() -> None:
        prior.job_for(entries[1], "default", _default)
        answered.set()

    threading.Thread(target=served, daemon=True).start()
    in_time = answered.wait(DEADLINE_S / 3)
    platform.hold.set()
    asking.join(DEADLINE_S)
    assert in_time, "a worker with its answer in hand waited for another's List"
    assert len(platform.lists) == 2


def test_a_backlog_is_looked_up_ahead_one_batch_at_a_time(ledger: SqliteLedger) -> None:
    """250 versions due, claimed 8 at a time and submitted as workers do: a List of 100, and
    the next one asked once half of a batch is used; no version asked twice."""
    entries = _due(ledger, 250)
    platform = HeldPlatform()
    prior = _prior(platform, ledger)
    lists_seen_before = []
    while claimed := ledger.claim_due(8, datetime.now(UTC), node="here"):
        for entry in claimed:
            lists_seen_before.append(len(platform.lists))
            assert prior.job_for(entry, "default", _default) is None
            ledger.record_submitted(
                entry.id, f"job-{entry.id}", "out/", datetime.now(UTC), fence=entry.claim_token
            )
    assert len(lists_seen_before) == len(entries)
    asked = [tag for one_list in platform.lists for tag in one_list]
    assert sorted(asked) == sorted(tag_of(entry) for entry in entries)
    assert [len(one_list) for one_list in platform.lists] == [MAX_BATCH, MAX_BATCH, 50]
    # The second List was asked while 50 answers of the first were still in hand.
    assert lists_seen_before[MAX_BATCH // 2] == 1
    assert lists_seen_before[MAX_BATCH // 2 + 1] == 2


def test_the_last_versions_of_a_backlog_cost_no_list_of_their_own(ledger: SqliteLedger) -> None:
    """20 versions: one List answers them all; taking the answers asks nothing more (no
    look-ahead when no version was left unasked)."""
    entries = _due(ledger, 20)
    platform = HeldPlatform()
    prior = _prior(platform, ledger)
    for entry in entries:
        assert prior.job_for(entry, "default", _default) is None
    assert [len(one_list) for one_list in platform.lists] == [20]
