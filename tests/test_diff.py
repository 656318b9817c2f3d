"""The listing diff (dropzone.ledger.diff): pure, so tested with tables and a set-based model."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dropzone.ledger.diff import Known, Listed, Page, PageDiff, diff_page


def listed(key: str, etag: str = "e1", *, eligible: bool = True) -> Listed:
    return Listed(key, etag, 10, eligible=eligible)


def row(entry_id: int, key: str, etag: str = "e1", *, gone: bool = False) -> Known:
    return Known(entry_id, key, etag, gone)


def test_unchanged_page_is_an_empty_diff() -> None:
    """Every listed version known and present: nothing to write (the diff is falsy)."""
    diff = diff_page([listed("a"), listed("b")], [row(1, "a", "e1"), row(2, "b", "e1")])
    assert diff == PageDiff()
    assert not diff


@pytest.mark.parametrize(
    ("items", "rows", "expected"),
    [
        pytest.param([listed("a")], [], PageDiff(new=(listed("a"),)), id="unknown key is new"),
        pytest.param(
            [listed("a", eligible=False)], [], PageDiff(), id="too young: not recorded yet"
        ),
        pytest.param(
            [listed("a", "e2")],
            [row(1, "a", "e1")],
            PageDiff(new_versions=(listed("a", "e2"),), gone=(1,)),
            id="new etag: a new version, and the old version is gone",
        ),
        pytest.param(
            [listed("a", "e2", eligible=False)],
            [row(1, "a", "e1")],
            PageDiff(gone=(1,)),
            id="new version still settling: not recorded, old version gone",
        ),
        pytest.param(
            [listed("a", eligible=False)],
            [row(1, "a", "e1")],
            PageDiff(),
            id="known version listed as ineligible is still present",
        ),
        pytest.param([], [row(1, "a", "e1")], PageDiff(gone=(1,)), id="absent key is gone"),
        pytest.param(
            [], [row(1, "a", "e1", gone=True)], PageDiff(), id="already gone: nothing to write"
        ),
        pytest.param(
            [listed("a")], [row(1, "a", "e1", gone=True)], PageDiff(back=(1,)), id="back again"
        ),
        pytest.param(
            [listed("a", "e1")],
            [row(1, "a", "e1"), row(2, "a", "e2")],
            PageDiff(gone=(2,)),
            id="older version re-uploaded: it is present, the other version gone",
        ),
        pytest.param(
            [listed("a", "e3")],
            [row(1, "a", "e1", gone=True), row(2, "a", "e2")],
            PageDiff(new_versions=(listed("a", "e3"),), gone=(2,)),
            id="third version of a key with two",
        ),
    ],
)
def test_diff_page_table(items: list[Listed], rows: list[Known], expected: PageDiff) -> None:
    """Each kind of change a page can bring, alone."""
    assert diff_page(items, rows) == expected


def test_database_rows_as_plain_tuples() -> None:
    """The ledger hands its rows over as plain tuples (no per-row object): same answer."""
    assert diff_page([listed("a", "e2")], [(1, "a", "e1", 0)]) == PageDiff(  # type: ignore[list-item]
        new_versions=(listed("a", "e2"),), gone=(1,)
    )


@pytest.mark.parametrize(
    ("after", "through", "key", "inside"),
    [
        (None, None, "anything", True),
        ("b", None, "b", False),
        ("b", None, "b0", True),
        (None, "m", "m", True),
        (None, "m", "m ", False),
        ("a", "c", "b", True),
        # Binary (code point) order: an astral character sorts after every BMP one.
        ("\uffff", None, "\U0001f600", True),
    ],
)
def test_page_range_is_after_exclusive_through_inclusive(
    after: str | None, through: str | None, key: str, inside: bool
) -> None:
    """A page covers (after, through]; None opens the range at that end."""
    assert Page([], after, through).covers(key) is inside


def test_page_refuses_a_listed_key_outside_its_range() -> None:
    """A key outside the range would be compared with rows never fetched: refused early."""
    with pytest.raises(ValueError, match="outside the page's range"):
        Page([listed("z")], after=None, through="m")


_KEYS = st.text(
    alphabet=["a", "b", " ", "/", "é", "日", "\uff5e", "\U0001f600"], min_size=1, max_size=3
)
_ETAGS = st.sampled_from(["e1", "e2", "e3"])


@given(
    known=st.dictionaries(_KEYS, st.dictionaries(_ETAGS, st.booleans(), min_size=1), max_size=10),
    listing=st.dictionaries(_KEYS, st.tuples(_ETAGS, st.booleans()), max_size=10),
)
def test_diff_equals_the_set_computation(
    known: dict[str, dict[str, bool]], listing: dict[str, tuple[str, bool]]
) -> None:
    """For any ledger rows and any listing, the diff is what set arithmetic says it is."""
    rows = [
        Known(number, key, etag, gone)
        for number, (key, etag, gone) in enumerate(
            (key, etag, gone)
            for key, etags in sorted(known.items())
            for etag, gone in etags.items()
        )
    ]
    items = [
        Listed(key, etag, 1, eligible=eligible) for key, (etag, eligible) in sorted(listing.items())
    ]
    diff = diff_page(items, rows)

    known_keys = {row.key for row in rows}
    known_versions = {(row.key, row.etag) for row in rows}
    listed_versions = {(item.key, item.etag) for item in items}
    eligible = [item for item in items if item.eligible]
    assert list(diff.new) == [item for item in eligible if item.key not in known_keys]
    assert list(diff.new_versions) == [
        item
        for item in eligible
        if item.key in known_keys and (item.key, item.etag) not in known_versions
    ]
    assert set(diff.gone) == {
        row.id for row in rows if not row.gone and (row.key, row.etag) not in listed_versions
    }
    assert set(diff.back) == {
        row.id for row in rows if row.gone and (row.key, row.etag) in listed_versions
    }
    assert len(set(diff.gone)) == len(diff.gone)
