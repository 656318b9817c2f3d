"""The ledger: state machine, listing merge, claims, outcomes, commands, durability, locking.

Every test uses a real SQLite file in its own temporary directory.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import tracemalloc
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dropzone.ark import models
from dropzone.ledger import (
    SCHEMA_VERSION,
    TRANSITIONS,
    Entry,
    EntryNotFound,
    InvalidTransition,
    Ledger,
    LedgerError,
    LedgerLocked,
    Listed,
    Page,
    RequestCounts,
    ScopeStatus,
    SqliteLedger,
    State,
    check_transition,
    schema,
)
from dropzone.ledger import model as ledger_model
from tests.harness import load_scale

if TYPE_CHECKING:
    from collections.abc import Iterator

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
W, B = "chat", "bucket"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "ledger.sqlite3"


@pytest.fixture
def ledger(path: Path) -> Iterator[SqliteLedger]:
    opened = SqliteLedger.open(path)
    yield opened
    opened.close()


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def add(ledger: SqliteLedger, key: str, state: State = State.PENDING, etag: str = "e1") -> Entry:
    entry, created = ledger.add_object(W, B, key, etag, 100, state, T0)
    assert created
    return entry


def submitting(ledger: SqliteLedger, key: str = "in/a.jsonl") -> Entry:
    entry = add(ledger, key)
    claimed = ledger.claim_one(entry.id, at(1))
    assert claimed is not None
    return claimed


def page(keys: list[str], after: str | None = None, through: str | None = None) -> Page:
    return Page([Listed(key, "e1", 100) for key in keys], after, through)


def record(
    ledger: SqliteLedger,
    listed_page: Page,
    *,
    new_state: State = State.PENDING,
    resubmit: bool = True,
    now: datetime = T0,
) -> list[Entry]:
    return ledger.record_page(
        W,
        B,
        listed_page,
        new_state=new_state,
        on_change="resubmit" if resubmit else "ignore",
        now=now,
    )


def states(ledger: SqliteLedger) -> dict[tuple[str, str], State]:
    return {(entry.key, entry.etag): entry.state for entry in ledger.entries()}


# --- the transition table (pure) -------------------------------------------------------------

# The specification, written out rather than derived from the code under test.
ALLOWED = {
    (State.BASELINE, State.PENDING),
    (State.WAITING, State.PENDING),
    (State.WAITING, State.REJECTED),
    (State.PENDING, State.SUBMITTING),
    (State.PENDING, State.INVALID),
    (State.PENDING, State.REJECTED),
    (State.SUBMITTING, State.SUBMITTED),
    (State.SUBMITTING, State.DUPLICATE),
    (State.SUBMITTING, State.REJECTED),
    (State.SUBMITTING, State.INVALID),
    (State.SUBMITTING, State.PENDING),
    (State.DUPLICATE, State.PENDING),
    (State.INVALID, State.PENDING),
    (State.REJECTED, State.PENDING),
}


@pytest.mark.parametrize("old", list(State))
@pytest.mark.parametrize("new", list(State))
def test_transition_table(old: State, new: State) -> None:
    """Exactly the transitions of design section 2 (and the brief's additions) are allowed."""
    if (old, new) in ALLOWED:
        check_transition(old, new)
    else:
        with pytest.raises(InvalidTransition) as caught:
            check_transition(old, new)
        assert (caught.value.old, caught.value.new) == (old, new)


def test_sqlite_ledger_implements_the_protocol(ledger: SqliteLedger) -> None:
    """SqliteLedger is a Ledger (checked by mypy here; the daemon only knows the protocol)."""
    as_protocol: Ledger = ledger
    assert as_protocol.counts()[State.PENDING] == 0


def test_transition_table_covers_every_state() -> None:
    """Every state has a row, so a new state cannot be added without deciding its moves."""
    assert set(TRANSITIONS) == set(State)


def test_phase_names_match_the_ark_models() -> None:
    """The ledger spells Ark's phases itself (in SQL too); they must stay Ark's."""
    assert {str(p) for p in models.TERMINAL_PHASES} == ledger_model.TERMINAL_PHASES
    assert {str(p) for p in models.ACTIVE_PHASES} == ledger_model.ACTIVE_PHASES


def test_timestamps_are_utc_and_naive_ones_refused(ledger: SqliteLedger) -> None:
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


# --- scope --------------------------------------------------------------------------------------


def test_scope_first_start_unchanged_and_changed(ledger: SqliteLedger) -> None:
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


def test_interrupted_first_listing_is_still_a_first_listing(path: Path) -> None:
    """A crash during the first listing leaves baseline_done unset, so the restart keeps
    recording what exists as baseline instead of submitting it."""
    with SqliteLedger.open(path) as first:
        first.begin_watch(W, B, "in/", T0)
        record(first, page(["in/a"], through="in/a"), new_state=State.BASELINE)
    with SqliteLedger.open(path) as again:
        assert again.begin_watch(W, B, "in/", at(1)) is ScopeStatus.UNCHANGED
        assert not again.baseline_done(W)


def test_mark_baseline_done_needs_a_begun_watch(ledger: SqliteLedger) -> None:
    """Marking an unknown watch is a programming error, said loudly."""
    with pytest.raises(LedgerError, match="never begun"):
        ledger.mark_baseline_done("nobody")


# --- the listing merge --------------------------------------------------------------------------

UNICODE_KEYS = sorted(
    ["in/a b.jsonl", "in/a.jsonl", "in/z.jsonl", "in/é.jsonl", "in/日本.jsonl", "in/😀.jsonl"]
)


def test_record_page_across_pages_in_binary_order(ledger: SqliteLedger) -> None:
    """Pages with None bounds at both ends, unicode and spaces: every key recorded once,
    and a second identical poll records nothing and marks nothing gone."""
    keys = UNICODE_KEYS
    pages = [
        page(keys[:2], None, keys[1]),
        page(keys[2:4], keys[1], keys[3]),
        page(keys[4:], keys[3]),
    ]
    recorded = [entry for p in pages for entry in record(ledger, p)]
    assert [entry.key for entry in recorded] == keys
    assert all(entry.state is State.PENDING for entry in recorded)
    assert recorded[0] == ledger.get(recorded[0].id)
    assert [entry.key for entry in ledger.entries()] == keys, "SQLite sorts as S3 and Python do"

    changes_before = ledger._conn.total_changes
    assert [record(ledger, p, now=at(5)) for p in pages] == [[], [], []]
    assert ledger._conn.total_changes == changes_before, "an unchanged poll writes nothing"


def test_gone_and_back_within_the_page_range_only(ledger: SqliteLedger) -> None:
    """A key absent from its page's range is marked gone (once); keys outside the range are
    untouched; a key listed again is no longer gone and is not new."""
    record(ledger, page(["a", "b", "c", "x"]))
    assert record(ledger, page(["a", "c"], None, "c"), now=at(10)) == []
    gone = {entry.key: entry.gone_since for entry in ledger.entries()}
    assert gone == {"a": None, "b": at(10), "c": None, "x": None}

    record(ledger, page(["a", "c"], None, "c"), now=at(20))
    assert ledger.find(W, B, "b")[0].gone_since == at(10), "gone_since keeps the first miss"

    assert record(ledger, page(["b"], "a", "b"), now=at(30)) == []
    assert ledger.find(W, B, "b")[0].gone_since is None


def test_raw_bounds_without_matching_keys_still_prove_absence(ledger: SqliteLedger) -> None:
    """A raw page whose objects all fail the pattern still covers its range: known keys in it
    are gone."""
    record(ledger, page(["k1.jsonl", "k5.jsonl"]))
    record(ledger, page([], "k0.txt", "k9.txt"), now=at(1))
    assert all(entry.gone_since == at(1) for entry in ledger.entries())


def test_ineligible_objects_are_present_but_not_recorded(ledger: SqliteLedger) -> None:
    """A listed object too young to count is not recorded yet, and its known version is not
    gone; once eligible it is recorded."""
    record(ledger, page(["old"]))
    young = Page([Listed("new", "e1", 1, eligible=False), Listed("old", "e1", 1, eligible=False)])
    assert record(ledger, young, now=at(1)) == []
    assert [(e.key, e.gone_since) for e in ledger.entries()] == [("old", None)]
    assert [e.key for e in record(ledger, page(["new", "old"]), now=at(2))] == ["new"]


@pytest.mark.parametrize(
    ("resubmit", "state", "note"),
    [(True, State.PENDING, None), (False, State.BASELINE, "on_change=ignore")],
)
def test_new_version_under_both_on_change_modes(
    ledger: SqliteLedger, resubmit: bool, state: State, note: str | None
) -> None:
    """The same key with a new ETag is a new entry: pending with resubmit, a noted baseline
    with ignore; the replaced version counts as gone (so it can be pruned)."""
    (first,) = record(ledger, page(["k"]))
    changed = Page([Listed("k", "e2", 200)])
    (version,) = record(ledger, changed, resubmit=resubmit, now=at(1))
    assert (version.etag, version.state, version.error, version.size) == ("e2", state, note, 200)
    assert ledger.get(first.id).gone_since == at(1)
    assert [entry.etag for entry in ledger.find(W, B, "k")] == ["e1", "e2"]


def test_new_version_during_a_first_listing_is_baseline(ledger: SqliteLedger) -> None:
    """While a watch's first listing is (re)running, everything that exists is baseline."""
    record(ledger, page(["k"]), new_state=State.BASELINE)
    (version,) = record(ledger, Page([Listed("k", "e2", 1)]), new_state=State.BASELINE, now=at(1))
    assert version.state is State.BASELINE
    assert version.error is None


def test_record_page_accepts_only_starting_states(ledger: SqliteLedger) -> None:
    """New objects start as pending or baseline; anything else is a caller's bug."""
    with pytest.raises(ValueError, match="pending or baseline"):
        record(ledger, page(["k"]), new_state=State.SUBMITTED)


def test_a_poll_reads_only_its_page_range(ledger: SqliteLedger) -> None:
    """Memory does not grow with the ledger: a small page over 20,000 known keys allocates
    a small fraction of what loading every row would."""
    keys = [f"k{i:06d}" for i in range(20_000)]
    for start in range(0, len(keys), 5_000):
        chunk = keys[start : start + 5_000]
        record(
            ledger,
            page(
                chunk,
                keys[start - 1] if start else None,
                chunk[-1] if start + 5_000 < len(keys) else None,
            ),
        )
    small = page(keys[10_000:10_010], keys[9_999], keys[10_009])
    tracemalloc.start()
    try:
        record(ledger, small, now=at(1))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 200_000


@st.composite
def _listing_scenario(
    draw: st.DrawFn,
) -> tuple[dict[str, str], list[list[tuple[str, str | None, bool]]]]:
    """Keys already known (with their etag), then two listings: per raw key, its etag (None if
    the pattern filters it out) and whether it is eligible."""
    keys = st.text(
        alphabet=["a", "b", " ", "é", "日", "\uff5e", "\U0001f600"], min_size=1, max_size=3
    )
    known = draw(st.dictionaries(keys, st.sampled_from(["e1", "e2"]), max_size=8))
    listings = [
        sorted(
            (key, etag, eligible)
            for key, (etag, eligible) in draw(
                st.dictionaries(
                    keys, st.tuples(st.sampled_from(["e1", "e2", None]), st.booleans()), max_size=10
                )
            ).items()
        )
        for _ in range(2)
    ]
    return known, listings


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=_listing_scenario(), data=st.data())
def test_paged_merge_equals_the_set_model(
    scenario: tuple[dict[str, str], list[list[tuple[str, str | None, bool]]]], data: st.DataObject
) -> None:
    """Whatever the page boundaries, merging a listing page by page leaves the ledger as set
    arithmetic on the whole listing says: new versions recorded, the rest gone or present."""
    known, listings = scenario
    with tempfile.TemporaryDirectory() as tmp, SqliteLedger.open(Path(tmp) / "l.sqlite3") as ledger:
        for key, etag in known.items():
            ledger.add_object(W, B, key, etag, 1, State.BASELINE, T0)
        model = dict.fromkeys(known.items(), False)  # version -> gone
        for number, raw in enumerate(listings, start=1):
            cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(raw) - 1)), max_size=3)))
            bounds = [0, *[c for c in cuts if c < len(raw)], len(raw)]
            after: str | None = None
            for start, end in itertools.pairwise(bounds):
                chunk = raw[start:end]
                through = chunk[-1][0] if chunk and end < len(raw) else None
                items = [Listed(k, e, 1, eligible=ok) for k, e, ok in chunk if e is not None]
                record(ledger, Page(items, after, through), now=at(number))
                after = through
            listed = {(k, e) for k, e, _ in raw if e is not None}
            model = {version: version not in listed for version in model}
            model |= {
                (k, e): False for k, e, ok in raw if ok and e is not None and (k, e) not in model
            }
        assert {(e.key, e.etag): e.gone_since is not None for e in ledger.entries()} == model


# --- objects added directly ---------------------------------------------------------------------


def test_add_object_inserts_once(ledger: SqliteLedger) -> None:
    """Adding a known version returns the existing entry and False."""
    first, created = ledger.add_object(W, B, "k", "e", 1, State.PENDING, T0)
    again, created_again = ledger.add_object(W, B, "k", "e", 1, State.WAITING, at(1))
    assert (created, created_again) == (True, False)
    assert again == first
    with pytest.raises(ValueError, match="starts as"):
        ledger.add_object(W, B, "k2", "e", 1, State.SUBMITTED, T0)


def test_waiting_entries(ledger: SqliteLedger) -> None:
    """A local file waits (its version may still change), then becomes pending; a waiting
    file that vanished is rejected; only waiting entries can be promoted."""
    waiting = add(ledger, "local/a", State.WAITING)
    updated = ledger.update_waiting(waiting.id, "e2", 555, at(1))
    assert (updated.etag, updated.size, updated.state) == ("e2", 555, State.WAITING)
    promoted = ledger.promote_waiting(waiting.id, at(2))
    assert (promoted.state, promoted.next_attempt_at) == (State.PENDING, None)
    with pytest.raises(InvalidTransition):
        ledger.promote_waiting(waiting.id, at(3))
    with pytest.raises(InvalidTransition):
        ledger.update_waiting(waiting.id, "e3", 1, at(3))

    vanished = add(ledger, "local/b", State.WAITING)
    assert ledger.record_rejected(vanished.id, "the file vanished", at(1)).state is State.REJECTED


def test_update_waiting_to_a_known_version_is_refused(ledger: SqliteLedger) -> None:
    """Two entries never share an identity: the clash is a LedgerError and nothing changes."""
    add(ledger, "local/a", State.PENDING, etag="e2")
    waiting = add(ledger, "local/a", State.WAITING, etag="e1")
    with pytest.raises(LedgerError, match="UNIQUE"):
        ledger.update_waiting(waiting.id, "e2", 1, at(1))
    assert ledger.get(waiting.id).etag == "e1"


# --- claims -------------------------------------------------------------------------------------


def test_claim_due_takes_due_pending_entries_oldest_first(ledger: SqliteLedger) -> None:
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


def test_claim_respects_next_attempt_at(ledger: SqliteLedger) -> None:
    """A retry scheduled for later is not claimed before its time, and is at its time."""
    entry = submitting(ledger)
    ledger.schedule_retry(entry.id, at(60), "throttled", at(2), transient=False)
    assert ledger.claim_due(1, at(59)) == []
    (again,) = ledger.claim_due(1, at(60))
    assert (again.attempts, again.next_attempt_at) == (2, None)


def test_claim_one(ledger: SqliteLedger) -> None:
    """`dropzone submit` claims its entry even before it is due; never one not pending."""
    entry = submitting(ledger)
    ledger.schedule_retry(entry.id, at(3600), "throttled", at(2), transient=False)
    claimed = ledger.claim_one(entry.id, at(3))
    assert claimed is not None
    assert claimed.state is State.SUBMITTING
    assert ledger.claim_one(entry.id, at(4)) is None
    assert ledger.claim_one(999, at(4)) is None


def test_concurrent_claims_take_each_entry_once(path: Path) -> None:
    """Eight threads on eight connections claim 240 entries at once: each exactly once."""
    with SqliteLedger.open(path) as setup:
        for number in range(240):
            setup.add_object(W, B, f"k{number:03d}", "e", 1, State.PENDING, T0)
    ledgers = [SqliteLedger.open(path, lock=False) for _ in range(8)]
    claimed: list[list[int]] = [[] for _ in ledgers]
    start = threading.Barrier(len(ledgers))
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            start.wait()
            while batch := ledgers[index].claim_due(3, at(1)):
                claimed[index].extend(entry.id for entry in batch)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(ledgers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for opened in ledgers:
        opened.close()
    assert errors == []
    every = [entry_id for ids in claimed for entry_id in ids]
    assert len(every) == len(set(every)) == 240


def test_threads_sharing_one_ledger_claim_each_entry_once(ledger: SqliteLedger) -> None:
    """The daemon's shape: several workers on one SqliteLedger object."""
    for number in range(100):
        add(ledger, f"k{number:03d}")
    seen: list[int] = []
    lock = threading.Lock()

    def work() -> None:
        while batch := ledger.claim_due(1, at(1)):
            with lock:
                seen.extend(entry.id for entry in batch)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(seen) == sorted(set(seen))
    assert len(seen) == 100


# --- outcomes -----------------------------------------------------------------------------------


def test_record_submitted(ledger: SqliteLedger) -> None:
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


def test_record_duplicate(ledger: SqliteLedger) -> None:
    """Duplicate: the guard's existing job id is recorded."""
    entry = submitting(ledger)
    dup = ledger.record_duplicate(entry.id, "bi-other", "out/a/", at(2))
    assert (dup.state, dup.job_id) == (State.DUPLICATE, "bi-other")


def test_an_awaiting_duplicate_goes_back_to_pending_once_its_job_ended(
    ledger: SqliteLedger,
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


def test_a_duplicate_that_does_not_await_is_never_released(ledger: SqliteLedger) -> None:
    """A plain duplicate (the default "resubmit") is an outcome: its job's end leaves it."""
    entry = submitting(ledger)
    ledger.record_duplicate(entry.id, "bi-v1", None, at(2))
    assert ledger.end_wait(entry.id, "bi-v1", "Completed", at(3)) is None
    assert ledger.get(entry.id).state is State.DUPLICATE


@pytest.mark.parametrize("start", [State.PENDING, State.SUBMITTING, State.WAITING])
def test_record_rejected_from_each_allowed_state(ledger: SqliteLedger, start: State) -> None:
    """Rejected (with its reason) from pending, submitting or waiting."""
    entry = add(ledger, "k", State.WAITING if start is State.WAITING else State.PENDING)
    if start is State.SUBMITTING:
        ledger.claim_one(entry.id, at(1))
    rejected = ledger.record_rejected(entry.id, "InvalidParameter: bad", at(2))
    assert (rejected.state, rejected.error) == (State.REJECTED, "InvalidParameter: bad")


@pytest.mark.parametrize("start", [State.PENDING, State.SUBMITTING])
def test_record_invalid(ledger: SqliteLedger, start: State) -> None:
    """Invalid (preflight) from pending or submitting."""
    entry = add(ledger, "k")
    if start is State.SUBMITTING:
        ledger.claim_one(entry.id, at(1))
    assert ledger.record_invalid(entry.id, "line 3: not JSON", at(2)).state is State.INVALID


def test_schedule_retry_and_release(ledger: SqliteLedger) -> None:
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


def test_only_transient_retries_count_as_transient_failures(ledger: SqliteLedger) -> None:
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


def test_defer_reconcile_keeps_the_claim(ledger: SqliteLedger) -> None:
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
def test_illegal_outcomes_are_refused(ledger: SqliteLedger, operation: str, start: State) -> None:
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


def test_sql_guard_refuses_a_stale_writer(path: Path) -> None:
    """The state check is in the UPDATE itself: a second connection acting on what it read
    earlier cannot move an entry that has moved on meanwhile."""
    with SqliteLedger.open(path) as one, SqliteLedger.open(path, lock=False) as two:
        entry = submitting(one)
        one.record_submitted(entry.id, "bi-1", None, at(2))
        with pytest.raises(InvalidTransition):
            two.release(entry.id, at(3))
        assert two.get(entry.id).state is State.SUBMITTED


def test_unknown_entry(ledger: SqliteLedger) -> None:
    """An id that does not exist (forgotten, pruned) is EntryNotFound, not a wrong state."""
    with pytest.raises(EntryNotFound):
        ledger.get(42)
    with pytest.raises(EntryNotFound):
        ledger.record_rejected(42, "x", T0)
    with pytest.raises(EntryNotFound):
        ledger.record_phase(42, "Running", None, T0)


def test_record_phase_tracking_and_active_jobs(ledger: SqliteLedger) -> None:
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


def test_an_unknown_phase_is_tracked_and_holds_capacity(ledger: SqliteLedger) -> None:
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


def test_tracking_resumes_after_the_last_entry_of_a_batch(ledger: SqliteLedger) -> None:
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


# --- queries ------------------------------------------------------------------------------------


def test_entries_stream_in_order_across_chunks(ledger: SqliteLedger) -> None:
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


def test_in_state_is_oldest_first(ledger: SqliteLedger) -> None:
    """in_state lists by first sighting (the order reconciliation should follow)."""
    ledger.add_object(W, B, "b", "e", 1, State.PENDING, at(1))
    ledger.add_object(W, B, "a", "e", 1, State.PENDING, at(2))
    assert [e.key for e in ledger.in_state(State.PENDING)] == ["b", "a"]


def test_counts_oldest_unsubmitted_and_next_due(ledger: SqliteLedger) -> None:
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


def test_find_returns_every_version(ledger: SqliteLedger) -> None:
    """find gives all versions of one object, oldest first."""
    add(ledger, "k", etag="e1")
    ledger.add_object(W, B, "k", "e2", 1, State.PENDING, at(1))
    assert [e.etag for e in ledger.find(W, B, "k")] == ["e1", "e2"]
    assert ledger.find(W, "other-bucket", "k") == []


# --- commands -----------------------------------------------------------------------------------


def test_backfill(ledger: SqliteLedger) -> None:
    """backfill moves baseline entries (of one watch, or all) to pending, due now."""
    add(ledger, "a", State.BASELINE)
    ledger.add_object("other", B, "b", "e", 1, State.BASELINE, T0)
    assert ledger.backfill(W, at(1)) == 1
    assert ledger.counts("other")[State.BASELINE] == 1
    assert ledger.backfill(None, at(2)) == 1
    assert len(ledger.claim_due(10, at(2))) == 2


def test_retry(ledger: SqliteLedger) -> None:
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


def test_retry_of_a_duplicate_drops_the_job_it_named(ledger: SqliteLedger) -> None:
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


def test_forget_makes_an_object_new_again(ledger: SqliteLedger) -> None:
    """forget deletes every version of the keys (in one watch, or all); the next listing
    records the object as new."""
    record(ledger, page(["a", "b"]))
    ledger.add_object("other", B, "a", "e1", 1, State.PENDING, T0)
    assert ledger.forget(W, ["a", "zzz"]) == 1
    assert [e.key for e in record(ledger, page(["a", "b"]), now=at(1))] == ["a"]
    assert ledger.forget(None, ["a"]) == 2


def test_prune_drops_only_long_gone_entries(ledger: SqliteLedger) -> None:
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


# --- files, locks, durability, migrations -------------------------------------------------------

_HOLD = """
import sys
from datetime import UTC, datetime
from dropzone.ledger import SqliteLedger, State
ledger = SqliteLedger.open(sys.argv[1])
ledger.add_object("chat", "bucket", "k", "e", 1, State.PENDING, datetime(2024, 1, 1, tzinfo=UTC))
print("ready", flush=True)
sys.stdin.read()
"""

_KILLED_AFTER_COMMIT = """
import os, signal, sys
from datetime import UTC, datetime
from dropzone.ledger import SqliteLedger, State
ledger = SqliteLedger.open(sys.argv[1])
now = datetime(2024, 1, 1, tzinfo=UTC)
entry, _ = ledger.add_object("chat", "bucket", "k", "e", 1, State.PENDING, now)
ledger.claim_due(1, now)
print(entry.id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


@contextlib.contextmanager
def _held_elsewhere(path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the ledger open (as a daemon does) until the block ends."""
    with subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdin is not None
        assert holder.stdout is not None
        try:
            assert holder.stdout.readline().strip() == "ready"
            yield holder
        finally:
            holder.stdin.close()
            holder.wait(timeout=10 * load_scale())


def test_second_process_is_refused_while_readers_still_work(path: Path) -> None:
    """Another process holding the ledger: opening it again fails with a message naming the
    file and the holder's pid; a read-only opener works meanwhile; after it exits, it opens."""
    with _held_elsewhere(path) as holder:
        with pytest.raises(LedgerLocked) as caught:
            SqliteLedger.open(path)
        message = str(caught.value)
        assert f"another dropzone (pid {holder.pid}) is using {path}" in message
        assert "use another ledger.path" in message
        with SqliteLedger.open(path, readonly=True) as reader:
            assert [e.key for e in reader.entries()] == ["k"]
            with pytest.raises(LedgerError, match="readonly"):
                reader.backfill(None, T0)
    with SqliteLedger.open(path) as reopened:
        assert reopened.counts()[State.PENDING] == 1


@pytest.mark.parametrize("link", ["symlink", "hard link", "symlinked folder"])
def test_the_same_file_by_another_path_is_refused(tmp_path: Path, path: Path, link: str) -> None:
    """One daemon per ledger file, however it is reached: another process holding it, the
    same file opened by a symbolic link, a hard link or a linked folder is refused, naming
    the holder's pid; the first spelling opens again once the holder is gone."""
    with SqliteLedger.open(path):
        pass
    other = tmp_path / "elsewhere" / "ledger.sqlite3"
    other.parent.mkdir()
    if link == "symlink":
        other.symlink_to(path)
    elif link == "hard link":
        other.hardlink_to(path)
    else:
        other.parent.rmdir()
        other.parent.symlink_to(path.parent)
    with _held_elsewhere(path) as holder:
        with pytest.raises(LedgerLocked) as caught:
            SqliteLedger.open(other)
        assert f"another dropzone (pid {holder.pid}) is using {other}" in str(caught.value)
    with SqliteLedger.open(other) as reopened:
        assert reopened.counts()[State.PENDING] == 1


@pytest.mark.parametrize("how", ["removed", "replaced", "log removed", "log replaced"])
def test_a_ledger_file_removed_or_replaced_is_told(path: Path, how: str) -> None:
    """The ledger's file, or its write-ahead log, removed or replaced by another file while
    open: ``displaced`` names the file and what became of it (None while all is in place)."""
    with SqliteLedger.open(path) as ledger:
        add(ledger, "k")
        assert ledger.displaced() is None
        target = path if how in {"removed", "replaced"} else path.with_name(path.name + "-wal")
        if how.endswith("removed"):
            target.unlink()
        else:
            copy = target.with_name("copy")
            shutil.copyfile(target, copy)
            copy.replace(target)
        verb = how.rsplit(maxsplit=1)[-1]
        assert ledger.displaced() == f"{target} was {verb} while the ledger was open"


def test_commit_survives_sigkill(path: Path) -> None:
    """A process killed right after a claim returns: the claim is there on reopen, and the
    kernel has released the dead process's lock."""
    child = subprocess.run(
        [sys.executable, "-c", _KILLED_AFTER_COMMIT, str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    with SqliteLedger.open(path) as reopened:
        entry = reopened.get(int(child.stdout))
        assert (entry.state, entry.attempts) == (State.SUBMITTING, 1)


def test_missing_directories_are_created(tmp_path: Path) -> None:
    """A writable ledger creates its parent directories; the file is in WAL mode."""
    target = tmp_path / "a" / "b" / "ledger.sqlite3"
    with SqliteLedger.open(target):
        pass
    mode = sqlite3.connect(target).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_unusable_paths_raise_ledger_error_naming_them(tmp_path: Path) -> None:
    """Not a database, or a directory that cannot be made: a LedgerError that names the
    path, chained from the original error."""
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"this is not a database, only text " * 200)
    with pytest.raises(LedgerError, match=str(junk)) as caught:
        SqliteLedger.open(junk)
    assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(LedgerError, match=str(blocker)) as caught:
        SqliteLedger.open(blocker / "ledger.sqlite3")
    assert isinstance(caught.value.__cause__, OSError)
    with pytest.raises(LedgerError, match=r"missing\.sqlite3"):
        SqliteLedger.open(tmp_path / "missing.sqlite3", readonly=True)


def test_someone_elses_database_is_not_taken_over(tmp_path: Path) -> None:
    """An SQLite file with tables but no schema version is not ours: refused, untouched."""
    foreign = tmp_path / "app.db"
    sqlite3.connect(foreign).execute("CREATE TABLE users (name TEXT)")
    with pytest.raises(LedgerError, match="not a dropzone ledger"):
        SqliteLedger.open(foreign)
    tables = sqlite3.connect(foreign).execute("SELECT name FROM sqlite_master").fetchall()
    assert tables == [("users",)]


def test_empty_file_is_migrated_to_the_current_schema(tmp_path: Path) -> None:
    """A version-0 (empty) file gets every migration and the current user_version."""
    target = tmp_path / "empty.sqlite3"
    target.touch()
    with SqliteLedger.open(target) as opened:
        add(opened, "k")
    assert sqlite3.connect(target).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_migrations_apply_in_order_from_the_stored_version(tmp_path: Path) -> None:
    """An older file gets only the migrations after its version, in order, keeping its data;
    a failing migration leaves the file at the version before it."""
    target = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(target, isolation_level=None)
    schema.migrate(conn, target, schema.MIGRATIONS[:1])
    conn.execute(
        "INSERT INTO entries (watch, bucket, key, etag, size, state, first_seen_at, updated_at)"
        " VALUES ('w', 'b', 'k', 'e', 1, 'pending', 'x', 'x')"
    )
    broken = (*schema.MIGRATIONS[:1], ("ALTER TABLE entries ADD COLUMN note TEXT", "NOT SQL"))
    with pytest.raises(sqlite3.OperationalError):
        schema.migrate(conn, target, broken)
    assert schema.user_version(conn) == 1
    columns = {row[1] for row in conn.execute("PRAGMA table_info(entries)")}
    assert "note" not in columns

    later = (
        *schema.MIGRATIONS[:1],
        ("ALTER TABLE entries ADD COLUMN note TEXT",),
        ("CREATE TABLE extra (x)",),
    )
    schema.migrate(conn, target, later)
    assert schema.user_version(conn) == 3
    assert conn.execute("SELECT key, note FROM entries").fetchall() == [("k", None)]


def test_a_version_1_ledger_migrates_with_no_transient_failures_counted(tmp_path: Path) -> None:
    """A ledger from before transient failures were counted apart (schema 1) must be migrated
    before it can be read; then its entries keep their attempts and start with no transient
    failure (which of those attempts failed transiently was never recorded), and count on."""
    target = tmp_path / "v1.sqlite3"
    stamp = ledger_model.to_text(T0)
    conn = sqlite3.connect(target, isolation_level=None)
    schema.migrate(conn, target, schema.MIGRATIONS[:1])
    conn.execute(
        "INSERT INTO entries (watch, bucket, key, etag, size, state, attempts, error,"
        " first_seen_at, updated_at) VALUES (?, ?, 'k', 'e', 1, 'pending', 7, 'throttled', ?, ?)",
        (W, B, stamp, stamp),
    )
    conn.close()
    with pytest.raises(LedgerError, match="schema version 1, this dropzone uses"):
        SqliteLedger.open(target, readonly=True)
    with SqliteLedger.open(target) as opened:
        (entry,) = opened.entries()
        assert (entry.attempts, entry.transient_failures, entry.error) == (7, 0, "throttled")
        assert opened.claim_one(entry.id, at(1)) is not None
        retry = opened.schedule_retry(entry.id, at(2), "HTTP 503", at(1), transient=True)
        assert (retry.attempts, retry.transient_failures) == (8, 1)
    assert sqlite3.connect(target).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_version_2_ledger_migrates_with_no_duplicate_awaiting(tmp_path: Path) -> None:
    """A ledger from before after-active (schema 2) keeps its duplicates as outcomes: none
    awaits its job after the migration."""
    target = tmp_path / "v2.sqlite3"
    stamp = ledger_model.to_text(T0)
    conn = sqlite3.connect(target, isolation_level=None)
    schema.migrate(conn, target, schema.MIGRATIONS[:2])
    conn.execute(
        "INSERT INTO entries (watch, bucket, key, etag, size, state, job_id,"
        " first_seen_at, updated_at) VALUES (?, ?, 'k', 'e', 1, 'duplicate', 'bi-1', ?, ?)",
        (W, B, stamp, stamp),
    )
    conn.close()
    with SqliteLedger.open(target) as opened:
        (entry,) = opened.entries()
        assert (entry.state, entry.job_id, entry.awaits_job) == (State.DUPLICATE, "bi-1", False)
        assert opened.end_wait(entry.id, "bi-1", "Completed", at(1)) is None
    assert sqlite3.connect(target).execute("PRAGMA user_version").fetchone()[0] == 3


def test_newer_schema_is_refused(path: Path) -> None:
    """A file written by a newer dropzone is refused with a clear message, and an older one
    cannot be read without migrating it first."""
    with SqliteLedger.open(path):
        pass
    sqlite3.connect(path, isolation_level=None).execute(
        f"PRAGMA user_version = {SCHEMA_VERSION + 1}"
    )
    with pytest.raises(
        LedgerError, match=r"newer than this dropzone understands .*upgrade dropzone"
    ):
        SqliteLedger.open(path)
    with pytest.raises(LedgerError, match="schema version"):
        SqliteLedger.open(path, readonly=True)
    sqlite3.connect(path, isolation_level=None).execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    with SqliteLedger.open(path):
        pass  # the failed opens released the lock
