"""The event intake on a real ledger: hints matched to watches, looked up, merged, held.

The bucket is a dict behind the intake's ``lookup`` (what a HEAD would answer); the clocks
are fakes, so a hold of ``min_age_s`` is exact.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from dropzone.config import WatchRule
from dropzone.errors import DropzoneError
from dropzone.events.intake import HOLD_RETRY_S, EventIntake
from dropzone.events.notification import Hint, Notification
from dropzone.ledger import SqliteLedger, State
from dropzone.sources.base import SourceConfigError, SourceError, StoredObject
from dropzone.testing import FakeClock, FakeTimer

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

NOW = datetime(2026, 12, 3, tzinfo=UTC)
CLOCK = FakeClock(NOW)


def rule(name: str = "chat", **extra: object) -> WatchRule:
    values = {
        "name": name,
        "bucket": "data",
        "prefix": "in/",
        "model": {"name": "doubao-pro-32k", "version": "240615"},
        "feed": "http",
        "min_age_s": 0,
        **extra,
    }
    return WatchRule.model_validate(values)


class Bucket:
    def __init__(self) -> None:
        self.objects: dict[str, StoredObject] = {}
        self.looked_up: list[str] = []
        self.failing: SourceError | None = None

    def put(self, key: str, etag: str = "e1") -> None:
        self.objects[key] = StoredObject(key, etag, 10, NOW)

    def lookup(self, watch: WatchRule, key: str) -> StoredObject | None:
        del watch
        self.looked_up.append(key)
        if self.failing is not None:
            raise self.failing
        return self.objects.get(key)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[SqliteLedger]:
    with SqliteLedger.open(tmp_path / "ledger.sqlite3") as opened:
        yield opened


REFUSED = SourceError("reading s3://data: connection refused")


def intake_for(
    ledger: SqliteLedger, bucket: Bucket, *rules: WatchRule, listed: bool = True
) -> tuple[EventIntake, list[int], FakeTimer]:
    """An intake for ``rules``; ``listed``: each watch's first listing is behind it."""
    woken: list[int] = []
    timer = FakeTimer()
    for rule in rules:
        ledger.begin_watch(rule.name, rule.bucket, rule.prefix, NOW)
        if listed:
            ledger.mark_baseline_done(rule.name)
    intake = EventIntake(
        feed="http",
        rules=lambda: list(rules),
        lookup=bucket.lookup,
        ledger=ledger,
        clock=CLOCK,
        wake=lambda: woken.append(1),
        monotonic=timer,
    )
    return intake, woken, timer


def hints(*keys: str, bucket: str = "data") -> Notification:
    return Notification(hints=[Hint(bucket, (key,), "tos:ObjectCreated:Put") for key in keys])


def test_each_watch_of_the_feed_that_takes_the_key_records_it(ledger: SqliteLedger) -> None:
    bucket = Bucket()
    bucket.put("in/a.jsonl")
    bucket.put("in/b.txt")
    polled = rule("polled", feed=None)
    intake, woken, _ = intake_for(ledger, bucket, rule("chat"), rule("more"), polled)
    taken = intake.take(hints("in/a.jsonl", "in/b.txt", "out/c.jsonl"))
    assert taken.counts == {"recorded": 2, "unmatched": 2}
    assert sorted((e.watch, e.key, e.state) for e in ledger.entries()) == [
        ("chat", "in/a.jsonl", State.PENDING),
        ("more", "in/a.jsonl", State.PENDING),
    ]
    assert woken == [1, 1]


def test_a_spelling_the_bucket_does_not_hold_is_passed_over(ledger: SqliteLedger) -> None:
    bucket = Bucket()
    bucket.put("in/a b.jsonl")
    intake, _, _ = intake_for(ledger, bucket, rule())
    hint = Hint("data", ("in/a+b.jsonl", "in/a b.jsonl"), "tos:ObjectCreated:Put")
    taken = intake.take(Notification(hints=[hint]))
    assert taken.recorded == ["in/a b.jsonl"]
    assert bucket.looked_up == ["in/a+b.jsonl", "in/a b.jsonl"]


def test_min_age_holds_the_object_until_its_last_modified_is_that_old(
    ledger: SqliteLedger,
) -> None:
    bucket = Bucket()
    bucket.put("in/a.jsonl", "e1")
    clock = FakeClock(NOW)
    woken: list[int] = []
    timer = FakeTimer()
    ledger.begin_watch("chat", "data", "in/", NOW)
    ledger.mark_baseline_done("chat")
    intake = EventIntake(
        feed="http",
        rules=lambda: [rule(min_age_s=5)],
        lookup=bucket.lookup,
        ledger=ledger,
        clock=clock,
        wake=lambda: woken.append(1),
        monotonic=timer,
    )
    assert intake.take(hints("in/a.jsonl")).counts == {"held": 1}
    assert intake.take(hints("in/a.jsonl")).counts == {"held": 1}
    assert intake.held() == 1, "one hold per object, however many events name it"
    assert intake.take_due() == 0
    # It grew meanwhile (an append, LastModified now 3 s later): held again until it is old.
    bucket.objects["in/a.jsonl"] = StoredObject("in/a.jsonl", "e2", 20, NOW + timedelta(seconds=3))
    timer.now += 5
    clock.advance(5)
    assert intake.take_due() == 1
    assert list(ledger.entries()) == []
    assert intake.held() == 1
    timer.now += 3
    clock.advance(3)
    assert intake.take_due() == 1
    assert [(e.key, e.etag) for e in ledger.entries()] == [("in/a.jsonl", "e2")]
    assert intake.held() == 0
    assert woken == [1]


def test_a_held_object_the_bucket_cannot_tell_is_looked_up_again_later(
    ledger: SqliteLedger,
) -> None:
    bucket = Bucket()
    bucket.objects["in/a.jsonl"] = StoredObject("in/a.jsonl", "e1", 10, NOW - timedelta(hours=1))
    intake, _, timer = intake_for(ledger, bucket, rule(min_age_s=1))
    intake.take(hints("in/a.jsonl"))
    bucket.failing = REFUSED
    timer.now += 1
    assert intake.take_due() == 1
    assert list(ledger.entries()) == []
    assert intake.held() == 1, "kept, to be tried again"
    bucket.failing = None
    timer.now += HOLD_RETRY_S
    assert intake.take_due() == 1
    assert [e.key for e in ledger.entries()] == ["in/a.jsonl"]


def test_before_the_first_listing_ends_its_hints_are_left_to_it(ledger: SqliteLedger) -> None:
    """on_start decides what was there before: not an event that came first."""
    bucket = Bucket()
    bucket.put("in/a.jsonl")
    intake, _, _ = intake_for(ledger, bucket, rule(), listed=False)
    assert intake.take(hints("in/a.jsonl")).counts == {"early": 1}
    assert list(ledger.entries()) == []
    assert bucket.looked_up == []
    ledger.mark_baseline_done("chat")
    assert intake.take(hints("in/a.jsonl")).counts == {"recorded": 1}


def test_a_bucket_that_refuses_the_lookup_drops_the_event_for_good(
    ledger: SqliteLedger,
) -> None:
    bucket = Bucket()
    intake, _, _ = intake_for(ledger, bucket, rule())
    bucket.failing = SourceConfigError("reading s3://data/in/a.jsonl: AccessDenied")
    assert intake.take(hints("in/a.jsonl")).counts == {"refused": 1}


def test_a_lookup_that_fails_is_raised_for_the_message_to_come_again(
    ledger: SqliteLedger,
) -> None:
    bucket = Bucket()
    bucket.put("in/a.jsonl")
    bucket.put("in/b.jsonl")
    intake, _, _ = intake_for(ledger, bucket, rule())
    bucket.failing = REFUSED
    with pytest.raises(DropzoneError, match="connection refused"):
        intake.take(hints("in/a.jsonl", "in/b.jsonl"))
    bucket.failing = None
    assert intake.take(hints("in/a.jsonl", "in/b.jsonl")).counts == {"recorded": 2}
    assert intake.take(hints("in/a.jsonl", "in/b.jsonl")).counts == {"known": 2}
