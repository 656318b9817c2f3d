"""The Submitter in-process, over real connections: moto's S3, the Ark emulator on loopback and
an on-disk ledger; only the clock is the test's, shared by all three so that time is told.

What the end-to-end tests cannot reach: when the object is looked up again before its Create,
and how an attempt is dated.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from dropzone import plan
from dropzone.config import WatchRule
from dropzone.emulator import Emulator
from dropzone.jobs.submitter import Submitter
from dropzone.jobs.watch import Watch
from dropzone.ledger import Entry, SqliteLedger, State
from dropzone.sources.tos import TosBucket
from dropzone.testing import FakeClock
from tests.emulator_fixtures import client_of
from tests.harness import jsonl, new_bucket, s3_client

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from mypy_boto3_s3 import S3Client

AK = "AKLTsubmittertest"
SK = "submitter-test-secret"
KEY = "in/a.jsonl"
LATE_CREATE_S = 10.0


class World:
    def __init__(self, tmp_path: Path, moto_endpoint: str, clock: FakeClock) -> None:
        self.clock = clock
        self.s3: S3Client = s3_client(moto_endpoint)
        self.bucket = new_bucket(self.s3, "sub")
        self.ark = Emulator(AK, SK, clock=clock, seed=3).start()
        self.api = client_of(self.ark.url, AK, SK, clock)
        self.ledger = SqliteLedger.open(tmp_path / "ledger.sqlite3")
        rule = WatchRule.model_validate(
            {"name": "w", "bucket": self.bucket, "prefix": "in/", "model": {"name": "m-1"}}
        )
        self.rule = rule
        watch = Watch(rule, TosBucket(self.s3, self.bucket).head)
        self.submitter = Submitter(
            ledger=self.ledger,
            api=self.api,
            watches={"w": watch},
            clock=clock,
            late_create_s=LATE_CREATE_S,
        )

    def listed(self) -> Entry:
        """The object uploaded and recorded pending, as a poll would, at the clock's now."""
        etag = self.s3.put_object(Bucket=self.bucket, Key=KEY, Body=jsonl())["ETag"].strip('"')
        entry, _ = self.ledger.add_object(
            "w", self.bucket, KEY, etag, 10, State.PENDING, self.clock()
        )
        return entry

    def claim(self) -> Entry:
        (entry,) = self.ledger.claim_due(1, self.clock())
        return entry

    def creates(self) -> int:
        return sum(self.ark.state()["create_calls"].values())

    def close(self) -> None:
        self.api.close()
        self.ark.stop()
        self.ledger.close()


@pytest.fixture
def world(tmp_path: Path, moto_endpoint: str) -> Iterator[World]:
    # The emulator signs with the fake clock, and S3 (moto) does not check dates: a clock near
    # the real one keeps both honest.
    w = World(tmp_path, moto_endpoint, FakeClock(datetime.now(UTC).replace(microsecond=0)))
    try:
        yield w
    finally:
        w.close()


def test_a_version_deleted_after_a_stale_listing_is_refused_without_a_call(world: World) -> None:
    world.listed()
    world.clock.advance(60)  # the listing is no longer fresh: the object is looked up again
    world.s3.delete_object(Bucket=world.bucket, Key=KEY)
    assert world.submitter.submit(world.claim()) is State.REJECTED
    (entry,) = world.ledger.in_state(State.REJECTED)
    assert entry.error == "the object was deleted before it was submitted"
    assert world.creates() == 0


def test_a_version_replaced_after_a_stale_listing_is_refused_without_a_call(world: World) -> None:
    world.listed()
    world.clock.advance(60)
    put = world.s3.put_object(Bucket=world.bucket, Key=KEY, Body=jsonl(3, "new"))
    new_etag = put["ETag"].strip('"')
    assert world.submitter.submit(world.claim()) is State.REJECTED
    (entry,) = world.ledger.in_state(State.REJECTED)
    assert entry.error is not None
    assert entry.error.startswith(
        f"the object changed before it was submitted (now ETag {new_etag.strip(chr(34))})"
    )
    assert world.creates() == 0


def test_a_fresh_listing_is_trusted_without_a_second_look(world: World) -> None:
    """Listed 5 s ago: no HEAD before the Create (the delete below goes unseen, by design)."""
    world.listed()
    world.clock.advance(5)
    world.s3.delete_object(Bucket=world.bucket, Key=KEY)
    assert world.submitter.submit(world.claim()) is State.SUBMITTED
    assert world.creates() == 1


def test_an_attempt_is_dated_from_its_send_when_the_claim_is_old(world: World) -> None:
    world.listed()
    claimed = world.claim()
    world.clock.advance(5)  # a slow lookup or preflight between the claim and the send
    sent_at = world.clock()
    assert world.submitter.submit(claimed) is State.SUBMITTED
    (entry,) = world.ledger.in_state(State.SUBMITTED)
    assert entry.claimed_at == sent_at


def test_a_young_claim_keeps_its_date(world: World) -> None:
    """Sent within a second of its claim: no extra commit to re-date it."""
    world.listed()
    claimed = world.claim()
    world.clock.advance(0.5)
    assert world.submitter.submit(claimed) is State.SUBMITTED
    (entry,) = world.ledger.in_state(State.SUBMITTED)
    assert entry.claimed_at == claimed.claimed_at


def test_no_job_listed_waits_out_a_late_create_counted_from_the_latest_send(
    world: World,
) -> None:
    """A claim keeps its date for up to 1 s before the send, so the wait adds that second."""
    world.listed()
    claimed = world.claim()  # its Create's fate unknown: nothing was created
    assert claimed.claimed_at is not None
    world.clock.advance(2)
    assert world.submitter.reconcile(claimed) is State.SUBMITTING
    (deferred,) = world.ledger.in_state(State.SUBMITTING)
    assert deferred.next_attempt_at is not None
    assert (deferred.next_attempt_at - claimed.claimed_at).total_seconds() == LATE_CREATE_S + 1
    world.clock.advance(LATE_CREATE_S - 2)  # 1 s before the end of the wait: still unknown
    assert world.submitter.reconcile(deferred) is State.SUBMITTING
    world.clock.advance(1)
    assert world.submitter.reconcile(deferred) is State.PENDING
    assert world.creates() == 0


@pytest.mark.parametrize(
    ("holder", "awaits"),
    [("dropzone, another version", True), ("started elsewhere, untagged", False)],
)
def test_after_active_awaits_only_a_job_known_to_hold_another_version(
    world: World, holder: str, awaits: bool
) -> None:
    """on_change = "after-active": the guard naming dropzone's job of another ETag (its
    `dropzone-input` tag differs) makes the duplicate await that job; a job without the tag
    was started elsewhere on content dropzone cannot tell, and stays a plain duplicate."""
    rule = world.rule.model_copy(update={"on_change": "after-active"})
    world.submitter.replace_watches({"w": Watch(rule)})
    other = plan.plan_request(plan.ObjectRef(world.bucket, KEY, "older-etag"), rule, world.clock())
    if not awaits:
        other = other.model_copy(update={"tags": ()})
    active = world.api.create(other)
    world.listed()
    assert world.submitter.submit(world.claim()) is State.DUPLICATE, holder
    (entry,) = world.ledger.in_state(State.DUPLICATE)
    assert (entry.job_id, entry.awaits_job) == (active, awaits)
