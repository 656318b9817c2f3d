"""The Ark emulator over real loopback HTTP: signing, validation, the guard, the lifecycle,
List, Stop, faults, the inspection endpoint and the command line."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest
from volcenginesdkcore import signv4

from dropzone.ark import signer
from dropzone.ark.models import JOB_ID_PATTERN, Job, JobPage, Phase, find_job_id
from dropzone.emulator import STATE_PATH, Emulator
from dropzone.emulator.cli import command, emulator_from
from dropzone.emulator.faults import Faults, fault_for
from dropzone.emulator.inputs import InputSeen
from dropzone.emulator.jobs import JobRecord, Timing, phase_at
from dropzone.emulator.options import configure_parser
from dropzone.emulator.requests import parse_create
from dropzone.testing import START, FakeClock
from tests.emulator_fixtures import (
    ACCESS_KEY,
    SECRET_KEY,
    Caller,
    create_body,
    error_of,
)
from tests.harness import load_scale

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

CREATE = "CreateBatchInferenceJob"
GET = "GetBatchInferenceJob"
LIST = "ListBatchInferenceJobs"
STOP = "StopBatchInferenceJob"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    """One client for the module: building an httpx client loads a TLS context (tens of ms)."""
    with httpx.Client(timeout=10.0) as client:
        yield client


TEN_REQUESTS = b'{"custom_id": "r"}\n' * 10


def ten_requests_unless_missing(bucket: str, key: str) -> bytes | None:
    """The store the module's emulator reads inputs from: ten lines, or none for a 'missing'."""
    del bucket
    return None if "missing" in key else TEN_REQUESTS


@pytest.fixture
def ark(clock: FakeClock) -> Iterator[Emulator]:
    with Emulator(
        ACCESS_KEY,
        SECRET_KEY,
        queue_s=2,
        run_s=10,
        seed=7,
        clock=clock,
        read_input=ten_requests_unless_missing,
    ) as server:
        yield server


@pytest.fixture
def caller(ark: Emulator, http: httpx.Client, clock: FakeClock) -> Caller:
    return Caller(http, ark.url, clock)


def _wait_for(condition: Callable[[], bool], deadline_s: float = 10.0) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition not met before the deadline")
        time.sleep(0.01)


# --- signing -----------------------------------------------------------------------------------


def test_signed_request_is_accepted_with_the_documented_envelope(
    caller: Caller, clock: FakeClock
) -> None:
    """A correctly signed Create succeeds: the envelope, the ID shape and a Date from its clock."""
    response = caller.send(CREATE, create_body())
    assert response.status_code == 200, response.text
    document = response.json()
    meta = document["ResponseMetadata"]
    assert meta["Action"] == CREATE
    assert meta["Version"] == "2024-01-01"
    assert meta["Service"] == "ark"
    assert meta["Region"] == "cn-beijing"
    assert re.fullmatch(r"20250115094923[0-9A-F]{20}", meta["RequestId"])
    assert "Error" not in meta
    assert re.fullmatch(r"bi-20250115094923-[0-9a-z]{5}", document["Result"]["Id"])
    assert JOB_ID_PATTERN.fullmatch(document["Result"]["Id"])
    assert parsedate_to_datetime(response.headers["Date"]) == clock()


def test_wrong_secret_is_refused(caller: Caller) -> None:
    """A signature made with another secret key gets 401 SignatureDoesNotMatch."""
    wrong = signer.Credentials(ACCESS_KEY, "not-the-secret")
    response = caller.send(GET, {"Id": "bi-1-x"}, credentials=wrong)
    assert error_of(response)[:2] == (401, "SignatureDoesNotMatch")


def test_body_changed_after_signing_is_refused(caller: Caller, clock: FakeClock) -> None:
    """Signed bytes must be the bytes sent: a tampered body fails the X-Content-Sha256 check."""
    signed = json.dumps(create_body()).encode()
    query = (("Action", CREATE), ("Version", "2024-01-01"))
    headers = signer.request_headers(
        caller.credentials,
        host=urlsplit(caller.url).netloc,
        query=query,
        body=signed,
        now=clock(),
        region="cn-beijing",
        service="ark",
    )
    tampered = signed.replace(b"in/a.jsonl", b"in/b.jsonl")
    response = caller.client.post(caller.url + "/", params=query, headers=headers, content=tampered)
    status, code, message = error_of(response)
    assert (status, code) == (401, "SignatureDoesNotMatch")
    assert "X-Content-Sha256" in message


def test_signature_over_other_query_is_refused(caller: Caller, clock: FakeClock) -> None:
    """The query is part of the signature: a request signed for Get and sent as Create fails."""
    body = b"{}"
    headers = signer.request_headers(
        caller.credentials,
        host=urlsplit(caller.url).netloc,
        query=(("Action", GET), ("Version", "2024-01-01")),
        body=body,
        now=clock(),
        region="cn-beijing",
        service="ark",
    )
    response = caller.client.post(
        caller.url + "/",
        params={"Action": CREATE, "Version": "2024-01-01"},
        headers=headers,
        content=body,
    )
    assert error_of(response)[:2] == (401, "SignatureDoesNotMatch")


def test_unknown_access_key_is_refused(caller: Caller) -> None:
    """A key pair the emulator does not know gets 401 InvalidAccessKey."""
    stranger = signer.Credentials("AKLTstranger", SECRET_KEY)
    response = caller.send(GET, {"Id": "bi-1-x"}, credentials=stranger)
    assert error_of(response)[:2] == (401, "InvalidAccessKey")


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, "MissingAuthenticationToken"),
        ("Bearer abc", "InvalidAuthorization"),
        ("HMAC-SHA256 Credential=AK/20250115/cn-beijing/ark/request", "InvalidAuthorization"),
    ],
)
def test_missing_or_malformed_authorization_is_refused(
    caller: Caller, authorization: str | None, code: str
) -> None:
    """An unsigned request or an unreadable Authorization header gets 401 with its own code."""
    headers = {"Authorization": authorization} if authorization else {}
    response = caller.client.post(
        caller.url + "/",
        params={"Action": GET, "Version": "2024-01-01"},
        headers=headers,
        content=b"{}",
    )
    assert error_of(response)[:2] == (401, code)


def test_required_headers_must_be_signed(caller: Caller, clock: FakeClock) -> None:
    """Host, X-Date and X-Content-Sha256 must all be among the signed headers."""
    body = b"{}"
    query = (("Action", GET), ("Version", "2024-01-01"))
    moment = clock()
    signed = {"X-Date": signer.format_x_date(moment), "X-Content-Sha256": signer.sha256_hex(body)}
    authorization = signer.authorization(
        caller.credentials,
        signer.SigningInput("POST", "/", query, signed, body, "cn-beijing", "ark"),
    )
    response = caller.client.post(
        caller.url + "/",
        params=query,
        headers={**signed, "Authorization": authorization},
        content=body,
    )
    status, code, message = error_of(response)
    assert (status, code) == (401, "InvalidAuthorization")
    assert "host" in message


@pytest.mark.parametrize("skew_s", [901, -901, 3600])
def test_clock_skew_beyond_900_s_is_refused(caller: Caller, clock: FakeClock, skew_s: int) -> None:
    """X-Date more than 900 s from the emulator's clock gets 400 InvalidTimestamp, and the Date
    header lets the caller measure the skew."""
    response = caller.send(GET, {"Id": "bi-1-x"}, now=clock() + timedelta(seconds=skew_s))
    assert error_of(response)[:2] == (400, "InvalidTimestamp")
    server_now = parsedate_to_datetime(response.headers["Date"])
    assert server_now == clock()


@pytest.mark.parametrize("skew_s", [900, -900, 899, -30])
def test_clock_skew_within_900_s_is_accepted(caller: Caller, clock: FakeClock, skew_s: int) -> None:
    """Signatures live 900 s either side of the server's time."""
    response = caller.send(CREATE, create_body(), now=clock() + timedelta(seconds=skew_s))
    assert response.status_code == 200, response.text


def test_signed_session_token_is_accepted(
    ark: Emulator, http: httpx.Client, clock: FakeClock
) -> None:
    """STS credentials: a signed X-Security-Token, whatever its value, is accepted."""
    caller = Caller(http, ark.url, clock, signer.Credentials(ACCESS_KEY, SECRET_KEY, "tok"))
    assert caller.send(CREATE, create_body()).status_code == 200


def test_unsigned_session_token_is_refused(caller: Caller) -> None:
    """A token sent but left out of SignedHeaders could be swapped in transit: 401."""
    caller.extra_headers["X-Security-Token"] = "tok"
    status, code, message = error_of(caller.send(CREATE, create_body()))
    assert (status, code) == (401, "InvalidAuthorization")
    assert "x-security-token" in message


class _SdkClock(datetime):
    """The SDK signer reads ``datetime.utcnow``; this pins it to the emulator's fake clock."""

    frozen = START.replace(tzinfo=None)

    @classmethod
    def utcnow(cls) -> datetime:  # type: ignore[override]
        return cls.frozen


@pytest.mark.parametrize("token", [None, "sts-token"])
def test_request_signed_by_the_official_sdk_is_accepted(
    caller: Caller, monkeypatch: pytest.MonkeyPatch, token: str | None
) -> None:
    """An independent implementation (volcenginesdkcore's SignerV4) produces requests the
    emulator accepts, with and without a session token, including a non-ASCII body."""
    body = json.dumps(create_body(Name="批量推理任务"), ensure_ascii=False)
    query = {"Action": CREATE, "Version": "2024-01-01"}
    headers = {"Host": urlsplit(caller.url).netloc, "Content-Type": "application/json"}
    # The SDK reads the datetime module's class, shared by everything: patch it only to sign.
    with monkeypatch.context() as patch:
        patch.setattr(signv4.datetime, "datetime", _SdkClock)
        signv4.SignerV4.sign(
            "/",
            "POST",
            headers,
            body,
            {},
            query,
            ACCESS_KEY,
            SECRET_KEY,
            "cn-beijing",
            "ark",
            token,
        )
    response = caller.client.post(
        caller.url + "/", params=query, headers=headers, content=body.encode("utf-8")
    )
    assert response.status_code == 200, response.text
    assert caller.get(response.json()["Result"]["Id"])["Name"] == "批量推理任务"


def test_wrong_region_or_service_in_scope_is_refused(caller: Caller, clock: FakeClock) -> None:
    """A signature scoped to another region cannot be replayed here."""
    body = b"{}"
    query = (("Action", GET), ("Version", "2024-01-01"))
    headers = signer.request_headers(
        caller.credentials,
        host=urlsplit(caller.url).netloc,
        query=query,
        body=body,
        now=clock(),
        region="cn-shanghai",
        service="ark",
    )
    response = caller.client.post(caller.url + "/", params=query, headers=headers, content=body)
    assert error_of(response)[:2] == (401, "SignatureDoesNotMatch")


@pytest.mark.parametrize(("action", "version"), [("DeleteEverything", "2024-01-01"), (GET, "1999")])
def test_unknown_action_or_version_is_404(caller: Caller, action: str, version: str) -> None:
    """Anything but the four actions at Version 2024-01-01 gets 404 InvalidActionOrVersion."""
    response = caller.send(action, {}, version=version)
    status, code, _ = error_of(response)
    assert (status, code) == (404, "InvalidActionOrVersion")
    assert response.json()["ResponseMetadata"]["Action"] == action


# --- Create: validation ------------------------------------------------------------------------


def _without(path: str) -> dict[str, Any]:
    body = create_body()
    *parents, last = path.split(".")
    target = body
    for name in parents:
        target = target[name]
    del target[last]
    return body


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (_without("Name"), "MissingParameter.Name"),
        (_without("ModelReference"), "MissingParameter.ModelReference"),
        (_without("InputFileTosLocation"), "MissingParameter.InputFileTosLocation"),
        (
            _without("InputFileTosLocation.ObjectKey"),
            "MissingParameter.InputFileTosLocation.ObjectKey",
        ),
        (
            _without("OutputDirTosLocation.BucketName"),
            "MissingParameter.OutputDirTosLocation.BucketName",
        ),
        (_without("OutputDirTosLocation"), "MissingParameter.OutputDirTosLocation"),
        (
            _without("ModelReference.FoundationModel.Name"),
            "MissingParameter.ModelReference.FoundationModel.Name",
        ),
        (create_body(ModelReference={}), "InvalidParameter.ModelReference"),
        (
            create_body(ModelReference={"FoundationModel": {"Name": "m"}, "CustomModelId": "c"}),
            "InvalidParameter.ModelReference",
        ),
        (
            create_body(OutputDirTosLocation={"BucketName": "bucket", "ObjectKey": "out"}),
            "InvalidParameter.OutputDirTosLocation.ObjectKey",
        ),
        (create_body(InputFileTosLocation="bucket/key"), "InvalidParameter.InputFileTosLocation"),
        (create_body(CompletionWindow="29d"), "InvalidParameter.CompletionWindow"),
        (create_body(CompletionWindow="1h"), "InvalidParameter.CompletionWindow"),
        (create_body(ProjectName=""), "InvalidParameter.ProjectName"),
        (create_body(Description="x" * 301), "InvalidParameter.Description"),
        (
            create_body(Tags=[{"Key": "k", "Value": "1"}, {"Key": "k", "Value": "2"}]),
            "Duplicate.Tags.Key",
        ),
        (
            create_body(Tags=[{"Key": "sys:ark:createdBy", "Value": "me"}]),
            "InvalidParameter.Tags.Key",
        ),
    ],
)
def test_create_checks_required_and_invalid_fields(
    caller: Caller, body: dict[str, Any], code: str
) -> None:
    """Each missing or malformed Create field gets 400 with the field named in the Code."""
    assert error_of(caller.send(CREATE, body))[:2] == (400, code)


@pytest.mark.parametrize(
    "name", ["", "x" * 201, "has space", "dot.name", "slash/name", "emoji😀", 42]
)
def test_create_refuses_names_outside_the_console_rule(caller: Caller, name: object) -> None:
    """Names are 1-200 letters, digits, Chinese characters, '-' or '_'."""
    response = caller.send(CREATE, create_body(Name=name))
    assert error_of(response)[:2] == (400, "InvalidParameter.Name")


@pytest.mark.parametrize("name", ["a", "x" * 200, "批量推理任务-2024_v1", "A-b_9"])
def test_create_accepts_names_within_the_console_rule(caller: Caller, name: str) -> None:
    """Names within the console rule, Chinese included, are accepted and stored as given."""
    assert caller.get(caller.create(Name=name))["Name"] == name


def test_create_refuses_body_that_is_not_a_json_object(caller: Caller) -> None:
    """A body that is not a JSON object is a 400, not a crash."""
    response = caller.send(CREATE, [1, 2])  # type: ignore[arg-type]
    assert error_of(response)[:2] == (400, "InvalidParameter")


def test_created_job_has_every_documented_field(caller: Caller, clock: FakeClock) -> None:
    """Get answers the job object of api.md, which dropzone's models parse; defaults applied."""
    job_id = caller.create(Description="a job")
    document = caller.get(job_id)
    job = Job.model_validate(document)
    assert job.phase is Phase.QUEUED
    assert job.project_name == "default"
    assert job.completion_window == "28d"
    assert job.tag("dropzone-input") == "in/a.jsonl"
    assert job.tag("sys:ark:createdBy") == ACCESS_KEY
    assert document["Description"] == "a job"
    assert document["CreateTime"] == "2025-01-15T09:49:23Z"
    assert document["ExpireTime"] == "2025-02-12T09:49:23Z"
    assert document["RequestCounts"] == {"Total": 10, "Completed": 0, "Failed": 0}
    assert document["ErrorFileTosLocation"] == {
        "BucketName": "bucket",
        "ObjectKey": f"out/{job_id}/error/",
    }
    assert datetime.fromisoformat(document["UpdateTime"]) == clock()


def test_custom_model_and_dry_run(caller: Caller) -> None:
    """CustomModelId is an alternative to FoundationModel; DryRun validates without creating."""
    job_id = caller.create(ModelReference={"CustomModelId": "cm-1"})
    assert caller.get(job_id)["ModelReference"] == {"CustomModelId": "cm-1"}
    assert caller.result(CREATE, create_body("in/dry.jsonl", DryRun=True)) == {}
    state = caller.client.get(caller.url + STATE_PATH).json()
    assert [job["Id"] for job in state["jobs"]] == [job_id]


# --- the guard and the lifecycle ---------------------------------------------------------------


def test_guard_names_the_active_job_until_it_finishes(caller: Caller, clock: FakeClock) -> None:
    """While a job is Queued or Running, a Create for the same input is refused with the active
    ID in the message; once it Completed, the same input makes a new job."""
    first = caller.create()
    status, code, message = error_of(caller.send(CREATE, create_body()))
    assert (status, code) == (400, "OperationDenied.ActiveJobExists")
    assert find_job_id(message) == first
    clock.advance(5)
    assert caller.phase(first) == "Running"
    assert find_job_id(error_of(caller.send(CREATE, create_body()))[2]) == first
    clock.advance(7)
    assert caller.phase(first) == "Completed"
    second = caller.create()
    assert second != first
    assert caller.phase(second) == "Queued"


def test_guard_key_is_account_project_bucket_and_key(
    ark: Emulator, caller: Caller, http: httpx.Client
) -> None:
    """Another key, project, bucket or account is another input: no refusal."""
    caller.create()
    caller.create("in/b.jsonl")
    caller.create(ProjectName="other")
    caller.create(InputFileTosLocation={"BucketName": "bucket2", "ObjectKey": "in/a.jsonl"})
    ark.add_account("AKLTsecond", "second-secret")
    other = Caller(http, ark.url, caller.clock, signer.Credentials("AKLTsecond", "second-secret"))
    other.create()


def test_custom_guard_wording(clock: FakeClock, http: httpx.Client) -> None:
    """The guard's status, code and message are configurable, e.g. a 409 in Chinese."""
    with Emulator(
        ACCESS_KEY,
        SECRET_KEY,
        clock=clock,
        guard_status=409,
        guard_code="Conflict",
        guard_message="相同输入文件的任务{job_id}正在运行或排队中",
    ) as ark:
        caller = Caller(http, ark.url, clock)
        first = caller.create()
        status, code, message = error_of(caller.send(CREATE, create_body()))
    assert (status, code) == (409, "Conflict")
    assert message.startswith("相同输入文件的任务bi-")
    assert find_job_id(message) == first


def test_lifecycle_follows_the_clock(caller: Caller, clock: FakeClock) -> None:
    """Queued for queue_s, Running for run_s with Completed growing, then Completed."""
    job_id = caller.create()
    assert caller.get(job_id)["Status"]["Phase"] == "Queued"
    clock.advance(2)
    running = caller.get(job_id)
    assert running["Status"] == {
        "Phase": "Running",
        "PhaseTime": "2025-01-15T09:49:25Z",
        "Message": "",
    }
    assert running["RequestCounts"]["Completed"] == 0
    clock.advance(5)
    assert caller.get(job_id)["RequestCounts"]["Completed"] == 5
    clock.advance(5)
    done = caller.get(job_id)
    assert done["Status"]["Phase"] == "Completed"
    assert done["Status"]["PhaseTime"] == "2025-01-15T09:49:35Z"
    assert done["RequestCounts"] == {"Total": 10, "Completed": 10, "Failed": 0}


def test_get_unknown_or_foreign_job_is_404(
    ark: Emulator, caller: Caller, http: httpx.Client
) -> None:
    """Get of an ID that does not exist, or that another account owns, is 404 NotFound.Id."""
    assert error_of(caller.send(GET, {"Id": "bi-20250101000000-zzzzz"}))[:2] == (
        404,
        "NotFound.Id",
    )
    assert error_of(caller.send(GET, {}))[:2] == (400, "MissingParameter.Id")
    job_id = caller.create()
    ark.add_account("AKLTsecond", "second-secret")
    other = Caller(http, ark.url, caller.clock, signer.Credentials("AKLTsecond", "second-secret"))
    assert error_of(other.send(GET, {"Id": job_id}))[:2] == (404, "NotFound.Id")
    assert other.result(LIST, {})["TotalCount"] == 0


# --- List --------------------------------------------------------------------------------------


def _ids(page: dict[str, Any]) -> list[str]:
    return [item["Id"] for item in page["Items"]]


@pytest.fixture
def five_jobs(caller: Caller, clock: FakeClock) -> list[str]:
    """Five jobs created 3 s apart (inputs in/0..4); when it returns, in/0 has just Completed,
    in/1 to in/3 are Running and in/4 is Queued."""
    ids = []
    for number in range(5):
        if number:
            clock.advance(3)
        ids.append(caller.create(f"in/{number}.jsonl", Name=f"job-{number}"))
    return ids


def test_list_pages_and_sorts_by_create_time(caller: Caller, five_jobs: list[str]) -> None:
    """Newest first by default, Asc on request; PageNumber/PageSize slice; TotalCount counts all."""
    assert _ids(caller.result(LIST, {})) == five_jobs[::-1]
    page = caller.result(LIST, {"PageSize": 2, "PageNumber": 2, "SortOrder": "Asc"})
    assert page["TotalCount"] == 5
    assert (page["PageNumber"], page["PageSize"]) == (2, 2)
    assert _ids(page) == five_jobs[2:4]
    assert _ids(caller.result(LIST, {"PageSize": 2, "PageNumber": 4})) == []
    assert JobPage.model_validate(caller.result(LIST, {})).total_count == 5


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"PageSize": 101}, "InvalidParameter.PageSize"),
        ({"PageSize": 0}, "InvalidParameter.PageSize"),
        ({"PageNumber": "1"}, "InvalidParameter.PageNumber"),
        ({"SortBy": "Name"}, "InvalidParameter.SortBy"),
        ({"SortOrder": "Up"}, "InvalidParameter.SortOrder"),
        ({"Filter": {"Phases": ["Sleeping"]}}, "InvalidParameter.Filter.Phases"),
        ({"TagFilters": {"Key": "k"}}, "InvalidParameter.TagFilters"),
    ],
)
def test_list_refuses_bad_queries(caller: Caller, body: dict[str, Any], code: str) -> None:
    """Malformed List parameters get 400 with the parameter named."""
    assert error_of(caller.send(LIST, body))[:2] == (400, code)


def test_list_filters(caller: Caller, five_jobs: list[str]) -> None:
    """Ids, Phases, Name (substring), TagFilters and ProjectName all narrow the answer, together."""
    assert _ids(caller.result(LIST, {"Filter": {"Ids": five_jobs[1:3]}})) == five_jobs[2:0:-1]
    assert _ids(caller.result(LIST, {"Filter": {"Phases": ["Completed"]}})) == five_jobs[:1]
    assert _ids(caller.result(LIST, {"Filter": {"Name": "job-3"}})) == [five_jobs[3]]
    tag = {"Key": "dropzone-input", "Values": ["in/1.jsonl", "in/4.jsonl"]}
    assert _ids(caller.result(LIST, {"TagFilters": [tag]})) == [five_jobs[4], five_jobs[1]]
    both = {"TagFilters": [tag], "Filter": {"Phases": ["Queued"]}}
    assert _ids(caller.result(LIST, both)) == [five_jobs[4]]
    assert caller.result(LIST, {"ProjectName": "other"})["TotalCount"] == 0
    absent = {"Key": "dropzone-input", "Values": ["in/9.jsonl"]}
    assert caller.result(LIST, {"TagFilters": [absent]})["TotalCount"] == 0
    by_model = {"Filter": {"FoundationModels": [{"Name": "doubao-pro-32k"}]}}
    assert caller.result(LIST, by_model)["TotalCount"] == 5
    assert caller.result(LIST, {"Filter": {"CustomModelIds": ["cm-1"]}})["TotalCount"] == 0


# --- Stop --------------------------------------------------------------------------------------


def test_stop_goes_terminating_then_terminated(caller: Caller, clock: FakeClock) -> None:
    """Stop answers {}, the job is Terminating briefly then Terminated, and its input is free."""
    job_id = caller.create()
    clock.advance(3)
    assert caller.result(STOP, {"Id": job_id}) == {}
    assert caller.phase(job_id) == "Terminating"
    assert error_of(caller.send(STOP, {"Id": job_id}))[:2] == (
        403,
        "OperationDenied.UnsupportedPhase",
    )
    clock.advance(1)
    terminated = caller.get(job_id)
    assert terminated["Status"]["Phase"] == "Terminated"
    assert terminated["RequestCounts"]["Completed"] == 1
    assert caller.create() != job_id


def test_stop_of_a_terminal_job_is_refused(caller: Caller, clock: FakeClock) -> None:
    """Stopping a Completed job gets 403 OperationDenied.UnsupportedPhase; unknown IDs get 404."""
    job_id = caller.create()
    clock.advance(12)
    status, code, message = error_of(caller.send(STOP, {"Id": job_id}))
    assert (status, code) == (403, "OperationDenied.UnsupportedPhase")
    assert "Completed" in message
    assert error_of(caller.send(STOP, {"Id": "bi-1-a"}))[:2] == (404, "NotFound.Id")


# --- faults and the inspection endpoint --------------------------------------------------------


def test_fail_rate_one_answers_500_and_creates_nothing(ark: Emulator, caller: Caller) -> None:
    """fail_rate=1: every authenticated call is a 500 InternalError; the Create is counted."""
    ark.set_faults(fail_rate=1.0)
    assert error_of(caller.send(CREATE, create_body()))[:2] == (500, "InternalError")
    assert error_of(caller.send(LIST, {}))[:2] == (500, "InternalError")
    assert ark.state() == {
        "jobs": [],
        "create_calls": {"bucket/in/a.jsonl": 1},
        "lost_answers": 0,
        "slowed_creates": 0,
        "slowed_creates_under_way": 0,
        "calls": {CREATE: 1, LIST: 1},
    }
    ark.set_faults(fail_rate=0.0)
    caller.create()


def test_throttle_rate_one_answers_429(ark: Emulator, caller: Caller) -> None:
    """throttle_rate=1: every authenticated call is a 429 FlowLimitExceeded."""
    ark.set_faults(throttle_rate=1.0)
    assert error_of(caller.send(CREATE, create_body()))[:2] == (429, "FlowLimitExceeded")
    assert error_of(caller.send(GET, {"Id": "bi-1-a"}))[:2] == (429, "FlowLimitExceeded")


def test_faults_apply_after_authentication(ark: Emulator, caller: Caller) -> None:
    """A badly signed request is refused for its signature even when every call should fail."""
    ark.set_faults(fail_rate=1.0, throttle_rate=1.0)
    wrong = signer.Credentials(ACCESS_KEY, "not-the-secret")
    assert error_of(caller.send(CREATE, create_body(), credentials=wrong))[0] == 401
    assert ark.state()["create_calls"] == {}


def test_lost_answers_still_create_the_job(ark: Emulator, caller: Caller) -> None:
    """lose_answer_rate=1: each Create makes its job, then the caller sees a 503 or a dropped
    connection (both happen); the state shows the jobs and counts every call, guard refusals too."""
    ark.set_faults(lose_answer_rate=1.0)
    outcomes = []
    for number in range(8):
        try:
            response = caller.send(CREATE, create_body(f"in/{number}.jsonl"))
        except httpx.RemoteProtocolError:
            outcomes.append("dropped")
        else:
            assert error_of(response)[:2] == (503, "ServiceUnavailableTemp")
            outcomes.append("503")
    assert set(outcomes) == {"dropped", "503"}
    refused = caller.send(CREATE, create_body("in/0.jsonl"))
    assert refused.status_code == 400
    state = caller.client.get(caller.url + "/_emulator/state").json()
    assert len(state["jobs"]) == 8
    assert {job["InputFileTosLocation"]["ObjectKey"] for job in state["jobs"]} == {
        f"in/{number}.jsonl" for number in range(8)
    }
    assert state["create_calls"]["bucket/in/0.jsonl"] == 2
    assert state["create_calls"]["bucket/in/7.jsonl"] == 1
    assert state["lost_answers"] == 8
    assert find_job_id(error_of(refused)[2]) == state["jobs"][0]["Id"]


def test_lost_answer_applies_only_to_creates(ark: Emulator, caller: Caller) -> None:
    """Get, List and Stop answer normally when answers to Create are being lost."""
    job_id = caller.create()
    ark.set_faults(lose_answer_rate=1.0)
    assert caller.phase(job_id) == "Queued"
    assert caller.result(LIST, {})["TotalCount"] == 1


def test_latency_is_added(ark: Emulator, caller: Caller) -> None:
    """latency_ms delays every API answer."""
    ark.set_faults(latency_ms=150)
    started = time.monotonic()
    caller.send(LIST, {})
    assert time.monotonic() - started >= 0.15


def test_lost_answers_are_counted_and_only_for_jobs_made(ark: Emulator, caller: Caller) -> None:
    """lost_answers counts the Create answers lost on purpose: not a guard refusal, a dry run
    or another action, which have no job whose answer could be lost."""
    ark.set_faults(lose_answer_rate=1.0)
    for number in range(3):
        # A dropped connection is the other way an answer is lost.
        with contextlib.suppress(httpx.RemoteProtocolError):
            caller.send(CREATE, create_body(f"in/{number}.jsonl"))
    assert caller.send(CREATE, create_body("in/0.jsonl")).status_code == 400
    assert caller.send(CREATE, create_body("in/9.jsonl", DryRun=True)).status_code == 200
    assert caller.send(LIST, {}).status_code == 200
    assert ark.state()["lost_answers"] == 3
    ark.set_faults(lose_answer_rate=0.0)
    caller.create("in/8.jsonl")
    assert ark.state()["lost_answers"] == 3


@pytest.fixture
def slow_ark(clock: FakeClock) -> Iterator[tuple[Emulator, list[str]]]:
    """An emulator that holds every Create 0.6 s, and the arrivals it reported (one "create"
    each, appended from the server's thread)."""
    arrivals: list[str] = []
    with Emulator(
        ACCESS_KEY,
        SECRET_KEY,
        seed=7,
        clock=clock,
        slow_create_rate=1.0,
        slow_create_s=0.6,
        on_create_received=lambda: arrivals.append("create"),
    ) as server:
        yield server, arrivals


def test_a_slowed_create_is_carried_out_only_after_its_hold(
    slow_ark: tuple[Emulator, list[str]], http: httpx.Client, clock: FakeClock
) -> None:
    """A slowed Create is answered no sooner than slow_create_s after it was sent; until then
    its arrival has been reported, it counts as under way, and no job is listed (other actions
    are not held)."""
    ark, arrivals = slow_ark
    caller = Caller(http, ark.url, clock)
    with ThreadPoolExecutor(max_workers=1) as pool:
        sent = time.monotonic()
        answer = pool.submit(caller.send, CREATE, create_body())
        _wait_for(lambda: ark.state()["slowed_creates_under_way"] == 1)
        assert arrivals == ["create"]
        assert caller.result(LIST, {})["TotalCount"] == 0
        assert ark.state()["jobs"] == []
        response = answer.result(timeout=10)
    assert time.monotonic() - sent >= 0.6
    assert response.status_code == 200, response.text
    job_id = response.json()["Result"]["Id"]
    assert [job["Id"] for job in caller.result(LIST, {})["Items"]] == [job_id]
    state = ark.state()
    assert (state["slowed_creates"], state["slowed_creates_under_way"]) == (1, 0)
    assert state["create_calls"] == {"bucket/in/a.jsonl": 1}
    assert arrivals == ["create"]


def test_a_slowed_create_makes_its_job_after_the_client_gave_up(
    slow_ark: tuple[Emulator, list[str]], clock: FakeClock
) -> None:
    """A client that stops waiting before the hold ends sees a time-out and no job; the job
    appears later all the same, as on a platform slow to commit."""
    ark, _ = slow_ark
    with httpx.Client(timeout=0.2) as impatient, pytest.raises(httpx.TimeoutException):
        Caller(impatient, ark.url, clock).send(CREATE, create_body())
    state = ark.state()
    assert (state["jobs"], state["slowed_creates_under_way"]) == ([], 1)
    _wait_for(lambda: ark.state()["slowed_creates_under_way"] == 0)
    state = ark.state()
    assert [job["InputFileTosLocation"]["ObjectKey"] for job in state["jobs"]] == ["in/a.jsonl"]
    assert (state["slowed_creates"], state["create_calls"]) == (1, {"bucket/in/a.jsonl": 1})


def _slowed_creates(seed: int, clock: FakeClock, http: httpx.Client) -> int:
    with Emulator(ACCESS_KEY, SECRET_KEY, seed=seed, clock=clock) as ark:
        ark.set_faults(slow_create_rate=0.5, slow_create_s=0.0)
        caller = Caller(http, ark.url, clock)
        for number in range(12):
            caller.create(f"in/{number}.jsonl")
        slowed: int = ark.state()["slowed_creates"]
        return slowed


def test_which_creates_are_slowed_follows_the_seed(clock: FakeClock, http: httpx.Client) -> None:
    """slow_create_rate draws from the emulator's seeded dice: a share of Creates is slowed, the
    same ones again with the same seed."""
    slowed = _slowed_creates(11, clock, http)
    assert 0 < slowed < 12
    assert _slowed_creates(11, clock, http) == slowed


def test_arrivals_are_reported_for_creates_only(
    slow_ark: tuple[Emulator, list[str]], http: httpx.Client, clock: FakeClock
) -> None:
    """on_create_received is called once per Create request, even one refused for its signature;
    Get, List and Stop are not reported."""
    ark, arrivals = slow_ark
    ark.set_faults(slow_create_rate=0.0)
    caller = Caller(http, ark.url, clock)
    job_id = caller.create()
    wrong = signer.Credentials(ACCESS_KEY, "not-the-secret")
    assert caller.send(CREATE, create_body(), credentials=wrong).status_code == 401
    caller.get(job_id)
    caller.result(LIST, {})
    caller.result(STOP, {"Id": job_id})
    assert arrivals == ["create", "create"]


def _signed_create(url: str, clock: FakeClock) -> bytes:
    """A whole signed Create request as the bytes of HTTP/1.1, for a raw socket."""
    body = json.dumps(create_body()).encode()
    query = (("Action", CREATE), ("Version", "2024-01-01"))
    host = urlsplit(url).netloc
    headers = signer.request_headers(
        signer.Credentials(ACCESS_KEY, SECRET_KEY),
        host=host,
        query=query,
        body=body,
        now=clock(),
        region="cn-beijing",
        service="ark",
    )
    lines = [
        f"POST /?Action={CREATE}&Version=2024-01-01 HTTP/1.1",
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@pytest.mark.slow
def test_a_client_gone_mid_answer_prints_no_traceback(
    slow_ark: tuple[Emulator, list[str]], clock: FakeClock, capfd: pytest.CaptureFixture[str]
) -> None:
    """A client that vanishes while its Create is held (its connection reset, as when a daemon
    is SIGKILLed) makes writing the answer fail: that is ordinary, so nothing goes to stderr,
    and the job is made all the same."""
    ark, _ = slow_ark
    host, port = urlsplit(ark.url).netloc.split(":")
    with socket.create_connection((host, int(port)), timeout=5) as client:
        client.sendall(_signed_create(ark.url, clock))
        _wait_for(lambda: ark.state()["slowed_creates_under_way"] == 1)
        # Linger 0: close() resets the connection, so the server's first write fails for sure.
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    _wait_for(lambda: ark.state()["slowed_creates_under_way"] == 0)
    # The answer is written just after the job is made: give that write time to fail.
    time.sleep(0.3)
    assert len(ark.state()["jobs"]) == 1
    assert capfd.readouterr().err == ""


def test_other_handler_errors_are_still_reported(
    http: httpx.Client, capfd: pytest.CaptureFixture[str]
) -> None:
    """Only a vanished client is kept quiet: a fault of the emulator's own (here a clock that
    breaks its contract) still prints its traceback on stderr."""
    naive = datetime(2025, 1, 15, 9, 49, 23)  # noqa: DTZ001 - the broken contract under test
    with Emulator(ACCESS_KEY, SECRET_KEY, clock=lambda: naive) as ark:
        with pytest.raises(httpx.RemoteProtocolError):
            Caller(http, ark.url, FakeClock()).send(LIST, {})
        printed: list[str] = []

        def reported() -> bool:
            printed.append(capfd.readouterr().err)
            return "aware datetimes" in "".join(printed)

        _wait_for(reported)
    assert "Traceback" in "".join(printed)


def test_faults_are_validated(ark: Emulator) -> None:
    """Rates outside 0..1 and negative durations are refused rather than silently clamped."""
    with pytest.raises(ValueError, match="fail_rate"):
        ark.set_faults(fail_rate=1.5)
    with pytest.raises(ValueError, match="slow_create_rate"):
        ark.set_faults(slow_create_rate=-0.1)
    with pytest.raises(ValueError, match="slow_create_s"):
        ark.set_faults(slow_create_s=-1)
    with pytest.raises(ValueError, match="latency_ms"):
        Emulator(ACCESS_KEY, SECRET_KEY, latency_ms=-1)


def test_both_model_fields_fault_shows_the_unused_field_empty(
    ark: Emulator, caller: Caller
) -> None:
    """both_model_fields: Get and List show ModelReference with both fields, the one the job
    was not created with empty; the inspection endpoint still shows the job as created."""
    foundation = caller.create("in/f.jsonl")
    custom = caller.create("in/c.jsonl", ModelReference={"CustomModelId": "cm-20250101-abc"})
    ark.set_faults(both_model_fields=True)
    assert caller.get(foundation)["ModelReference"] == {
        "FoundationModel": {"Name": "doubao-pro-32k", "ModelVersion": "240615"},
        "CustomModelId": "",
    }
    listed = {job["Id"]: job for job in caller.result(LIST, {})["Items"]}
    assert listed[custom]["ModelReference"] == {
        "FoundationModel": {"Name": "", "ModelVersion": ""},
        "CustomModelId": "cm-20250101-abc",
    }
    assert ark.state()["jobs"][0]["ModelReference"] == create_body()["ModelReference"]
    ark.set_faults(both_model_fields=False)
    assert "CustomModelId" not in caller.get(foundation)["ModelReference"]


def test_unknown_phase_fault_hides_phases_under_way_for_a_while(
    ark: Emulator, caller: Caller, clock: FakeClock
) -> None:
    """report_unknown_phase for one job: Get and List show it "Pausing" until the time is up,
    the other job as it is; with every job named, a job that has ended shows its end."""
    held, other = caller.create("in/h.jsonl"), caller.create("in/o.jsonl")
    ark.report_unknown_phase("Pausing", seconds=5, job_id=held)
    assert (caller.phase(held), caller.phase(other)) == ("Pausing", "Queued")
    listed = {job["Id"]: job["Status"]["Phase"] for job in caller.result(LIST, {})["Items"]}
    assert listed == {held: "Pausing", other: "Queued"}
    clock.advance(5)
    assert caller.phase(held) == "Running"
    ark.report_unknown_phase("Pausing", seconds=60)
    assert (caller.phase(held), caller.phase(other)) == ("Pausing", "Pausing")
    clock.advance(10)
    assert (caller.phase(held), caller.phase(other)) == ("Completed", "Completed")


def test_unknown_phase_fault_refuses_a_documented_phase(ark: Emulator) -> None:
    """The unknown phase must be unknown, and its time not negative."""
    with pytest.raises(ValueError, match="Running"):
        ark.report_unknown_phase("Running", seconds=1)
    with pytest.raises(ValueError, match="seconds"):
        ark.report_unknown_phase("Pausing", seconds=-1)


def test_state_endpoint_needs_no_signature(caller: Caller, ark: Emulator) -> None:
    """GET /_emulator/state is plain JSON, the same as Emulator.state(), jobs as Get shows them."""
    job_id = caller.create()
    response = caller.client.get(caller.url + "/_emulator/state")
    assert response.status_code == 200
    assert response.json() == ark.state()
    assert response.json()["jobs"][0] == caller.get(job_id)


def test_concurrent_creates_of_one_input_make_one_job(ark: Emulator, caller: Caller) -> None:
    """The server is threaded; the lock makes the guard atomic: 16 racing Creates, one job."""

    def create(_: int) -> int:
        return caller.send(CREATE, create_body()).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(create, range(16)))
    assert sorted(statuses) == [200] + [400] * 15
    assert len(ark.state()["jobs"]) == 1
    assert ark.state()["create_calls"] == {"bucket/in/a.jsonl": 16}


def test_emulator_restarts_and_reports_its_url() -> None:
    """url is only meaningful while started; stop is idempotent; a started one cannot restart."""
    ark = Emulator(ACCESS_KEY, SECRET_KEY)
    with pytest.raises(RuntimeError):
        _ = ark.url
    with ark:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", ark.url)
        assert repr(ark) == f"Emulator({ark.url})"
        with pytest.raises(RuntimeError):
            ark.start()
    ark.stop()
    assert repr(ark) == "Emulator(not started)"


def test_real_clock_by_default(http: httpx.Client) -> None:
    """Without an injected clock, the emulator's Date is the real time."""
    with Emulator(ACCESS_KEY, SECRET_KEY) as ark:
        response = Caller(http, ark.url).send(LIST, {})
    assert response.status_code == 200
    skew = parsedate_to_datetime(response.headers["Date"]) - datetime.now(UTC)
    assert abs(skew.total_seconds()) < 5


# --- pure parts --------------------------------------------------------------------------------


def _record(**changes: Any) -> JobRecord:
    spec = parse_create(create_body(**changes.pop("body", {})))
    base = JobRecord("bi-1-a", ACCESS_KEY, 0, spec, START, Timing(2, 10, 1), seen=InputSeen(10))
    return dataclasses.replace(base, **changes)


@pytest.mark.parametrize(
    ("seconds", "phase", "completed"),
    [
        (0, Phase.QUEUED, 0),
        (1.99, Phase.QUEUED, 0),
        (2, Phase.RUNNING, 0),
        (7, Phase.RUNNING, 5),
        (12, Phase.COMPLETED, 10),
        (10**6, Phase.COMPLETED, 10),
    ],
)
def test_phase_at_follows_the_timing(seconds: float, phase: Phase, completed: int) -> None:
    """phase_at is a pure function of the job and the time."""
    view = phase_at(_record(), START + timedelta(seconds=seconds))
    assert (view.phase, view.completed) == (phase, completed)


def test_completion_window_expiry_terminates_a_long_job() -> None:
    """A job still running when its completion window ends goes Terminating then Terminated."""
    job = _record(body={"CompletionWindow": "1d"}, timing=Timing(0, 2 * 86400, 1))
    expiry = START + timedelta(days=1)
    assert phase_at(job, expiry - timedelta(seconds=1)).phase is Phase.RUNNING
    ending = phase_at(job, expiry)
    assert (ending.phase, ending.message) == (Phase.TERMINATING, "the completion window expired")
    assert phase_at(job, expiry + timedelta(seconds=1)).phase is Phase.TERMINATED


def test_fault_for_draws_throttling_first() -> None:
    """fault_for is pure given its draws: throttling is decided before failure."""
    faults = Faults(fail_rate=0.5, throttle_rate=0.5)
    draws = iter([0.9, 0.1])
    error = fault_for(faults, lambda: next(draws))
    assert error is not None
    assert (error.status, error.code) == (500, "InternalError")
    assert fault_for(faults, lambda: 0.4) is not None
    assert fault_for(faults, lambda: 0.9) is None


def test_seeded_ids_are_reproducible(clock: FakeClock, http: httpx.Client) -> None:
    """The same seed gives the same job IDs, so fault runs can be replayed."""

    def first_id() -> str:
        with Emulator(ACCESS_KEY, SECRET_KEY, seed=3, clock=clock) as ark:
            return Caller(http, ark.url, clock).create()

    assert first_id() == first_id()


# --- the command line --------------------------------------------------------------------------


def _read_line(stream: Any, deadline_s: float) -> str:
    ready, _, _ = select.select([stream], [], [], deadline_s)
    if not ready:
        pytest.fail("no banner before the deadline")
    line: str = stream.readline()
    return line


def test_cli_prints_banner_serves_and_exits_0_on_sigterm(http: httpx.Client) -> None:
    """`python -m dropzone.emulator --port 0` prints one line saying it is a development
    stand-in and where it listens, answers signed calls there, and exits 0 on SIGTERM."""
    process = subprocess.Popen(
        [sys.executable, "-m", "dropzone.emulator", "--port", "0", "--queue-s", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        banner = _read_line(process.stdout, 20.0)
        assert "local stand-in for development and trial" in banner
        assert "not the real Ark service" in banner
        found = re.search(r"http://127\.0\.0\.1:(\d+)", banner)
        assert found is not None, banner
        caller = Caller(
            http, found.group(0), credentials=signer.Credentials("emulator-ak", "emulator-sk")
        )
        assert caller.phase(caller.create()) == "Running"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20 * load_scale()) == 0
        stdout, stderr = process.communicate()
        assert stdout == ""
        assert stderr == ""
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_cli_keys_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --access-key/--secret-key the official SDK's environment variables are used."""
    monkeypatch.setenv("VOLCENGINE_ACCESS_KEY", "AKLTfromenv")
    monkeypatch.setenv("VOLC_SECRETKEY", "secret-from-env")
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    args = parser.parse_args(["--port", "0", "--fail-rate", "0.25", "--seed", "5"])
    ark = emulator_from(args)
    assert ark._engine._keys == {"AKLTfromenv": "secret-from-env"}
    with pytest.raises(SystemExit):
        parser.parse_args(["--throttle-rate", "2"])


def test_cli_sets_the_slow_create_fault() -> None:
    """--slow-create-rate and --slow-create-s configure the slow-Create fault; a rate outside
    0..1 is a usage error."""
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    args = parser.parse_args(["--slow-create-rate", "0.25", "--slow-create-s", "3.5"])
    faults = emulator_from(args).set_faults()
    assert (faults.slow_create_rate, faults.slow_create_s) == (0.25, 3.5)
    with pytest.raises(SystemExit):
        parser.parse_args(["--slow-create-rate", "1.5"])


def test_cli_sets_the_answer_faults() -> None:
    """--both-model-fields and --unknown-phase (for --unknown-phase-s from the start) set
    those faults; a documented phase given as unknown is a usage error."""
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    args = parser.parse_args(
        ["--both-model-fields", "--unknown-phase", "Pausing", "--unknown-phase-s", "30"]
    )
    before = datetime.now(UTC)
    faults = emulator_from(args).set_faults()
    assert faults.both_model_fields
    assert faults.unknown_phase is not None
    assert (faults.unknown_phase.phase, faults.unknown_phase.job_id) == ("Pausing", None)
    assert faults.unknown_phase.until >= before + timedelta(seconds=30)
    assert emulator_from(parser.parse_args([])).set_faults() == Faults()
    with pytest.raises(SystemExit):
        parser.parse_args(["--unknown-phase", "Running"])


def test_cli_stops_on_sigint_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """command() run in this process serves until a stop signal and returns 0."""
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    args = parser.parse_args(["--port", "0"])
    output = _Recorder()
    monkeypatch.setattr(sys, "stdout", output)
    waiter = threading.Thread(target=_signal_after_banner, args=(output,))
    waiter.start()
    assert command(args) == 0
    waiter.join()
    assert len(output.lines) == 1
    assert output.lines[0].startswith("dropzone Ark emulator")
    assert output.lines[0].endswith("\n")


class _Recorder:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, text: str) -> int:
        self.lines.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def _signal_after_banner(output: _Recorder) -> None:
    _wait_for(lambda: bool(output.lines))
    signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)


@pytest.mark.parametrize(
    ("options", "accepted"),
    [
        ([], {"doubao-pro-32k"}),
        (["--model", "my-model"], {"my-model"}),
        (["--any-model"], {"doubao-pro-32k", "no-such-model", "my-model"}),
    ],
)
def test_the_command_refuses_models_it_does_not_offer(
    http: httpx.Client, options: list[str], accepted: set[str]
) -> None:
    """`dropzone emulator` offers a catalogue (or --model names, or --any-model): a Create for
    another model is refused with the platform's NotFound, as a typo would be (it accepted
    `no-such-model`)."""
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    server = emulator_from(parser.parse_args(["--port", "0", *options]))
    with server:
        caller = Caller(
            http, server.url, credentials=signer.Credentials("emulator-ak", "emulator-sk")
        )
        for model in ("doubao-pro-32k", "no-such-model", "my-model"):
            reference = {"FoundationModel": {"Name": model, "ModelVersion": "1"}}
            response = caller.send(
                "CreateBatchInferenceJob",
                create_body(f"in/{model}.jsonl", ModelReference=reference),
            )
            if model in accepted:
                assert response.status_code == 200, response.text
            else:
                status, code, _ = error_of(response)
                assert (status, code) == (404, "NotFound.ModelReference.FoundationModel")


def _command_emulator(*options: str) -> Emulator:
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    keys = ["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY]
    return emulator_from(parser.parse_args(["--port", "0", *keys, *options]))


def test_the_command_refuses_with_a_known_code_at_the_platforms_status(
    http: httpx.Client,
) -> None:
    """--refuse CODE answers Creates with the code at the status the errors table gives it;
    other actions still answer."""
    with _command_emulator("--refuse", "OperationDenied.ServiceNotOpen") as server:
        caller = Caller(http, server.url)
        status, code, _ = error_of(caller.send(CREATE, create_body()))
        assert (status, code) == (403, "OperationDenied.ServiceNotOpen")
        assert caller.send(LIST, {}).status_code == 200


def test_the_command_refuses_the_actions_given_at_the_status_given(http: httpx.Client) -> None:
    options = ["--refuse", "Made.Up", "--refuse-status", "418", "--refuse-actions", "List,Get"]
    with _command_emulator(*options) as server:
        caller = Caller(http, server.url)
        job_id = caller.create()
        for action, body in ((LIST, {}), (GET, {"Id": job_id})):
            status, code, _ = error_of(caller.send(action, body))
            assert (status, code) == (418, "Made.Up")


def test_the_command_says_what_a_refusal_lacks(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown code without --refuse-status, or a status without a code, is a usage error
    that says what to give; a bad action or status is refused by the parser."""
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    assert command(parser.parse_args(["--port", "0", "--refuse", "Made.Up"])) == 2
    assert "give it with --refuse-status" in capsys.readouterr().err
    assert command(parser.parse_args(["--port", "0", "--refuse-status", "403"])) == 2
    assert "--refuse-status needs --refuse CODE" in capsys.readouterr().err
    for bad in (["--refuse-actions", "Delete"], ["--refuse-status", "200"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)
