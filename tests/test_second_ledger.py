"""The platform is the second ledger: a ledger lost, replaced or restored makes no second job.

Every job carries its version's `dropzone-input` tag; before a Create the versions about to be
submitted are looked up by tag, in one List per batch, and a job found is adopted.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from dropzone.ark.models import (
    CreateJobRequest,
    FoundationModel,
    ModelReference,
    Tag,
    TosLocation,
)
from dropzone.emulator import Emulator
from dropzone.jobs.prior import PriorJobs
from dropzone.ledger import SqliteLedger, State
from dropzone.plan import INPUT_TAG_KEY, WATCH_TAG_KEY, input_tag
from tests.emulator_fixtures import client_of
from tests.harness import (
    ACCESS_KEY,
    SECRET_KEY,
    Stage,
    log_events,
    new_bucket,
    s3_client,
    wait_for,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

LIST = "ListBatchInferenceJobs"


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """Jobs that end within a second: the guard no longer holds their inputs afterwards."""
    with Emulator(ACCESS_KEY, SECRET_KEY, queue_s=0.1, run_s=0.2, seed=5) as ark:
        yield ark


def _all_ended(stage: Stage) -> bool:
    return all(job["Status"]["Phase"] == "Completed" for job in stage.jobs())


def _lose_the_ledger(stage: Stage) -> None:
    for path in stage.ledger_path.parent.glob(f"{stage.ledger_path.name}*"):
        path.unlink()


def test_a_lost_ledger_makes_no_second_job_for_files_already_submitted(stage: Stage) -> None:
    """5 files submitted, their jobs ended, the ledger lost: the next run adopts the 5 jobs
    (it made 5 more)."""
    keys = [stage.put(f"f{number}.jsonl") for number in range(5)]
    assert stage.dropzone("run", "--once").returncode == 0
    wait_for(lambda: _all_ended(stage), what="the first jobs to end")
    first = {entry["key"]: entry["job_id"] for entry in stage.status()}
    _lose_the_ledger(stage)

    done = stage.dropzone("run", "--once")

    assert done.returncode == 0, done.stderr
    assert len(stage.jobs()) == 5
    assert {entry["key"]: entry["job_id"] for entry in stage.status()} == first
    assert sorted(first) == sorted(keys)
    adopted = [e for e in log_events(done.stdout) if e["event"] == "job.adopted"]
    assert sorted(event["key"] for event in adopted) == sorted(keys)
    assert all(event["level"] == "warning" for event in adopted)


def test_the_versions_about_to_be_submitted_are_looked_up_in_one_list(stage: Stage) -> None:
    """20 new files: one List for all of them before their Creates, not one each."""
    for number in range(20):
        stage.put(f"g{number:02}.jsonl")
    done = stage.dropzone("run", "--once")
    assert done.returncode == 0, done.stderr
    assert len(stage.jobs()) == 20
    lists = stage.emulator.state()["calls"]["ListBatchInferenceJobs"]
    assert lists == 1


def test_a_platform_refusing_that_many_tag_values_gets_smaller_batches(
    tmp_path: Path, moto_endpoint: str
) -> None:
    """A List naming more tag values than the platform takes is refused (400): the batch is
    halved until it is taken, and every file gets its one job."""
    with Emulator(ACCESS_KEY, SECRET_KEY, queue_s=30, run_s=60, max_tag_values=8) as ark:
        stage = Stage(tmp_path, moto_endpoint, ark, s3 := s3_client(moto_endpoint), new_bucket(s3))
        for number in range(20):
            stage.put(f"h{number:02}.jsonl")
        done = stage.dropzone("run", "--once")
        assert done.returncode == 0, done.stdout
        assert sorted(stage.create_calls().values()) == [1] * 20
        assert {entry["state"] for entry in stage.status()} == {"submitted"}
        assert ark.state()["calls"]["ListBatchInferenceJobs"] <= 12


def test_no_create_goes_out_while_the_platform_cannot_say(stage: Stage) -> None:
    """List refused (503): nothing is known, so nothing is created; the files wait, pending,
    and are submitted once the platform answers."""
    for number in range(3):
        stage.put(f"k{number}.jsonl")
    stage.emulator.refuse("ServiceUnavailableTemp", status=503, actions=(LIST,))
    stage.daemon["once_max_wait_s"] = 1
    held = stage.dropzone("run", "--once")
    assert held.returncode == 1
    assert stage.create_calls() == {}
    assert {entry["state"] for entry in stage.status()} == {"pending"}
    stage.emulator.stop_refusing()
    stage.daemon["once_max_wait_s"] = 60
    done = stage.dropzone("run", "--once")
    assert done.returncode == 0, done.stdout
    assert sorted(stage.create_calls().values()) == [1, 1, 1]


def test_a_version_adopts_its_own_watchs_job_only(emulator: Emulator, tmp_path: Path) -> None:
    """Two watches on one prefix (two models, say) each make their own job of a version: the
    look-up by the version's tag adopts a job of the asking watch, never the other's."""
    tag = input_tag("bucket", "in/a.jsonl", "e1")
    request = CreateJobRequest(
        name="a",
        model_reference=ModelReference(foundation_model=FoundationModel(name="doubao-pro-32k")),
        input_file_tos_location=TosLocation(bucket_name="bucket", object_key="in/a.jsonl"),
        output_dir_tos_location=TosLocation(bucket_name="bucket", object_key="out/a/"),
        tags=(Tag(key=INPUT_TAG_KEY, value=tag), Tag(key=WATCH_TAG_KEY, value="first")),
    )
    now = datetime.now(UTC)
    with (
        client_of(emulator.url, ACCESS_KEY, SECRET_KEY) as api,
        SqliteLedger.open(tmp_path / "ledger.sqlite3", lock=False) as ledger,
    ):
        job_id = api.create(request)
        prior = PriorJobs(api=api, upcoming=ledger.upcoming, clock=lambda: datetime.now(UTC))
        found = {}
        for watch in ("first", "second"):
            entry, _ = ledger.add_object(watch, "bucket", "in/a.jsonl", "e1", 1, State.PENDING, now)
            job = prior.job_for(entry, "default", lambda _watch: "default")
            found[watch] = None if job is None else job.id
    assert found == {"first": job_id, "second": None}
