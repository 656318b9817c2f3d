"""Answers the platform may give and the emulator's default never does, over loopback: job
objects with both model fields or a phase this version does not know are read and tracked;
an answer that still cannot be understood is a Transient protocol error, never a crash."""

from __future__ import annotations

import json
import signal
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import httpx
import pytest
from pydantic import ValidationError

from dropzone import plan
from dropzone.ark import errors
from dropzone.ark.client import ArkClient
from dropzone.ark.models import (
    CreateJobRequest,
    FoundationModel,
    ModelReference,
    Phase,
    TosLocation,
)
from dropzone.ark.signer import Credentials
from dropzone.emulator import Emulator
from dropzone.jobs.tracker import Tracker
from dropzone.ledger import SqliteLedger, State
from dropzone.testing import FakeClock
from tests.emulator_fixtures import Caller, client_of
from tests.harness import (
    ACCESS_KEY,
    SECRET_KEY,
    Stage,
    answering,
    assert_no_traceback,
    log_events,
    new_bucket,
    s3_client,
    seed_entry,
    wait_for,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

AK, SK = "AKLTanswerstest", "answers-test-secret-key"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def ark(clock: FakeClock) -> Iterator[Emulator]:
    with Emulator(AK, SK, queue_s=10, run_s=10, clock=clock, seed=3) as emulator:
        yield emulator


@pytest.fixture
def api(ark: Emulator, clock: FakeClock) -> Iterator[ArkClient]:
    with client_of(ark.url, AK, SK, clock) as client:
        yield client


def _request(key: str) -> CreateJobRequest:
    return CreateJobRequest(
        name=key.replace(".", "-"),
        model_reference=ModelReference(foundation_model=FoundationModel(name="m-1")),
        input_file_tos_location=TosLocation(bucket_name="b", object_key=key),
        output_dir_tos_location=TosLocation(bucket_name="b", object_key=f"out/{key}/"),
    )


# --- the client reads what the platform may add ------------------------------------------------


def test_both_model_fields_and_an_unknown_phase_are_read(
    ark: Emulator, api: ArkClient, clock: FakeClock
) -> None:
    """Get and List answer a job with FoundationModel and an empty CustomModelId, in phase
    "Pausing": the job is read, its phase kept by name, active and not terminal; once the
    phase is over the job is in a known phase again."""
    job_id = api.create(_request("a.jsonl"))
    ark.set_faults(both_model_fields=True)
    ark.report_unknown_phase("Pausing", seconds=5)
    for job in (api.get(job_id), *api.get_many((job_id,), "default")):
        assert job.model_reference is not None
        assert job.model_reference.custom_model_id == ""
        assert job.model_reference.foundation_model is not None
        assert job.model_reference.foundation_model.name == "m-1"
        assert (str(job.phase), job.phase.value) == ("Pausing", "Pausing")
        assert job.phase.is_active
        assert not job.phase.is_terminal
    clock.advance(6)
    assert api.get(job_id).phase is Phase.QUEUED


def test_a_job_whose_optional_fields_are_left_out_or_null_is_read(api: ArkClient) -> None:
    """A Result with only Id and Status (others absent or null, extra fields added) is a Job."""
    result = {
        "Id": "bi-20250101000000-abcde",
        "Status": {"Phase": "Running", "Message": None},
        "RequestCounts": {"Total": None, "Completed": 3},
        "Tags": None,
        "InputFileTosLocation": {"BucketName": "b"},
        "SomethingNew": {"Nested": [1, 2]},
    }
    body = json.dumps({"ResponseMetadata": {"RequestId": "r-1"}, "Result": result}).encode()
    with answering(200, body) as url, _client_of(url) as client:
        job = client.get("bi-20250101000000-abcde")
    assert job.phase is Phase.RUNNING
    assert job.request_counts is not None
    assert (job.request_counts.total, job.request_counts.completed) == (0, 3)
    assert job.tags == ()
    assert job.input_file_tos_location is not None
    assert job.input_file_tos_location.object_key is None


def _client_of(url: str) -> ArkClient:
    return ArkClient(endpoint=url, region="cn-beijing", credentials=Credentials(AK, SK))


# --- and fails closed on what it cannot understand ---------------------------------------------


JOB_ID = "bi-20250101000000-abcde"


def _get(client: ArkClient) -> object:
    return client.get(JOB_ID)


def _list(client: ArkClient) -> object:
    return client.get_many((JOB_ID,), "default")


@pytest.mark.parametrize(
    ("call", "result"),
    [
        (_get, {"Id": JOB_ID, "Status": "not an object"}),
        (_get, {"Status": {"Phase": "Running"}}),
        (_list, {"TotalCount": 1, "Items": [{"Id": JOB_ID}]}),
        (_list, {"TotalCount": 1, "Items": "not a list"}),
    ],
)
def test_an_unreadable_result_is_a_transient_protocol_error(
    call: Callable[[ArkClient], object], result: dict[str, object]
) -> None:
    """A Result that does not validate raises Transient "protocol error": may have reached
    (so a Create would reconcile by tag), the body's first 200 bytes in the message, the
    ValidationError chained, no credential anywhere in it."""
    padding = "x" * 400
    document = {"ResponseMetadata": {"RequestId": "r-7"}, "Result": result, "Pad": padding}
    body = json.dumps(document).encode()
    with (
        answering(200, body) as url,
        _client_of(url) as client,
        pytest.raises(errors.Transient) as caught,
    ):
        call(client)
    error = caught.value
    assert error.may_have_reached
    assert (error.code, error.status) == ("ProtocolError", 200)
    assert "protocol error" in error.message
    assert repr(body[:200].decode()) in error.message
    assert padding[:250] not in error.message
    assert isinstance(error.__cause__, ValidationError)
    assert SK not in error.describe()
    assert AK not in error.describe()


# --- tracking ----------------------------------------------------------------------------------


def test_an_unknown_phase_is_tracked_to_completion_beside_the_others(
    tmp_path: Path, ark: Emulator, api: ArkClient, clock: FakeClock
) -> None:
    """One job in "Pausing", both model fields on every job: the tracker records the unknown
    phase, keeps tracking it (and the other job, in the same batch) as active, and ends it
    when the job is seen Completed."""
    with SqliteLedger.open(tmp_path / "ledger.sqlite3") as ledger:
        ids = {}
        for key in ("a.jsonl", "b.jsonl"):
            entry, _ = ledger.add_object("w", "b", key, "e1", 1, State.PENDING, clock())
            ledger.claim_one(entry.id, clock())
            ids[key] = ledger.record_submitted(entry.id, api.create(_request(key)), None, clock())
        ark.set_faults(both_model_fields=True)
        ark.report_unknown_phase("Pausing", seconds=15, job_id=ids["a.jsonl"].job_id)
        tracker = Tracker(ledger=ledger, api=api, projects={"w": "default"}, clock=clock)

        def phases() -> dict[str, str | None]:
            return {e.key: e.phase for e in ledger.in_state(State.SUBMITTED)}

        assert tracker.track_once() == 2
        assert phases() == {"a.jsonl": "Pausing", "b.jsonl": "Queued"}
        assert ledger.active_jobs("w") == 2
        clock.advance(12)
        assert tracker.track_once() == 1
        assert phases() == {"a.jsonl": "Pausing", "b.jsonl": "Running"}
        assert len(ledger.tracking(10)) == 2
        clock.advance(10)
        assert tracker.track_once() == 2
        assert phases() == {"a.jsonl": "Completed", "b.jsonl": "Completed"}
        assert ledger.tracking(10) == []
        assert ledger.active_jobs("w") == 0


# --- the daemon end to end ---------------------------------------------------------------------


@pytest.mark.slow
def test_the_daemon_tracks_an_unknown_phase_to_completion(
    tmp_path: Path, moto_endpoint: str, clock: FakeClock
) -> None:
    """A daemon tracking jobs shown with both model fields and in "Pausing" shows that phase
    in status, then Completed once the jobs end, with no worker or tracking failure logged."""
    s3 = s3_client(moto_endpoint)
    with Emulator(ACCESS_KEY, SECRET_KEY, queue_s=10, run_s=10, clock=clock) as ark:
        ark.set_faults(both_model_fields=True)
        ark.report_unknown_phase("Pausing", seconds=3600)
        stage = Stage(tmp_path, moto_endpoint, ark, s3, new_bucket(s3))
        stage.daemon["track_interval_s"] = 0.2
        keys = [stage.put(f"f{number}.jsonl") for number in range(2)]
        running = stage.spawn("run")
        try:
            wait_for(
                lambda: _states_and_phases(stage) == [("submitted", "Pausing")] * 2,
                what="both jobs tracked in phase Pausing",
            )
            table = stage.dropzone("status")
            assert table.returncode == 0, table.stderr
            assert table.stdout.count("\tPausing\t") == 2
            clock.advance(30)  # the jobs end: a known terminal phase shows through
            wait_for(
                lambda: _states_and_phases(stage) == [("submitted", "Completed")] * 2,
                what="both jobs tracked to Completed",
            )
        finally:
            running.send_signal(signal.SIGTERM)
        stdout, stderr = running.communicate(timeout=30)
    assert running.returncode == 0, stderr
    events = [e["event"] for e in log_events(stdout)]
    assert "worker.failed" not in events
    assert "track.failed" not in events
    assert "Traceback" not in stdout + stderr
    assert sorted(stage.jobs_by_input()) == sorted(keys)


def _states_and_phases(stage: Stage) -> list[tuple[str, str | None]]:
    """Each entry's state and phase; none while the starting daemon has not made its ledger."""
    done = stage.dropzone("status", "--json")
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return [(row["state"], row["phase"]) for row in rows] if done.returncode == 0 else []


def test_a_restart_reconciles_a_stranded_entry_whose_job_is_in_an_unknown_phase(
    stage: Stage,
) -> None:
    """An entry left in submitting whose job exists, in phase "Pausing" and with both model
    fields: the restarted daemon finds the job by tag, adopts it (an unknown phase is active)
    and makes no second one."""
    key = stage.put("stranded.jsonl")
    etag = seed_entry(stage, key, State.SUBMITTING)
    tags = [{"Key": plan.INPUT_TAG_KEY, "Value": plan.input_tag(stage.bucket, key, etag)}]
    location = {"BucketName": stage.bucket, "ObjectKey": key}
    with httpx.Client(timeout=10) as http:
        caller = Caller(http, stage.emulator.url, credentials=Credentials(ACCESS_KEY, SECRET_KEY))
        job_id = caller.create(key, Tags=tags, InputFileTosLocation=location)
    stage.emulator.set_faults(both_model_fields=True)
    stage.emulator.report_unknown_phase("Pausing", seconds=3600)
    stage.daemon["track_interval_s"] = 0.2
    done = stage.dropzone("run", "--once")
    assert_no_traceback(done)
    assert done.returncode == 0, done.stderr + done.stdout[-3000:]
    [row] = stage.status()
    assert (row["state"], row["job_id"], row["phase"]) == ("submitted", job_id, "Pausing")
    assert stage.jobs_by_input() == {key: [job_id]}
    events = [e["event"] for e in log_events(done.stdout)]
    assert "job.reconciled" in events
    assert "worker.failed" not in events
