"""Job tracking over the emulator on loopback: every unfinished job is reached, however many."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from dropzone.ark.models import CreateJobRequest, FoundationModel, ModelReference, TosLocation
from dropzone.emulator import Emulator
from dropzone.jobs.tracker import Tracker
from dropzone.ledger import SqliteLedger, State
from dropzone.testing import FakeClock
from tests.emulator_fixtures import client_of

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from dropzone.ark.client import ArkClient

AK, SK = "AKLTtrackertest", "tracker-test-secret"


@contextmanager
def _world(
    tmp_path: Path, clock: FakeClock, job_s: float
) -> Iterator[tuple[ArkClient, SqliteLedger]]:
    """The emulator (jobs Queued then Running ``job_s`` each), a client of it, a ledger."""
    with (
        Emulator(AK, SK, clock=clock, queue_s=job_s, run_s=job_s) as ark,
        client_of(ark.url, AK, SK, clock) as api,
        SqliteLedger.open(tmp_path / "ledger.sqlite3") as ledger,
    ):
        yield api, ledger


def _request(key: str) -> CreateJobRequest:
    return CreateJobRequest(
        name=key.replace(".", "-"),
        model_reference=ModelReference(foundation_model=FoundationModel(name="m-1")),
        input_file_tos_location=TosLocation(bucket_name="b", object_key=key),
        output_dir_tos_location=TosLocation(bucket_name="b", object_key=f"out/{key}/"),
    )


def test_jobs_beyond_the_limit_are_not_starved_by_unchanging_ones(tmp_path: Path) -> None:
    """Limit 2, five jobs: the two least recently updated never change phase (the clock
    stands still), yet three rounds reach all five."""
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    with _world(tmp_path, clock, job_s=60) as (api, ledger):

        def submit(key: str) -> None:
            entry, _ = ledger.add_object("w", "b", key, "e1", 1, State.PENDING, clock())
            ledger.claim_one(entry.id, clock())
            ledger.record_submitted(entry.id, api.create(_request(key)), None, clock())

        def tracker(limit: int) -> Tracker:
            projects = {"w": "default"}
            return Tracker(ledger=ledger, api=api, projects=projects, clock=clock, limit=limit)

        submit("a.jsonl")
        submit("b.jsonl")
        assert tracker(10).track_once() == 2  # both Queued: they lead the order from now on
        clock.advance(1)
        for key in ("c.jsonl", "d.jsonl", "e.jsonl"):
            submit(key)
        small = tracker(2)
        changed = [small.track_once() for _ in range(3)]
        phases = {entry.key: entry.phase for entry in ledger.in_state(State.SUBMITTED)}
    assert phases == dict.fromkeys(
        ["a.jsonl", "b.jsonl", "c.jsonl", "d.jsonl", "e.jsonl"], "Queued"
    )
    assert changed == [0, 2, 1]


def test_an_awaiting_duplicate_is_released_once_when_its_job_ends(tmp_path: Path) -> None:
    """A duplicate awaiting a job gets the job's phases while it runs; the round that sees the
    job Completed sends it back to pending (no phase recorded) and later rounds leave it."""
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    with _world(tmp_path, clock, job_s=10) as (api, ledger):
        job_id = api.create(_request("a.jsonl"))
        entry, _ = ledger.add_object("w", "b", "a.jsonl", "v2", 1, State.PENDING, clock())
        ledger.claim_one(entry.id, clock())
        ledger.record_duplicate(entry.id, job_id, None, clock(), awaits_job=True)
        tracker = Tracker(ledger=ledger, api=api, projects={"w": "default"}, clock=clock)
        assert tracker.track_once() == 1
        assert (ledger.get(entry.id).state, ledger.get(entry.id).phase) == (
            State.DUPLICATE,
            "Queued",
        )
        clock.advance(21)
        tracker.track_once()
        released = ledger.get(entry.id)
        tracker.track_once()
        assert ledger.get(entry.id) == released
    assert (released.state, released.job_id, released.phase) == (State.PENDING, None, None)
    assert released.error is not None
    assert job_id in released.error
