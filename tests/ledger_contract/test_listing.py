"""The contract: listing pages merged into the ledger, and objects added directly."""

from __future__ import annotations

import itertools
import tracemalloc
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dropzone.ledger import (
    InvalidTransition,
    Ledger,
    LedgerError,
    Listed,
    Page,
    State,
)
from tests.ledger_contract.helpers import T0, B, W, add, at, page, record

if TYPE_CHECKING:
    from tests.ledger_contract.conftest import Store


UNICODE_KEYS = sorted(
    ["in/a b.jsonl", "in/a.jsonl", "in/z.jsonl", "in/é.jsonl", "in/日本.jsonl", "in/😀.jsonl"]
)


def test_record_page_across_pages_in_binary_order(ledger: Ledger) -> None:
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

    before = list(ledger.entries())
    assert [record(ledger, p, now=at(5)) for p in pages] == [[], [], []]
    assert list(ledger.entries()) == before, "an unchanged poll changes nothing"


def test_gone_and_back_within_the_page_range_only(ledger: Ledger) -> None:
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


def test_raw_bounds_without_matching_keys_still_prove_absence(ledger: Ledger) -> None:
    """A raw page whose objects all fail the pattern still covers its range: known keys in it
    are gone."""
    record(ledger, page(["k1.jsonl", "k5.jsonl"]))
    record(ledger, page([], "k0.txt", "k9.txt"), now=at(1))
    assert all(entry.gone_since == at(1) for entry in ledger.entries())


def test_ineligible_objects_are_present_but_not_recorded(ledger: Ledger) -> None:
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
    ledger: Ledger, resubmit: bool, state: State, note: str | None
) -> None:
    """The same key with a new ETag is a new entry: pending with resubmit, a noted baseline
    with ignore; the replaced version counts as gone (so it can be pruned)."""
    (first,) = record(ledger, page(["k"]))
    changed = Page([Listed("k", "e2", 200)])
    (version,) = record(ledger, changed, resubmit=resubmit, now=at(1))
    assert (version.etag, version.state, version.error, version.size) == ("e2", state, note, 200)
    assert ledger.get(first.id).gone_since == at(1)
    assert [entry.etag for entry in ledger.find(W, B, "k")] == ["e1", "e2"]


def test_new_version_during_a_first_listing_is_baseline(ledger: Ledger) -> None:
    """While a watch's first listing is (re)running, everything that exists is baseline."""
    record(ledger, page(["k"]), new_state=State.BASELINE)
    recorded = ledger.record_page(
        W, B, Page([Listed("k", "e2", 1)]), new_state=State.BASELINE, on_change="resubmit",
        now=at(1),
    )  # fmt: skip
    assert (recorded.entries, recorded.baseline) == ([], 1)
    version = ledger.find(W, B, "k")[1]
    assert (version.etag, version.state, version.error) == ("e2", State.BASELINE, None)


def test_a_first_listing_counts_its_baseline_and_returns_only_what_is_told(
    ledger: Ledger,
) -> None:
    """A first listing inserts a whole bucket: its plain baseline versions are counted, not
    returned one by one (building an entry for each would cost the first listing what the
    insert costs). A version it notes (``on_change=ignore``) is returned to be told of, and
    every version is in the ledger as a read returns it."""
    record(ledger, page(["b"]), now=at(0))
    listed = Page([Listed("a", "e1", 10), Listed("b", "e2", 20), Listed("c", "e1", 30)])
    recorded = ledger.record_page(
        W, B, listed, new_state=State.BASELINE, on_change="ignore", now=at(1)
    )
    assert [(e.key, e.etag, e.state, e.error) for e in recorded.entries] == [
        ("b", "e2", State.BASELINE, "on_change=ignore")
    ]
    assert recorded.baseline == 2
    assert recorded.entries[0] == ledger.get(recorded.entries[0].id)
    found = {(e.key, e.etag): e for e in ledger.entries()}
    assert set(found) == {("a", "e1"), ("b", "e1"), ("b", "e2"), ("c", "e1")}
    for key, size in (("a", 10), ("c", 30)):
        entry = found[key, "e1"]
        assert (entry.state, entry.size, entry.error, entry.gone_since) == (
            State.BASELINE,
            size,
            None,
            None,
        )
        assert entry.first_seen_at == entry.updated_at == at(1)
    assert found["a", "e1"].id < found["c", "e1"].id, "ids follow the listing's order"
    again = ledger.record_page(
        W, B, listed, new_state=State.BASELINE, on_change="ignore", now=at(2)
    )
    assert (again.entries, again.baseline) == ([], 0), "a known version is not counted again"


def test_record_page_accepts_only_starting_states(ledger: Ledger) -> None:
    """New objects start as pending or baseline; anything else is a caller's bug."""
    with pytest.raises(ValueError, match="pending or baseline"):
        record(ledger, page(["k"]), new_state=State.SUBMITTED)


def test_a_poll_reads_only_its_page_range(ledger: Ledger) -> None:
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


# The store fixture makes nothing itself: each example opens an empty ledger of its own.
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(scenario=_listing_scenario(), data=st.data())
def test_paged_merge_equals_the_set_model(
    store: Store,
    scenario: tuple[dict[str, str], list[list[tuple[str, str | None, bool]]]],
    data: st.DataObject,
) -> None:
    """Whatever the page boundaries, merging a listing page by page leaves the ledger as set
    arithmetic on the whole listing says: new versions recorded, the rest gone or present."""
    known, listings = scenario
    with store.empty() as ledger:
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


def test_add_object_inserts_once(ledger: Ledger) -> None:
    """Adding a known version returns the existing entry and False."""
    first, created = ledger.add_object(W, B, "k", "e", 1, State.PENDING, T0)
    again, created_again = ledger.add_object(W, B, "k", "e", 1, State.WAITING, at(1))
    assert (created, created_again) == (True, False)
    assert again == first
    with pytest.raises(ValueError, match="starts as"):
        ledger.add_object(W, B, "k2", "e", 1, State.SUBMITTED, T0)


def test_waiting_entries(ledger: Ledger) -> None:
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


def test_update_waiting_to_a_known_version_is_refused(ledger: Ledger) -> None:
    """Two entries never share an identity: the clash is a LedgerError and nothing changes."""
    add(ledger, "local/a", State.PENDING, etag="e2")
    waiting = add(ledger, "local/a", State.WAITING, etag="e1")
    with pytest.raises(LedgerError, match="version e2 of local/a already has an entry"):
        ledger.update_waiting(waiting.id, "e2", 1, at(1))
    assert ledger.get(waiting.id).etag == "e1"


def test_record_object_merges_one_key_as_a_listing_of_it_alone(ledger: Ledger) -> None:
    """One object as a HEAD saw it (an event's hint): new, then known (nothing), then a new
    version (the old one gone), and neighbouring keys untouched; too young, not recorded."""

    def seen(key: str, etag: str, *, eligible: bool = True, **kw: object) -> list[str]:
        found = Listed(key, etag, 10, eligible)
        options: dict[str, object] = {"new_state": State.PENDING, "on_change": "resubmit"}
        options.update(kw)
        recorded = ledger.record_object(W, B, found, now=at(1), **options)  # type: ignore[arg-type]
        return [f"{entry.key}@{entry.etag}:{entry.state}" for entry in recorded]

    record(ledger, page(["in/a.jsonl", "in/c.jsonl"]))
    assert seen("in/b.jsonl", "e1") == ["in/b.jsonl@e1:pending"]
    assert seen("in/b.jsonl", "e1") == [], "a duplicate event records nothing"
    assert seen("in/b.jsonl", "e2") == ["in/b.jsonl@e2:pending"]
    versions = {(e.key, e.etag): e.gone_since for e in ledger.entries()}
    assert versions == {
        ("in/a.jsonl", "e1"): None,
        ("in/b.jsonl", "e1"): at(1),
        ("in/b.jsonl", "e2"): None,
        ("in/c.jsonl", "e1"): None,
    }
    assert seen("in/b.jsonl", "e3", on_change="ignore") == ["in/b.jsonl@e3:baseline"]
    assert seen("in/d.jsonl", "e1", eligible=False) == [], "too young: not yet"
    assert seen("in/d.jsonl", "e1", new_state=State.BASELINE) == ["in/d.jsonl@e1:baseline"]
