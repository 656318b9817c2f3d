"""The guard's answer acted on, end to end: `on_change = "after-active"` and `retry` of a
duplicate, with the daemon as a child process, S3 on moto and the Ark emulator on loopback.

The emulator's clock is the real one plus an offset the test moves, so that a job completes
when the test says so; a job is terminated with a signed Stop call, as an operator would.
"""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from dropzone.emulator import Emulator
from dropzone.ledger import Entry, LedgerError, SqliteLedger, State
from tests.emulator_fixtures import client_of
from tests.harness import ACCESS_KEY, SECRET_KEY, jsonl, load_scale, log_events, wait_for

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Iterator

    from dropzone.ark.client import ArkClient
    from tests.harness import Stage

QUEUE_S, RUN_S = 30, 60


class ShiftedClock:
    """The real clock plus an offset the test moves (the emulator signs and ages by it)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


@pytest.fixture
def ark_clock() -> ShiftedClock:
    return ShiftedClock()


@pytest.fixture
def emulator(ark_clock: ShiftedClock) -> Iterator[Emulator]:
    """The stage's emulator, on the test's clock; a stopped job is Terminated 0.2 s later."""
    with Emulator(
        ACCESS_KEY, SECRET_KEY, queue_s=QUEUE_S, run_s=RUN_S, stop_s=0.2, clock=ark_clock, seed=2
    ) as ark:
        yield ark


@pytest.fixture
def ark(emulator: Emulator, ark_clock: ShiftedClock) -> Iterator[ArkClient]:
    """A client of the emulator for what an operator does by hand (stopping a job)."""
    with client_of(emulator.url, ACCESS_KEY, SECRET_KEY, ark_clock) as client:
        yield client


def upload(stage: Stage, body: bytes) -> tuple[str, str]:
    key = stage.put("a.jsonl", body)
    etag = stage.s3.head_object(Bucket=stage.bucket, Key=key)["ETag"].strip('"')
    return key, etag


def entry_of(stage: Stage, etag: str) -> Entry | None:
    """The version's ledger entry, read beside the daemon (None before it is recorded)."""
    if not stage.ledger_path.exists():
        return None
    try:
        with SqliteLedger.open(stage.ledger_path, readonly=True) as ledger:
            return next((e for e in ledger.entries() if e.etag == etag), None)
    except LedgerError:
        return None  # created but not yet migrated by the daemon


def wait_state(stage: Stage, etag: str, state: State, *, awaits: bool = False) -> Entry:
    def reached() -> bool:
        entry = entry_of(stage, etag)
        return entry is not None and entry.state is state and entry.awaits_job is awaits

    wait_for(reached, timeout=30, what=f"version {etag} to be {state} (awaits_job={awaits})")
    found = entry_of(stage, etag)
    assert found is not None
    return found


def stop_daemon(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=30 * load_scale())
    assert process.returncode == 0
    return out


@pytest.mark.slow
def test_a_new_version_waits_for_the_active_job_and_is_submitted_once_after_it(
    stage: Stage, ark_clock: ShiftedClock, ark: ArkClient
) -> None:
    """after-active: v2, uploaded while v1's job runs, ends `duplicate` awaiting that job and
    gets one job once it Completed; v3, uploaded while v2's job runs, gets one job once that
    job is stopped (Terminated). One job per version, and no further Create afterwards."""
    stage.watch["on_change"] = "after-active"
    stage.daemon["track_interval_s"] = 0.2
    key, v1 = upload(stage, jsonl(2, "v1"))
    process = stage.spawn("run")
    try:
        first = wait_state(stage, v1, State.SUBMITTED)
        _, v2 = upload(stage, jsonl(3, "v2"))
        waiting = wait_state(stage, v2, State.DUPLICATE, awaits=True)
        assert waiting.job_id == first.job_id
        assert len(stage.jobs_by_input()[key]) == 1  # still waiting while the job is active

        ark_clock.advance(QUEUE_S + RUN_S + 1)  # v1's job is Completed now
        second = wait_state(stage, v2, State.SUBMITTED)
        assert second.job_id not in {None, first.job_id}
        assert second.error is None

        _, v3 = upload(stage, jsonl(4, "v3"))
        assert wait_state(stage, v3, State.DUPLICATE, awaits=True).job_id == second.job_id
        assert second.job_id is not None
        ark.stop(second.job_id)
        third = wait_state(stage, v3, State.SUBMITTED)
        # Tracking goes on (v3's job is seen Running): ended waits are not ended again.
        ark_clock.advance(QUEUE_S + 1)

        def running() -> bool:
            entry = entry_of(stage, v3)
            return entry is not None and entry.phase == "Running"

        wait_for(running, what="v3's job tracked to Running")
    finally:
        out = stop_daemon(process)
    assert stage.jobs_by_input()[key] == [first.job_id, second.job_id, third.job_id]
    # v1 once; v2 and v3 each answered by the guard once, then created once.
    assert stage.create_calls()[f"{stage.bucket}/{key}"] == 5
    events = list(log_events(out))
    ended = [
        (e["etag"], e["awaited_job_id"], e["phase"])
        for e in events
        if e["event"] == "job.wait_ended"
    ]
    assert ended == [(v2, first.job_id, "Completed"), (v3, second.job_id, "Terminated")]
    duplicates = [e for e in events if e["event"] == "job.duplicate"]
    assert [(e["etag"], e["awaits_job"]) for e in duplicates] == [(v2, True), (v3, True)]


@pytest.mark.slow
def test_resubmit_keeps_a_duplicate_and_retry_of_its_key_submits_it(
    stage: Stage, ark: ArkClient
) -> None:
    """The default, "resubmit": a new version answered by the guard stays `duplicate` after
    the active job ended (an outcome, as before); `retry` without a key leaves it, and
    `retry KEY` brings it back so that the next run submits it, once."""
    stage.daemon["track_interval_s"] = 0.2
    key, v1 = upload(stage, jsonl(2, "v1"))
    process = stage.spawn("run")
    try:
        first = wait_state(stage, v1, State.SUBMITTED)
        _, v2 = upload(stage, jsonl(3, "v2"))
        duplicate = wait_state(stage, v2, State.DUPLICATE)
        assert duplicate.job_id == first.job_id
        assert first.job_id is not None
        ark.stop(first.job_id)

        def tracked_ended() -> bool:
            entry = entry_of(stage, v2)
            return entry is not None and entry.phase == "Terminated"

        wait_for(tracked_ended, what="the duplicate's job tracked to its end")
    finally:
        stop_daemon(process)
    ended = entry_of(stage, v2)
    assert ended is not None
    assert (ended.state, ended.job_id, ended.awaits_job) == (State.DUPLICATE, first.job_id, False)
    assert len(stage.jobs_by_input()[key]) == 1

    untouched = stage.dropzone("retry")
    assert untouched.returncode == 0, untouched.stderr
    assert untouched.stdout.strip() == "0 entries -> pending"
    retried = stage.dropzone("retry", key)
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.strip() == "1 entry -> pending"
    back = entry_of(stage, v2)
    assert back is not None
    assert (back.state, back.job_id, back.phase, back.attempts) == (State.PENDING, None, None, 0)

    done = stage.dropzone("run", "--once")
    assert done.returncode == 0, done.stderr + done.stdout[-2000:]
    last = entry_of(stage, v2)
    assert last is not None
    assert last.state is State.SUBMITTED
    assert stage.jobs_by_input()[key] == [first.job_id, last.job_id]
    assert stage.create_calls()[f"{stage.bucket}/{key}"] == 3
