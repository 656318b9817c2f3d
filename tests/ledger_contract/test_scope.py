"""The contract: a watch's scope, and the times a store keeps."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

import pytest

from dropzone.ledger import (
    Ledger,
    LedgerError,
    ScopeStatus,
    State,
)
from dropzone.ledger import model as ledger_model
from tests.ledger_contract.helpers import T0, B, W, at, page, record

if TYPE_CHECKING:
    from tests.ledger_contract.conftest import Store


def test_timestamps_are_utc_and_naive_ones_refused(ledger: Ledger) -> None:
    """An aware time in any zone is stored as UTC; a naive one is refused (no guessing)."""
    plus_two = timezone(timedelta(hours=2))
    entry, _ = ledger.add_object(
        W, B, "k", "e", 1, State.PENDING, datetime(2024, 5, 1, 14, tzinfo=plus_two)
    )
    assert entry.first_seen_at == T0
    assert entry.first_seen_at.tzinfo is not None
    assert ledger.get(entry.id).first_seen_at.utcoffset() == timedelta(0)
    with pytest.raises(ValueError, match="naive"):
        ledger.add_object(W, B, "k2", "e", 1, State.PENDING, datetime(2024, 5, 1))  # noqa: DTZ001
    assert ledger_model.to_text(T0) == "2024-05-01T12:00:00.000000Z"


def test_scope_first_start_unchanged_and_changed(ledger: Ledger) -> None:
    """A watch's scope is remembered; a new bucket or prefix marks its entries gone and
    starts a new baseline."""
    assert ledger.begin_watch(W, B, "in/", T0) is ScopeStatus.FIRST_START
    assert not ledger.baseline_done(W)
    record(ledger, page(["in/a"]), new_state=State.BASELINE)
    ledger.mark_baseline_done(W)
    assert ledger.begin_watch(W, B, "in/", at(1)) is ScopeStatus.UNCHANGED
    assert ledger.baseline_done(W)

    assert ledger.begin_watch(W, B, "other/", at(2)) is ScopeStatus.CHANGED
    assert not ledger.baseline_done(W)
    (old,) = ledger.find(W, B, "in/a")
    assert old.gone_since == at(2)
    assert ledger.begin_watch("another", B, "in/", at(3)) is ScopeStatus.FIRST_START


def test_interrupted_first_listing_is_still_a_first_listing(store: Store) -> None:
    """A crash during the first listing leaves baseline_done unset, so the restart keeps
    recording what exists as baseline instead of submitting it."""
    with store.open() as first:
        first.begin_watch(W, B, "in/", T0)
        record(first, page(["in/a"], through="in/a"), new_state=State.BASELINE)
    with store.open() as again:
        assert again.begin_watch(W, B, "in/", at(1)) is ScopeStatus.UNCHANGED
        assert not again.baseline_done(W)


def test_mark_baseline_done_needs_a_begun_watch(ledger: Ledger) -> None:
    """Marking an unknown watch is a programming error, said loudly."""
    with pytest.raises(LedgerError, match="never begun"):
        ledger.mark_baseline_done("nobody")
