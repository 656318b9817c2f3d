"""A bucket poll over moto: pages merged in order, each object recorded once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
from botocore.utils import parse_timestamp

from dropzone.config import WatchRule
from dropzone.ledger import SqliteLedger, State
from dropzone.sources.s3_parsing import fast_timestamp
from dropzone.sources.tos import TosBucket
from dropzone.watches.bucket import BucketWatch
from tests.harness import jsonl, new_bucket, s3_client

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from dropzone.sources.base import ListingPage


@pytest.fixture
def bucket(moto_endpoint: str) -> TosBucket:
    s3 = s3_client(moto_endpoint)
    return TosBucket(s3, new_bucket(s3, "scan"))


def _rule(bucket: TosBucket) -> WatchRule:
    return WatchRule.model_validate(
        {
            "name": "w",
            "bucket": bucket.bucket,
            "prefix": "in/",
            "model": {"name": "m-1"},
            "min_age_s": 0,
        }
    )


def _put(bucket: TosBucket, *keys: str) -> None:
    for key in keys:
        bucket.s3.put_object(Bucket=bucket.bucket, Key=key, Body=jsonl())


def test_a_paged_poll_records_every_object_once(bucket: TosBucket, tmp_path: Path) -> None:
    """Pages of 2 keys: a baseline, then only the new objects, then nothing."""
    rule = _rule(bucket)
    _put(bucket, *(f"in/{n}.jsonl" for n in range(5)), "in/skip.txt", "output/x.jsonl")
    with SqliteLedger.open(tmp_path / "ledger.sqlite3") as ledger:
        poller = BucketWatch(
            rule,
            lambda prefix: bucket.pages(prefix, page_size=2),
            ledger,
            lambda: datetime.now(UTC),
        )
        first = poller.poll()
        assert (first.objects, first.matching, first.baseline, first.new) == (6, 5, 5, 0)
        _put(bucket, "in/0a.jsonl", "in/9.jsonl")
        second = poller.poll()
        assert (second.objects, second.matching, second.baseline, second.new) == (8, 7, 0, 2)
        assert sorted(e.key for e in ledger.in_state(State.PENDING)) == [
            "in/0a.jsonl",
            "in/9.jsonl",
        ]
        third = poller.poll()
        assert (third.matching, third.new) == (7, 0)
        assert ledger.counts()[State.BASELINE] == 5


def test_workers_hear_of_each_page_that_recorded_files_to_submit(
    bucket: TosBucket, tmp_path: Path
) -> None:
    """A page with new files wakes the workers at once (they submit them while the next page
    is listed); a baseline page, or one with nothing new, does not."""
    rule = _rule(bucket)
    _put(bucket, *(f"in/{n}.jsonl" for n in range(4)))
    pages_seen: list[int] = []

    def pages(prefix: str) -> Iterator[ListingPage]:
        for page in bucket.pages(prefix, page_size=2):
            pages_seen.append(len(page.objects))
            yield page

    woken: list[int] = []
    with SqliteLedger.open(tmp_path / "ledger.sqlite3") as ledger:
        poller = BucketWatch(
            rule,
            pages,
            ledger,
            lambda: datetime.now(UTC),
            on_new=lambda: woken.append(len(pages_seen)),
        )
        assert poller.poll().baseline == 4
        assert woken == [], "a first listing's baseline is nothing to submit"
        _put(bucket, "in/0a.jsonl", "in/9.jsonl")  # one on the first page, one on the last
        pages_seen.clear()
        assert poller.poll().new == 2
        assert pages_seen == [2, 2, 2]
        assert woken == [1, 3], "woken after the first page and after the last"
        poller.poll()
        assert woken == [1, 3]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-27T03:28:00.000Z", datetime(2026, 11, 27, 3, 28, tzinfo=UTC)),
        ("2026-11-27T03:28:00.123456+08:00", datetime(2026, 11, 26, 19, 28, 0, 123456, tzinfo=UTC)),
        # Not ISO 8601 with an offset: botocore's own parser, as before.
        ("Fri, 27 Nov 2026 03:28:00 GMT", datetime(2026, 11, 27, 3, 28, tzinfo=UTC)),
        ("1795750080", datetime(2026, 11, 27, 3, 28, tzinfo=UTC)),
    ],
)
def test_fast_timestamps_read_as_botocore_reads_them(text: str, expected: datetime) -> None:
    assert fast_timestamp(text) == expected == parse_timestamp(text)
    assert fast_timestamp(text).utcoffset() is not None


def test_listed_and_looked_up_dates_are_aware_and_agree(bucket: TosBucket) -> None:
    """Over moto: a listing's LastModified (ISO 8601, the fast path) and a HEAD's (RFC 1123,
    botocore's parser) name the same second."""
    _put(bucket, "in/a.jsonl")
    [page] = bucket.pages("in/")
    head = bucket.s3.head_object(Bucket=bucket.bucket, Key="in/a.jsonl")
    listed = page.objects[0].last_modified
    assert listed.utcoffset() is not None
    assert listed.replace(microsecond=0) == head["LastModified"]
