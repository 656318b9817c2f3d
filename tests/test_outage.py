"""An Ark outage of any length rejects nothing and is told in O(1) log lines.

In-process over real connections (moto's S3, the emulator on loopback, an on-disk ledger),
with the test's clock: 30 minutes of outage pass in a second, as the daemon's loops would see
them, because the loop below moves the clock to the next moment anything is due.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from structlog.testing import capture_logs

from dropzone.config import WatchRule
from dropzone.daemon import Daemon, DaemonOptions
from dropzone.daemon.parts import WatchSet
from dropzone.emulator import Emulator
from dropzone.jobs.reachability import OUTAGE_AFTER, Reachability, after_call
from dropzone.jobs.submitter import Submitter
from dropzone.jobs.watch import Watch
from dropzone.ledger import SqliteLedger, State
from dropzone.sources.tos import TosBucket
from dropzone.testing import FakeClock
from tests.emulator_fixtures import client_of
from tests.harness import free_port, jsonl, new_bucket, s3_client

if TYPE_CHECKING:
    from collections.abc import Iterator, MutableMapping
    from pathlib import Path

    from dropzone.ark.client import ArkClient

AK = "AKLToutagetest"
SK = "outage-test-secret"
FILES = 8
OUTAGE = timedelta(minutes=30)


class World:
    """The submission side of a daemon, on the test's clock."""

    def __init__(self, tmp_path: Path, moto_endpoint: str) -> None:
        self.clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
        self.s3 = s3_client(moto_endpoint)
        self.bucket = new_bucket(self.s3, "outage")
        self.ark = Emulator(AK, SK, clock=self.clock, queue_s=3600, run_s=3600, seed=5).start()
        self.ledger = SqliteLedger.open(tmp_path / "ledger.sqlite3")
        self.reachability = Reachability(self.clock)
        self.rule = WatchRule.model_validate(
            {"name": "w", "bucket": self.bucket, "prefix": "in/", "model": {"name": "m-1"}}
        )
        self.clients: list[ArkClient] = []

    def client(self, endpoint: str) -> ArkClient:
        client = client_of(
            endpoint,
            AK,
            SK,
            self.clock,
            timeout_s=2,
            connect_timeout_s=2,
            observer=self.reachability.observe,
        )
        self.clients.append(client)
        return client

    def daemon(self, api: ArkClient) -> Daemon:
        submitter = Submitter(
            ledger=self.ledger,
            api=api,
            watches={"w": Watch(self.rule, TosBucket(self.s3, self.bucket).head)},
            clock=self.clock,
            late_create_s=4.0,
            reachability=self.reachability,
        )
        return Daemon(
            ledger=self.ledger,
            watches=WatchSet(),
            submitter=submitter,
            options=DaemonOptions(),
            clock=self.clock,
        )

    def upload(self) -> None:
        for i in range(FILES):
            key = f"in/f{i}.jsonl"
            put = self.s3.put_object(Bucket=self.bucket, Key=key, Body=jsonl(2, str(i)))
            etag = put["ETag"].strip('"')
            self.ledger.add_object("w", self.bucket, key, etag, 10, State.PENDING, self.clock())

    def run_until(self, daemon: Daemon, end: datetime) -> None:
        """The daemon's loops, turn by turn: submit what is due, reconcile what is due, then
        jump the clock to the next moment anything falls due (or to ``end``)."""
        while self.clock() < end:
            while daemon.submit_one():
                pass
            daemon.reconcile_stranded()
            due = [d for d in (self._next_due(), end) if d is not None]
            step = max(0.01, (min(due) - self.clock()).total_seconds())
            self.clock.advance(step)

    def settle(self, daemon: Daemon) -> None:
        """Run until nothing is pending or submitting (bounded: a stuck entry fails the test)."""
        for _ in range(200):
            counts = self.ledger.counts()
            if not counts[State.PENDING] and not counts[State.SUBMITTING]:
                return
            self.run_until(daemon, self.clock() + timedelta(seconds=30))
        pytest.fail(f"entries never settled: {self.ledger.counts()}")

    def _next_due(self) -> datetime | None:
        moments = [self.ledger.next_due_at()]
        moments += [e.next_attempt_at for e in self.ledger.in_state(State.SUBMITTING)]
        found = [m for m in moments if m is not None]
        return min(found) if found else None

    def close(self) -> None:
        for client in self.clients:
            client.close()
        self.ark.stop()
        self.ledger.close()


@pytest.fixture
def world(tmp_path: Path, moto_endpoint: str) -> Iterator[World]:
    w = World(tmp_path, moto_endpoint)
    try:
        yield w
    finally:
        w.close()


def _lines(logs: list[MutableMapping[str, Any]]) -> Counter[str]:
    """Log lines a production daemon writes (info and above), counted by event."""
    return Counter(
        str(e["event"]) for e in logs if e.get("log_level") in {"info", "warning", "error"}
    )


@pytest.mark.parametrize("kind", ["server errors", "connection refused"])
@pytest.mark.slow
def test_a_thirty_minute_outage_rejects_nothing_and_is_two_lines(world: World, kind: str) -> None:
    """Every file stays pending or submitting through 30 minutes of 500s (or of a closed
    port), then gets exactly one job; the outage is one `ark.unreachable` and one
    `ark.reachable` line, whatever its length and the number of files."""
    live = world.client(world.ark.url)
    if kind == "server errors":
        world.ark.set_faults(fail_rate=1.0)
        down = world.daemon(live)
    else:
        down = world.daemon(world.client(f"http://127.0.0.1:{free_port()}"))
    with capture_logs() as logs:
        world.upload()
        start = world.clock()
        world.run_until(down, start + OUTAGE)
        assert world.reachability.outage() is not None
        held = world.ledger.counts()
        assert held[State.REJECTED] == 0
        assert held[State.PENDING] + held[State.SUBMITTING] == FILES
        during = _lines(logs)
        world.ark.set_faults(fail_rate=0.0)
        world.settle(world.daemon(live))
    after = world.ledger.counts()
    assert (after[State.SUBMITTED], after[State.REJECTED]) == (FILES, 0)
    jobs_per_input = Counter(
        job["InputFileTosLocation"]["ObjectKey"] for job in world.ark.state()["jobs"]
    )
    assert set(jobs_per_input.values()) == {1}
    assert len(jobs_per_input) == FILES
    lines = _lines(logs)
    assert lines["ark.unreachable"] == 1
    assert lines["ark.reachable"] == 1
    # Before the outage is declared a few per-file lines are written, never more than that:
    # not one per file per retry for 30 minutes (which would be hundreds).
    retry_lines = during["job.retry"] + during["job.reconcile_deferred"]
    assert retry_lines <= OUTAGE_AFTER * 2
    entries = world.ledger.entries()
    assert all(entry.transient_failures >= 1 for entry in entries)


def test_the_outage_transition_is_declared_once_and_ended_once() -> None:
    """Pure: failures in a row count up, the third declares, more do not again; an answer ends
    it (told only if it was declared); a lone failure among answers is never an outage."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    outage, told = None, []
    for failed in [True, False, True, True, True, True, True, False, False]:
        outage, changed = after_call(outage, failed=failed, reason="HTTP 503", now=now)
        told.append(changed)
    assert told == [False, False, False, False, True, False, False, True, False]
    assert outage is None
