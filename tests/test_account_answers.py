"""The platform's answers about the account and its guard, given by the emulator on loopback.

Every row of the errors module's table, answered by the emulator as the platform would, lands
on its branch through the real client; a watch whose account is refused holds its files
`pending` (one log line, /healthz says why) and submits them once the account may; a guard
answered as 429 is still the guard.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

import httpx
import pytest

from dropzone.ark import errors
from dropzone.ark.models import CreateJobRequest, FoundationModel, ModelReference, TosLocation
from dropzone.emulator import Emulator
from tests.emulator_fixtures import client_of
from tests.harness import (
    ACCESS_KEY,
    SECRET_KEY,
    Stage,
    free_port,
    load_scale,
    log_events,
    new_bucket,
    s3_client,
    wait_for,
)

if TYPE_CHECKING:
    from pathlib import Path


def _request(key: str = "in/a.jsonl") -> CreateJobRequest:
    return CreateJobRequest(
        name="a",
        model_reference=ModelReference(foundation_model=FoundationModel(name="m-1")),
        input_file_tos_location=TosLocation(bucket_name="b", object_key=key),
        output_dir_tos_location=TosLocation(bucket_name="b", object_key="out/a/"),
    )


@pytest.mark.parametrize(("code", "row"), list(errors.KNOWN_CODES.items()), ids=str)
def test_each_code_through_the_emulator(
    emulator: Emulator, code: str, row: errors.KnownCode
) -> None:
    """The emulator answers Create with the code at its status; the client raises its branch
    (a Held one with what to do), and no job is made."""
    emulator.refuse(code, status=row.status)
    with (
        client_of(emulator.url, ACCESS_KEY, SECRET_KEY) as api,
        pytest.raises(errors.ArkError) as raised,
    ):
        api.create(_request())
    assert type(raised.value) is row.kind
    assert raised.value.code == code
    assert raised.value.status == row.status
    assert emulator.state()["jobs"] == []


@pytest.mark.slow
def test_an_account_not_activated_holds_every_file_and_healthz_says_why(stage: Stage) -> None:
    """ServiceNotOpen for every Create: all files stay pending (none rejected), one
    `ark.account_blocked` line names the code and what to do, /healthz lists it under
    `degraded`, the metric counts it; once the account may, each file gets its job."""
    port = free_port()
    stage.daemon.update(listen=f"127.0.0.1:{port}")
    stage.emulator.refuse("OperationDenied.ServiceNotOpen", status=403)
    keys = [stage.put(f"f{i}.jsonl") for i in range(3)]
    daemon = stage.spawn("run")
    try:
        wait_for(
            lambda: _held_all(stage, keys),
            timeout=60,
            what="every file held with the account's code",
        )
        health = httpx.get(f"http://127.0.0.1:{port}/healthz").json()
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        stage.emulator.stop_refusing()
        wait_for(
            lambda: {r["state"] for r in stage.status()} == {"submitted"},
            timeout=120,
            what="the files submitted once the account may",
        )
    finally:
        daemon.send_signal(signal.SIGTERM)
        out, _ = daemon.communicate(timeout=60 * load_scale())
    assert health["ok"] is True
    [reason] = health["degraded"]
    assert reason.startswith("ark refuses the account: OperationDenied.ServiceNotOpen: activate")
    assert 'dropzone_ark_held_answers_total{code="OperationDenied.ServiceNotOpen"}' in metrics
    events = list(log_events(out))
    blocked = [e for e in events if e["event"] == "ark.account_blocked"]
    assert len(blocked) == 1
    assert blocked[0]["code"] == "OperationDenied.ServiceNotOpen"
    assert "activate the Ark model service" in blocked[0]["hint"]
    assert [e["codes"] for e in events if e["event"] == "ark.holds_ended"] == [
        ["OperationDenied.ServiceNotOpen"]
    ]
    assert not [e for e in events if e["event"] == "job.rejected"]
    assert sorted(stage.jobs_by_input()) == sorted(keys)


def _held_all(stage: Stage, keys: list[str]) -> bool:
    rows = {r["key"]: r for r in stage.status()} if stage.ledger_path.exists() else {}
    return all(
        key in rows
        and rows[key]["state"] == "pending"
        and "OperationDenied.ServiceNotOpen" in (rows[key]["error"] or "")
        for key in keys
    )


@pytest.mark.slow
def test_a_guard_answered_as_429_is_still_the_guard(tmp_path: Path, moto_endpoint: str) -> None:
    """A guard given as HTTP 429 FlowLimitExceeded (looks like throttling) that names the active
    job: the new version ends `duplicate` against it, and no second job is made."""
    s3 = s3_client(moto_endpoint)
    with Emulator(
        ACCESS_KEY,
        SECRET_KEY,
        queue_s=30,
        run_s=60,
        guard_status=429,
        guard_code="FlowLimitExceeded",
        guard_message="The input is in use by {job_id}.",
    ) as ark:
        stage = Stage(tmp_path, moto_endpoint, ark, s3, new_bucket(s3))
        key = stage.put("a.jsonl", b'{"custom_id":"1","body":{}}\n')
        assert stage.dropzone("run", "--once").returncode == 0
        [job_id] = stage.jobs_by_input()[key]
        stage.put("a.jsonl", b'{"custom_id":"2","body":{}}\n')
        done = stage.dropzone("run", "--once")
        assert done.returncode == 0, done.stderr + done.stdout[-2000:]
        assert sorted(r["state"] for r in stage.status()) == ["duplicate", "submitted"]
        assert {r["job_id"] for r in stage.status()} == {job_id}
        assert stage.jobs_by_input() == {key: [job_id]}
