"""Workers claim ahead: one claim transaction takes a worker's worth of due entries or more.

In-process over real connections (moto's S3, the emulator on loopback, an on-disk ledger):
claims are fewer than entries, every entry still gets exactly one Create, and a drain gives
back, as pending and unsent, the claims no worker took.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
import structlog.testing

from dropzone.config import WatchRule
from dropzone.daemon import Daemon, DaemonOptions
from dropzone.daemon.parts import WatchSet
from dropzone.daemon.work import claim_size
from dropzone.emulator import Emulator
from dropzone.jobs.made import JobsMade
from dropzone.jobs.submitter import Submitter
from dropzone.jobs.watch import Watch
from dropzone.ledger import SqliteLedger, State
from dropzone.sources.tos import TosBucket
from tests.emulator_fixtures import client_of
from tests.harness import jsonl, new_bucket, s3_client

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from dropzone.ark.client import ArkClient

AK = "AKLTclaimahead"
SK = "claim-ahead-secret"


def now() -> datetime:
    return datetime.now(UTC)


class World:
    def __init__(self, tmp_path: Path, moto_endpoint: str, ark: Emulator) -> None:
        self.s3 = s3_client(moto_endpoint)
        self.bucket = new_bucket(self.s3, "claim-ahead")
        self.ark = ark
        self.ledger = SqliteLedger.open(tmp_path / "ledger.sqlite3")
        self.rule = WatchRule.model_validate(
            {"name": "w", "bucket": self.bucket, "prefix": "in/", "model": {"name": "m-1"}}
        )
        self.api: ArkClient = client_of(ark.url, AK, SK, timeout_s=10)

    def upload(self, files: int) -> None:
        for i in range(files):
            key = f"in/f{i}.jsonl"
            put = self.s3.put_object(Bucket=self.bucket, Key=key, Body=jsonl(2, str(i)))
            self.ledger.add_object(
                "w", self.bucket, key, put["ETag"].strip('"'), 10, State.PENDING, now()
            )

    def daemon(
        self,
        concurrency: int,
        jobs_made: JobsMade | None = None,
        requests_per_second: Callable[[], float] | None = None,
        warm_up: Callable[[], None] | None = None,
    ) -> Daemon:
        submitter = Submitter(
            ledger=self.ledger,
            api=self.api,
            watches={"w": Watch(self.rule, TosBucket(self.s3, self.bucket).head)},
            clock=now,
            jobs_made=jobs_made,
        )
        return Daemon(
            ledger=self.ledger,
            watches=WatchSet(),
            submitter=submitter,
            options=DaemonOptions(concurrency=concurrency, poll_interval_s=3600),
            clock=now,
            requests_per_second=requests_per_second,
            warm_up=warm_up,
        )

    def creates(self) -> int:
        return sum(self.ark.state()["create_calls"].values())

    def close(self) -> None:
        self.api.close()
        self.ledger.close()


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(0.02)


def submit_all(daemon: Daemon, world: World, count: int) -> None:
    """Four workers until ``count`` entries are submitted, then stopped and joined."""
    workers = daemon.work.start_workers(4)
    try:
        wait_for(lambda: world.ledger.counts()[State.SUBMITTED] == count, f"{count} submitted")
    finally:
        daemon.stop()
        for worker in workers:
            worker.join(30)


@pytest.fixture
def world(tmp_path: Path, moto_endpoint: str) -> Iterator[World]:
    with Emulator(AK, SK, queue_s=3600, run_s=3600, seed=3) as ark:
        made = World(tmp_path, moto_endpoint, ark)
        try:
            yield made
        finally:
            made.close()


def test_workers_claim_several_entries_a_transaction_and_send_one_create_each(
    world: World,
) -> None:
    world.upload(12)
    submit_all(world.daemon(concurrency=4), world, 12)
    entries = list(world.ledger.entries())
    tokens = {entry.claim_token for entry in entries}
    assert len(tokens) <= 12 - 3, f"the first claim took 4 entries at once: {tokens}"
    assert world.creates() == 12
    assert all(calls == 1 for calls in world.ark.state()["create_calls"].values())


@pytest.mark.parametrize(
    ("workers", "requests_per_second", "size"),
    [
        (8, 5.0, 8),  # the default cap: a worker's worth, as before
        (8, 40.0, 20),  # what the cap lets go out in half a second
        (8, 100_000.0, 32),  # four a worker at most
        (4, 0.01, 4),
        (1, 1.0, 1),
    ],
)
def test_a_claim_takes_what_the_cap_lets_go_out_in_half_a_second(
    workers: int, requests_per_second: float, size: int
) -> None:
    assert claim_size(workers, requests_per_second) == size


@pytest.mark.parametrize(("requests_per_second", "claimed"), [(5.0, 2), (1000.0, 8)])
def test_the_daemons_claims_follow_its_request_cap_at_each_claim(
    world: World, requests_per_second: float, claimed: int
) -> None:
    """Two workers; one claim made by a worker: two entries under the default cap, eight (four
    a worker) when the cap lets them all go out within half a second. The cap is read at each
    claim (a replica's share changes as nodes come and go)."""
    world.upload(12)
    cap = [requests_per_second]
    daemon = world.daemon(concurrency=2, requests_per_second=lambda: cap[0])
    assert daemon.submit_one(), "one claim, its first entry submitted"
    assert daemon.work.in_flight == claimed - 1, "the rest of the claim held by this node"
    tokens = [entry.claim_token for entry in world.ledger.entries() if entry.claim_token]
    assert len(tokens) == claimed
    assert len(set(tokens)) == 1, "one claim, one token"
    cap[0] = 5.0
    for _ in range(claimed):  # the claim's entries, then a new claim at the new cap
        assert daemon.submit_one()
    fresh = [entry for entry in world.ledger.entries() if entry.claim_token not in tokens]
    assert len([entry for entry in fresh if entry.claim_token is not None]) == 2
    daemon.stop()
    assert daemon.run() == 0


def test_a_drain_gives_back_the_claims_no_worker_took(world: World) -> None:
    """Stopped with entries claimed ahead and not yet taken by a worker: the drain makes them
    pending again, unsent, rather than leaving them in ``submitting`` for a reconcile."""
    world.upload(3)
    daemon = world.daemon(concurrency=3)
    assert daemon.submit_one(), "one claim of three entries, the first submitted"
    counts = world.ledger.counts()
    assert (counts[State.SUBMITTED], counts[State.SUBMITTING]) == (1, 2)
    assert daemon.work.in_flight == 2, "the two claimed ahead are held by this node"
    daemon.stop()
    assert daemon.run() == 0, "its workers see the stop at once; then the drain"
    counts = world.ledger.counts()
    assert (counts[State.SUBMITTED], counts[State.PENDING], counts[State.SUBMITTING]) == (
        1,
        2,
        0,
    )
    assert world.creates() == 1, "nothing was sent for the claims given back"
    assert daemon.work.in_flight == 0


def test_jobs_made_are_recorded_by_the_next_claims_and_by_workers_gone_idle(
    world: World,
) -> None:
    """The daemon's way: a job made waits for the next claim's transaction. Every one is in
    the ledger once the workers find nothing more to claim, each entry with one Create."""
    world.upload(12)
    jobs_made = JobsMade()
    submit_all(world.daemon(concurrency=4, jobs_made=jobs_made), world, 12)
    assert len(jobs_made) == 0
    assert {entry.job_id is not None for entry in world.ledger.entries()} == {True}
    assert world.creates() == 12
    assert all(calls == 1 for calls in world.ark.state()["create_calls"].values())


def test_a_job_made_after_the_last_claim_is_recorded_by_the_drain(world: World) -> None:
    world.upload(1)
    jobs_made = JobsMade()
    daemon = world.daemon(concurrency=1, jobs_made=jobs_made)
    assert daemon.submit_one(), "the entry claimed and its Create answered"
    assert len(jobs_made) == 1
    assert world.ledger.counts()[State.SUBMITTING] == 1, "its outcome waits for a claim"
    daemon.stop()
    assert daemon.run() == 0
    assert len(jobs_made) == 0
    assert world.ledger.counts()[State.SUBMITTED] == 1


def test_a_worker_lives_through_a_ledger_that_fails_its_claim_and_its_wait(
    world: World,
) -> None:
    """The ledger failing every call (a server's connections cut, here closed under it): the
    claim's failure is logged, and so is the look at the next due entry that decides the
    worker's wait, which ended the worker's thread before."""
    daemon = world.daemon(concurrency=1)
    world.ledger.close()
    with structlog.testing.capture_logs() as logged:
        [worker] = daemon.work.start_workers(1)
        try:

            def failures() -> int:
                daemon.wake()  # the wait after a failure is a second's, not the test's
                return sum(line["event"] in {"worker.failed", "ledger.failed"} for line in logged)

            wait_for(lambda: failures() >= 4 or not worker.is_alive(), "failed turns")
            assert worker.is_alive(), f"the worker's thread ended: {logged}"
        finally:
            daemon.stop()
            worker.join(30)
    assert not worker.is_alive()


@pytest.mark.parametrize("fails", [False, True])
def test_run_once_readies_the_ark_client_beside_its_listing(world: World, fails: bool) -> None:
    """``run --once`` hands the client's warm-up to a thread as its listing starts; one that
    fails costs nothing but a debug line (the first call meets the same problem and says so)."""
    world.upload(3)
    called: list[str] = []

    def warm_up() -> None:
        called.append("started")
        world.api.warm_up()
        called.append("done")
        if fails:
            raise OSError("no CA bundle here")

    daemon = world.daemon(concurrency=2, warm_up=warm_up)
    with structlog.testing.capture_logs() as logged:
        assert daemon.run_once() == 0

        def failed() -> list[str]:
            return [line["log_level"] for line in logged if line["event"] == "ark.warm_up_failed"]

        wait_for(lambda: "done" in called and (bool(failed()) or not fails), "the warm-up")
    assert called == ["started", "done"]
    assert failed() == (["debug"] if fails else [])
    assert world.ledger.counts()[State.SUBMITTED] == 3
    assert world.creates() == 3
