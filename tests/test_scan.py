"""A bucket poll: pages fetched ahead of the ledger's work, merged in order, over moto."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from dropzone.config import WatchRule
from dropzone.ledger import SqliteLedger, State
from dropzone.scan import WatchPoller, prefetched
from dropzone.sources.tos import TosBucket
from tests.harness import jsonl, new_bucket, s3_client

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


class Boom(Exception):
    pass


def test_prefetched_keeps_the_order_and_fetches_on_another_thread() -> None:
    fetched_on: list[str] = []

    def source() -> Iterator[int]:
        for number in range(5):
            fetched_on.append(threading.current_thread().name)
            yield number

    assert list(prefetched(source())) == [0, 1, 2, 3, 4]
    assert all(name.startswith("prefetch") for name in fetched_on)


def test_prefetched_raises_where_the_source_failed() -> None:
    def source() -> Iterator[int]:
        yield 1
        yield 2
        raise Boom("page 3")

    seen: list[int] = []
    with pytest.raises(Boom, match="page 3"):
        seen.extend(prefetched(source()))
    assert seen == [1, 2]


def test_prefetched_stopped_early_fetches_at_most_one_more() -> None:
    pulled: list[int] = []

    def source() -> Iterator[int]:
        for number in range(100):
            pulled.append(number)
            yield number

    items = prefetched(source())
    assert [next(items), next(items)] == [0, 1]
    items.close()  # waits for the fetch in flight, starts no other
    assert pulled in ([0, 1, 2], [0, 1])


@pytest.fixture
def bucket(moto_endpoint: str) -> TosBucket:
    s3 = s3_client(moto_endpoint)
    return TosBucket(s3, new_bucket(s3, "scan"))


def _put(bucket: TosBucket, *keys: str) -> None:
    for key in keys:
        bucket.s3.put_object(Bucket=bucket.bucket, Key=key, Body=jsonl())


def test_a_paged_poll_records_every_object_once(bucket: TosBucket, tmp_path: Path) -> None:
    """Pages of 2 keys, fetched ahead: a baseline, then only the new objects, then nothing."""
    rule = WatchRule.model_validate(
        {
            "name": "w",
            "bucket": bucket.bucket,
            "prefix": "in/",
            "model": {"name": "m-1"},
            "min_age_s": 0,
        }
    )
    _put(bucket, *(f"in/{n}.jsonl" for n in range(5)), "in/skip.txt", "output/x.jsonl")
    with SqliteLedger.open(tmp_path / "ledger.sqlite3") as ledger:
        poller = WatchPoller(
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
