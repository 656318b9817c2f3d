"""What the contract's tests share: a fixed clock, entries in a given state, listing pages,
and threads started together."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from dropzone.ledger import (
    Entry,
    Ledger,
    Listed,
    Page,
    State,
)

if TYPE_CHECKING:
    from collections.abc import Callable

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
W, B = "chat", "bucket"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def add(ledger: Ledger, key: str, state: State = State.PENDING, etag: str = "e1") -> Entry:
    entry, created = ledger.add_object(W, B, key, etag, 100, state, T0)
    assert created
    return entry


def submitting(ledger: Ledger, key: str = "in/a.jsonl") -> Entry:
    entry = add(ledger, key)
    claimed = ledger.claim_one(entry.id, at(1))
    assert claimed is not None
    return claimed


def page(keys: list[str], after: str | None = None, through: str | None = None) -> Page:
    return Page([Listed(key, "e1", 100) for key in keys], after, through)


def record(
    ledger: Ledger,
    listed_page: Page,
    *,
    new_state: State = State.PENDING,
    resubmit: bool = True,
    now: datetime = T0,
) -> list[Entry]:
    """The entries a page recorded and returned to be told of (a plain baseline is counted
    instead: see ``Recorded``)."""
    return ledger.record_page(
        W,
        B,
        listed_page,
        new_state=new_state,
        on_change="resubmit" if resubmit else "ignore",
        now=now,
    ).entries


def states(ledger: Ledger) -> dict[tuple[str, str], State]:
    return {(entry.key, entry.etag): entry.state for entry in ledger.entries()}


def run_together(count: int, work: Callable[[int], None]) -> None:
    """``work(0)`` .. ``work(count - 1)`` on threads of their own, let go at once (a barrier),
    all joined; the first exception any of them raised is raised here."""
    start = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            start.wait()
            work(index)
        except BaseException as exc:  # handed to the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
