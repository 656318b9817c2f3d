"""A local stand-in for the Ark batch inference management API, for development and trial.

It speaks the wire format of ``ark/api.md`` (envelopes, error codes, Volcengine request signing)
over plain HTTP on loopback, keeps jobs in memory and moves them through their phases by the
time of an injectable clock. Faults are injected on demand (500s, 429s, latency, "created but
the answer was lost", and Creates carried out late) so tests can prove that dropzone submits each
input exactly once; the inspection endpoint counts what the faults did. Other faults give answers
the platform may give and the default never does: job objects with both model fields, and jobs
in a phase this API version does not document.

Layers, from the inside out:

- pure functions: request validation (``parse_create``, ``parse_list``), the lifecycle
  (``phase_at``), list filtering (``job_matches``), the signature check (``authenticate``) and
  the fault decision (``fault_for``); they take values, including ``now``, and return values;
- ``JobBook``: the jobs and per-input Create counts, with no clock, randomness or I/O of its own;
- ``_Engine``: one lock around the book, the fault dice and the keys; turns a received request
  into a reply;
- the stdlib HTTP server and ``Emulator``, which owns its lifetime; ``command`` for the CLI.
"""

from __future__ import annotations

import argparse
import errno
import hmac
import json
import math
import os
import random
import re
import signal
import string
import sys
import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import parse_qsl, urlsplit

from dropzone.ark import errors, signer
from dropzone.ark.emulator_inputs import (
    UNSEEN,
    InputReader,
    InputSeen,
    folder_reader,
    s3_reader,
    seen_through,
)
from dropzone.ark.models import API_VERSION, Phase

if TYPE_CHECKING:
    import socket
    from collections.abc import Callable, Collection, Iterable, Mapping
    from types import FrameType

Json = dict[str, object]

SERVICE = "ark"
DEFAULT_REGION = "cn-beijing"
MAX_SKEW_S = 900.0
STATE_PATH = "/_emulator/state"
DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 100
MAX_PORT = 65535
DEFAULT_COMPLETION_WINDOW = "28d"
CREATED_BY_TAG = "sys:ark:createdBy"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
REQUIRED_SIGNED = frozenset({"host", "x-date", "x-content-sha256"})
# The platform's guard wording is unpublished; tests vary these to prove dropzone copes.
GUARD_CODE = "OperationDenied.ActiveJobExists"
GUARD_MESSAGE = "A batch inference job with the same input file is already active: {job_id}"
BANNER = (
    "dropzone Ark emulator: a local stand-in for development and trial, "
    "not the real Ark service; listening on {url}"
)

CREATE = "CreateBatchInferenceJob"
GET = "GetBatchInferenceJob"
LIST = "ListBatchInferenceJobs"
STOP = "StopBatchInferenceJob"
SHORT_ACTIONS = {"Create": CREATE, "Get": GET, "List": LIST, "Stop": STOP}

_NAME = re.compile(r"[0-9A-Za-z_\u3400-\u4dbf\u4e00-\u9fff-]{1,200}")
_WINDOW = re.compile(r"([1-9]|1[0-9]|2[0-8])d")
_ID_ALPHABET = string.ascii_lowercase + string.digits
_SIGNATURE_MESSAGE = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your Secret Access Key and signing method."
)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- errors ------------------------------------------------------------------------------------


class ApiError(Exception):
    """An error answer as the gateway or Ark would send it: HTTP status, Code and Message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def _missing(field: str) -> ApiError:
    return ApiError(400, f"MissingParameter.{field}", f"The parameter {field} is required.")


def _invalid(field: str, why: str) -> ApiError:
    return ApiError(400, f"InvalidParameter.{field}", f"The parameter {field} is invalid: {why}.")


def _unauthorized(code: str, message: str) -> ApiError:
    return ApiError(401, code, message)


# --- configuration values ----------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """How long a new job stays in each phase, in seconds of the emulator's clock."""

    queue_s: float = 2.0
    run_s: float = 10.0
    stop_s: float = 1.0


@dataclass(frozen=True)
class Guard:
    """The wording of the idempotency guard's refusal (the real one is unpublished)."""

    status: int = 400
    code: str = GUARD_CODE
    message: str = GUARD_MESSAGE

    def error(self, job_id: str) -> ApiError:
        return ApiError(self.status, self.code, self.message.format(job_id=job_id))


@dataclass(frozen=True)
class UnknownPhase:
    """Jobs (``job_id``, or every job when None) report ``phase``, a name the API version does
    not document, until ``until`` (the emulator's clock), then go on with their own phase.
    A job that has ended meanwhile shows its end: only phases under way are replaced."""

    phase: str
    until: datetime
    job_id: str | None = None

    def __post_init__(self) -> None:
        if not self.phase or self.phase in {known.value for known in Phase}:
            raise ValueError(f"give a phase name Phase does not know, got {self.phase!r}")


@dataclass(frozen=True)
class Faults:
    """Rates (0 to 1) of injected faults, and latency added to every API request.

    ``slow_create_rate`` of Create requests are held ``slow_create_s`` seconds before they are
    carried out, as by a platform slow to commit: the job appears only then, and the client may
    have given up waiting meanwhile. ``both_model_fields``: Get and List show each job's
    ``ModelReference`` with both fields, the one not given empty, as sibling Ark APIs answer.
    ``unknown_phase``: jobs shown in an undocumented phase for a while.
    """

    fail_rate: float = 0.0
    throttle_rate: float = 0.0
    lose_answer_rate: float = 0.0
    latency_ms: int = 0
    slow_create_rate: float = 0.0
    slow_create_s: float = 0.0
    both_model_fields: bool = False
    unknown_phase: UnknownPhase | None = None

    def __post_init__(self) -> None:
        for name in ("fail_rate", "throttle_rate", "lose_answer_rate", "slow_create_rate"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {rate}")
        for name in ("latency_ms", "slow_create_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")


# --- Create: validation ------------------------------------------------------------------------


@dataclass(frozen=True)
class Location:
    bucket: str
    key: str

    def wire(self) -> Json:
        return {"BucketName": self.bucket, "ObjectKey": self.key}


@dataclass(frozen=True)
class CreateSpec:
    """A validated CreateBatchInferenceJob body."""

    name: str
    model_reference: Json
    input: Location
    output: Location
    project: str
    description: str | None
    completion_window: str
    tags: tuple[tuple[str, str], ...]
    dry_run: bool


def parse_create(body: Mapping[str, object]) -> CreateSpec:
    """Validate a Create body, field by field in the documented order; raises ApiError."""
    return CreateSpec(
        name=_name(body.get("Name")),
        model_reference=_model_reference(body.get("ModelReference")),
        input=_location(body.get("InputFileTosLocation"), "InputFileTosLocation"),
        output=_output_location(body.get("OutputDirTosLocation")),
        project=_optional_text(body.get("ProjectName"), "ProjectName") or "default",
        description=_description(body.get("Description")),
        completion_window=_completion_window(body.get("CompletionWindow")),
        tags=_tags(body.get("Tags")),
        dry_run=body.get("DryRun") is True,
    )


def _required_text(value: object, field: str) -> str:
    if value is None:
        raise _missing(field)
    if not isinstance(value, str) or not value:
        raise _invalid(field, "must be a non-empty string")
    return value


def _optional_text(value: object, field: str) -> str | None:
    return None if value is None else _required_text(value, field)


def _object(value: object, field: str) -> dict[str, object]:
    if value is None:
        raise _missing(field)
    if not isinstance(value, dict):
        raise _invalid(field, "must be an object")
    return value


def _name(value: object) -> str:
    if value is None:
        raise _missing("Name")
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise _invalid("Name", "use 1 to 200 letters, digits, Chinese characters, '-' or '_'")
    return value


def _model_reference(value: object) -> Json:
    reference = _object(value, "ModelReference")
    foundation = reference.get("FoundationModel")
    custom = reference.get("CustomModelId")
    if (foundation is None) == (custom is None):
        raise _invalid("ModelReference", "give exactly one of FoundationModel or CustomModelId")
    if custom is not None:
        return {"CustomModelId": _required_text(custom, "ModelReference.CustomModelId")}
    model = _object(foundation, "ModelReference.FoundationModel")
    wire: Json = {"Name": _required_text(model.get("Name"), "ModelReference.FoundationModel.Name")}
    version = _optional_text(
        model.get("ModelVersion"), "ModelReference.FoundationModel.ModelVersion"
    )
    if version is not None:
        wire["ModelVersion"] = version
    return {"FoundationModel": wire}


def _location(value: object, field: str) -> Location:
    location = _object(value, field)
    return Location(
        _required_text(location.get("BucketName"), f"{field}.BucketName"),
        _required_text(location.get("ObjectKey"), f"{field}.ObjectKey"),
    )


def _output_location(value: object) -> Location:
    location = _location(value, "OutputDirTosLocation")
    if not location.key.endswith("/"):
        raise _invalid("OutputDirTosLocation.ObjectKey", "must be a folder prefix ending in '/'")
    return location


def _description(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= 300:
        raise _invalid("Description", "must be 1 to 300 characters")
    return value


def _completion_window(value: object) -> str:
    if value is None:
        return DEFAULT_COMPLETION_WINDOW
    if not isinstance(value, str) or not _WINDOW.fullmatch(value):
        raise _invalid("CompletionWindow", "must be whole days from '1d' to '28d'")
    return value


def _tags(value: object) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _invalid("Tags", "must be a list of {Key, Value}")
    tags = tuple(_tag(item) for item in value)
    seen: set[str] = set()
    for key, _ in tags:
        if key in seen:
            raise ApiError(400, "Duplicate.Tags.Key", f"The tag key {key!r} is repeated.")
        seen.add(key)
    return tags


def _tag(item: object) -> tuple[str, str]:
    tag = _object(item, "Tags")
    key = _required_text(tag.get("Key"), "Tags.Key")
    if key.startswith("sys:"):
        raise _invalid("Tags.Key", "the 'sys:' prefix is reserved for the platform")
    value = tag.get("Value", "")
    if not isinstance(value, str):
        raise _invalid("Tags.Value", "must be a string")
    return key, value


def named_input(body: Mapping[str, object]) -> str | None:
    """``bucket/key`` of the input a Create body names, read leniently (even if it is invalid)."""
    location = body.get("InputFileTosLocation")
    if not isinstance(location, dict):
        return None
    bucket, key = location.get("BucketName"), location.get("ObjectKey")
    if isinstance(bucket, str) and isinstance(key, str):
        return f"{bucket}/{key}"
    return None


# --- the lifecycle -----------------------------------------------------------------------------


@dataclass(frozen=True)
class JobRecord:
    id: str
    owner: str
    seq: int
    spec: CreateSpec
    created_at: datetime
    timing: Timing
    stopped_at: datetime | None = None
    seen: InputSeen = UNSEEN

    @property
    def queued_until(self) -> datetime:
        return self.created_at + timedelta(seconds=self.timing.queue_s)

    @property
    def running_until(self) -> datetime:
        return self.queued_until + timedelta(seconds=self.timing.run_s)

    @property
    def expires_at(self) -> datetime:
        return self.created_at + timedelta(days=int(self.spec.completion_window[:-1]))


@dataclass(frozen=True)
class PhaseView:
    phase: Phase
    since: datetime
    message: str
    completed: int


def progress(job: JobRecord, moment: datetime) -> int:
    """Requests completed by ``moment``: none while queued, then evenly over the run."""
    total = job.seen.requests or 0
    if moment >= job.running_until:
        return total
    elapsed = (moment - job.queued_until).total_seconds()
    if elapsed <= 0:
        return 0
    return min(total, int(total * elapsed / job.timing.run_s))


def _interruption(job: JobRecord) -> tuple[datetime, str] | None:
    """When and why the job leaves its natural course (a Stop or the completion window)."""
    candidates = []
    if job.stopped_at is not None:
        candidates.append((job.stopped_at, "stopped by the user"))
    if job.expires_at < job.running_until:
        candidates.append((job.expires_at, "the completion window expired"))
    return min(candidates, default=None)


def phase_at(job: JobRecord, now: datetime) -> PhaseView:
    """The job's phase at ``now``: Queued, Running, Completed, or Terminating then Terminated;
    Failed once out of the queue when its input file is missing."""
    interruption = _interruption(job)
    # The platform reads the input when the job leaves the queue; a missing one fails it then.
    fails = job.seen.missing and (interruption is None or interruption[0] > job.queued_until)
    if fails and now >= job.queued_until:
        location = f"{job.spec.input.bucket}/{job.spec.input.key}"
        return PhaseView(
            Phase.FAILED, job.queued_until, f"The input file {location} is missing.", 0
        )
    if interruption is not None and now >= interruption[0]:
        at, why = interruption
        done = progress(job, at)
        ended = at + timedelta(seconds=job.timing.stop_s)
        if now < ended:
            return PhaseView(Phase.TERMINATING, at, why, done)
        return PhaseView(Phase.TERMINATED, ended, why, done)
    if now < job.queued_until:
        return PhaseView(Phase.QUEUED, job.created_at, "", 0)
    if now < job.running_until:
        return PhaseView(Phase.RUNNING, job.queued_until, "", progress(job, now))
    return PhaseView(Phase.COMPLETED, job.running_until, "", job.seen.requests or 0)


def job_view(job: JobRecord, now: datetime, *, detailed: bool = False) -> Json:
    """The job object as Get (``detailed``) or List answers it."""
    view = phase_at(job, now)
    spec = job.spec
    document: Json = {
        "Id": job.id,
        "Name": spec.name,
        "Description": spec.description or "",
        "ProjectName": spec.project,
        "ModelReference": spec.model_reference,
        "InputFileTosLocation": spec.input.wire(),
        "OutputDirTosLocation": spec.output.wire(),
        "CompletionWindow": spec.completion_window,
        "Status": {
            "Phase": view.phase.value,
            "PhaseTime": rfc3339(view.since),
            "Message": view.message,
        },
        "Tags": [{"Key": key, "Value": value} for key, value in _all_tags(job)],
        "CreateTime": rfc3339(job.created_at),
        "UpdateTime": rfc3339(view.since),
        "ExpireTime": rfc3339(job.expires_at),
    }
    if job.seen.requests is not None:
        document["RequestCounts"] = {
            "Total": job.seen.requests,
            "Completed": view.completed,
            "Failed": 0,
        }
    if detailed:
        error_dir = Location(spec.output.bucket, f"{spec.output.key}{job.id}/error/")
        document["ErrorFileTosLocation"] = error_dir.wire()
        document["TokenUsage"] = {"PromptTokens": 0, "CompletionTokens": 0, "TotalTokens": 0}
    return document


def _all_tags(job: JobRecord) -> tuple[tuple[str, str], ...]:
    return (*job.spec.tags, (CREATED_BY_TAG, job.owner))


# --- List: the query and its filters -----------------------------------------------------------


@dataclass(frozen=True)
class ListQuery:
    project: str = "default"
    page_number: int = 1
    page_size: int = DEFAULT_PAGE_SIZE
    descending: bool = True
    ids: frozenset[str] | None = None
    name: str | None = None
    phases: frozenset[Phase] | None = None
    custom_model_ids: frozenset[str] | None = None
    foundation_models: tuple[tuple[str, frozenset[str]], ...] | None = None
    tag_filters: tuple[tuple[str, frozenset[str]], ...] = ()


def parse_list(body: Mapping[str, object]) -> ListQuery:
    """Validate a List body; raises ApiError."""
    criteria = _list_filter(body.get("Filter"))
    return ListQuery(
        project=_optional_text(body.get("ProjectName"), "ProjectName") or "default",
        page_number=_bounded_int(body.get("PageNumber"), "PageNumber", 1, None),
        page_size=_bounded_int(body.get("PageSize"), "PageSize", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
        descending=_descending(body.get("SortBy"), body.get("SortOrder")),
        ids=_text_set(criteria.get("Ids"), "Filter.Ids"),
        name=_optional_text(criteria.get("Name"), "Filter.Name"),
        phases=_phases(criteria.get("Phases")),
        custom_model_ids=_text_set(criteria.get("CustomModelIds"), "Filter.CustomModelIds"),
        foundation_models=_foundation_filters(criteria.get("FoundationModels")),
        tag_filters=_tag_filters(body.get("TagFilters")),
    )


def _list_filter(value: object) -> dict[str, object]:
    return {} if value is None else _object(value, "Filter")


def _bounded_int(value: object, field: str, default: int, maximum: int | None) -> int:
    if value is None:
        return default
    # bool is an int in Python, not in JSON.
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise _invalid(field, "must be a positive integer")
    if maximum is not None and value > maximum:
        raise _invalid(field, f"must be at most {maximum}")
    return value


def _descending(sort_by: object, sort_order: object) -> bool:
    if sort_by not in {None, "CreateTime"}:
        raise _invalid("SortBy", "only CreateTime is supported")
    if sort_order not in {None, "Asc", "Desc"}:
        raise _invalid("SortOrder", "must be Asc or Desc")
    return sort_order != "Asc"


def _text_list(value: object, field: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _invalid(field, "must be a list of strings")
    return value


def _text_set(value: object, field: str) -> frozenset[str] | None:
    items = _text_list(value, field)
    # An empty list filters nothing out, as an absent one.
    return frozenset(items) if items else None


def _phases(value: object) -> frozenset[Phase] | None:
    names = _text_set(value, "Filter.Phases")
    if names is None:
        return None
    known = {phase.value for phase in Phase}
    unknown = sorted(names - known)
    if unknown:
        raise _invalid("Filter.Phases", f"unknown phase {unknown[0]!r}")
    return frozenset(Phase(name) for name in names)


def _key_values(item: object, field: str, names: tuple[str, str]) -> tuple[str, frozenset[str]]:
    """A ``{Key, Values}``-like entry: ``names`` are its key and values field names."""
    entry = _object(item, field)
    key_name, values_name = names
    key = _required_text(entry.get(key_name), f"{field}.{key_name}")
    values = _text_list(entry.get(values_name), f"{field}.{values_name}") or []
    return key, frozenset(values)


def _foundation_filters(value: object) -> tuple[tuple[str, frozenset[str]], ...] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise _invalid("Filter.FoundationModels", "must be a list")
    return (
        tuple(
            _key_values(item, "Filter.FoundationModels", ("Name", "ModelVersions"))
            for item in value
        )
        or None
    )


def _tag_filters(value: object) -> tuple[tuple[str, frozenset[str]], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _invalid("TagFilters", "must be a list of {Key, Values}")
    return tuple(_key_values(item, "TagFilters", ("Key", "Values")) for item in value)


def _tag_matches(tags: Iterable[tuple[str, str]], key: str, values: frozenset[str]) -> bool:
    # Without Values, a tag filter asks only that the key be present.
    return any(tag_key == key and (not values or value in values) for tag_key, value in tags)


def _model_matches(reference: Json, query: ListQuery) -> bool:
    custom = reference.get("CustomModelId")
    if query.custom_model_ids is not None and custom not in query.custom_model_ids:
        return False
    if query.foundation_models is None:
        return True
    model = reference.get("FoundationModel")
    if not isinstance(model, dict):
        return False
    name, version = model.get("Name"), model.get("ModelVersion")
    return any(
        name == wanted and (not versions or version in versions)
        for wanted, versions in query.foundation_models
    )


def job_matches(job: JobRecord, phase: Phase, query: ListQuery) -> bool:
    """Whether a job passes every filter of a List query."""
    spec = job.spec
    checks = (
        spec.project == query.project,
        query.ids is None or job.id in query.ids,
        query.name is None or query.name in spec.name,
        query.phases is None or phase in query.phases,
        _model_matches(spec.model_reference, query),
    )
    tags = _all_tags(job)
    return all(checks) and all(_tag_matches(tags, key, values) for key, values in query.tag_filters)


def list_page(jobs: Iterable[JobRecord], query: ListQuery, now: datetime) -> Json:
    """The List Result: matching jobs sorted by creation, one page of them."""
    matching = [job for job in jobs if job_matches(job, phase_at(job, now).phase, query)]
    matching.sort(key=lambda job: (job.created_at, job.seq), reverse=query.descending)
    start = (query.page_number - 1) * query.page_size
    items = matching[start : start + query.page_size]
    return {
        "TotalCount": len(matching),
        "PageNumber": query.page_number,
        "PageSize": query.page_size,
        "Items": [job_view(job, now) for job in items],
    }


# --- the book of jobs --------------------------------------------------------------------------


@dataclass(frozen=True)
class Created:
    """Create's Result, and whether a job was really created (a dry run creates none)."""

    result: Json
    job_id: str | None


class JobBook:
    """The jobs and the Create calls per input.

    No clock, randomness or I/O of its own: ``now`` comes with every call and job ID suffixes
    from ``suffix``. Not thread-safe: the engine holds its lock around every call.
    """

    def __init__(
        self,
        timing: Timing,
        guard: Guard,
        suffix: Callable[[], str],
        known_models: frozenset[str] | None = None,
        max_tag_values: int | None = None,
    ) -> None:
        """``max_tag_values``: a List whose TagFilters name more values than this is refused
        (the platform publishes no limit; None: none)."""
        self.timing = timing
        self.guard = guard
        self._suffix = suffix
        self._known_models = known_models
        self._max_tag_values = max_tag_values
        self._jobs: dict[str, JobRecord] = {}
        self._create_calls: dict[str, int] = {}

    def count_create_call(self, body: Mapping[str, object]) -> None:
        named = named_input(body)
        if named is not None:
            self._create_calls[named] = self._create_calls.get(named, 0) + 1

    def create(
        self, owner: str, body: Mapping[str, object], now: datetime, seen: InputSeen = UNSEEN
    ) -> Created:
        """``seen``: what the engine found at the named input (the book reads nothing)."""
        spec = parse_create(body)
        self._check_model(spec.model_reference)
        active = self._active_job(owner, spec, now)
        if active is not None:
            raise self.guard.error(active.id)
        if spec.dry_run:
            return Created({}, None)
        job = JobRecord(
            self._new_id(now), owner, len(self._jobs), spec, now, self.timing, seen=seen
        )
        self._jobs[job.id] = job
        return Created({"Id": job.id}, job.id)

    def _check_model(self, reference: Json) -> None:
        # The platform refuses a foundation model it does not offer; an emulator given a
        # catalogue does the same, so a permanent refusal can be shown end to end.
        foundation = reference.get("FoundationModel")
        if self._known_models is None or not isinstance(foundation, dict):
            return
        name = foundation.get("Name")
        if name not in self._known_models:
            raise ApiError(
                404,
                "NotFound.ModelReference.FoundationModel",
                f"The foundation model {name} was not found.",
            )

    def get(self, owner: str, body: Mapping[str, object], now: datetime) -> Json:
        return job_view(self._owned(owner, body), now, detailed=True)

    def list(self, owner: str, body: Mapping[str, object], now: datetime) -> Json:
        query = parse_list(body)
        values = sum(len(values) for _, values in query.tag_filters)
        if self._max_tag_values is not None and values > self._max_tag_values:
            raise _invalid("TagFilters.Values", f"at most {self._max_tag_values} values")
        return list_page((job for job in self._jobs.values() if job.owner == owner), query, now)

    def stop(self, owner: str, body: Mapping[str, object], now: datetime) -> Json:
        job = self._owned(owner, body)
        phase = phase_at(job, now).phase
        if not phase.is_active:
            raise ApiError(
                403,
                "OperationDenied.UnsupportedPhase",
                f"The job {job.id} is {phase.value}; only Queued or Running jobs can be stopped.",
            )
        self._jobs[job.id] = replace(job, stopped_at=now)
        return {}

    def snapshot(self, now: datetime) -> Json:
        jobs = sorted(self._jobs.values(), key=lambda job: job.seq)
        return {
            "jobs": [job_view(job, now, detailed=True) for job in jobs],
            "create_calls": dict(self._create_calls),
        }

    def _active_job(self, owner: str, spec: CreateSpec, now: datetime) -> JobRecord | None:
        holders = (job for job in self._jobs.values() if _same_input(job, owner, spec))
        return next((job for job in holders if phase_at(job, now).phase.is_active), None)

    def _new_id(self, now: datetime) -> str:
        while True:
            job_id = f"bi-{now.astimezone(UTC):%Y%m%d%H%M%S}-{self._suffix()}"
            if job_id not in self._jobs:
                return job_id

    def _owned(self, owner: str, body: Mapping[str, object]) -> JobRecord:
        job_id = _required_text(body.get("Id"), "Id")
        job = self._jobs.get(job_id)
        # Another account's job is as invisible as one that never existed.
        if job is None or job.owner != owner:
            raise ApiError(404, "NotFound.Id", f"The batch inference job {job_id} was not found.")
        return job


def _same_input(job: JobRecord, owner: str, spec: CreateSpec) -> bool:
    """The guard's key: the same account, project, bucket and object key."""
    return (job.owner, job.spec.project, job.spec.input) == (owner, spec.project, spec.input)


def dispatch(
    book: JobBook,
    owner: str,
    action: str,
    body: Mapping[str, object],
    now: datetime,
    seen: InputSeen = UNSEEN,
) -> Created:
    """Run one authenticated action against the book; raises ApiError."""
    if action == CREATE:
        return book.create(owner, body, now, seen)
    handlers = {GET: book.get, LIST: book.list, STOP: book.stop}
    handler = handlers.get(action)
    if handler is None:
        raise _unknown_action(action, API_VERSION)
    return Created(handler(owner, body, now), None)


def _unknown_action(action: str, version: str) -> ApiError:
    return ApiError(
        404,
        "InvalidActionOrVersion",
        f"Could not find operation {action or '(none)'} for version {version or '(none)'}.",
    )


# --- authentication ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """An HTTP request as it arrived: header names lower-cased, query pairs decoded."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    headers: Mapping[str, str]
    body: bytes

    def query_value(self, name: str) -> str:
        return next((value for key, value in self.query if key == name), "")


def authenticate(request: Received, secrets: Mapping[str, str], now: datetime, region: str) -> str:
    """Check a request's Volcengine signature; returns the access key or raises ApiError."""
    auth = _parse_authorization(request.headers.get("authorization"))
    secret = secrets.get(auth.access_key)
    if secret is None:
        raise _unauthorized("InvalidAccessKey", "The access key is not recognised.")
    _check_signed_names(auth, request.headers)
    x_date = _check_timestamp(request.headers, now)
    _check_scope(auth, x_date, region)
    _check_body_hash(request)
    _check_signature(request, auth, secret)
    return auth.access_key


def _parse_authorization(value: str | None) -> signer.ParsedAuthorization:
    if not value:
        raise _unauthorized("MissingAuthenticationToken", "The request is not signed.")
    try:
        return signer.parse_authorization(value)
    except ValueError as exc:
        raise _unauthorized("InvalidAuthorization", f"Malformed Authorization: {exc}.") from exc


def _check_signed_names(auth: signer.ParsedAuthorization, headers: Mapping[str, str]) -> None:
    names = set(auth.signed_header_names)
    required = set(REQUIRED_SIGNED)
    if "x-security-token" in headers:
        required.add("x-security-token")
    missing = sorted(required - names)
    if missing:
        raise _unauthorized(
            "InvalidAuthorization", f"SignedHeaders must include {', '.join(missing)}."
        )
    absent = sorted(name for name in names if name not in headers)
    if absent:
        raise _unauthorized("SignatureDoesNotMatch", f"Signed header {absent[0]} was not sent.")


def _check_timestamp(headers: Mapping[str, str], now: datetime) -> str:
    x_date = headers["x-date"]
    try:
        sent = signer.parse_x_date(x_date)
    except ValueError as exc:
        raise ApiError(400, "InvalidTimestamp", f"Malformed X-Date {x_date!r}.") from exc
    if abs((sent - now).total_seconds()) > MAX_SKEW_S:
        raise ApiError(
            400,
            "InvalidTimestamp",
            f"The request time {x_date} is more than {MAX_SKEW_S:.0f} s from the server time "
            f"{signer.format_x_date(now)}.",
        )
    return x_date


def _check_scope(auth: signer.ParsedAuthorization, x_date: str, region: str) -> None:
    expected = (x_date[:8], region, SERVICE)
    if (auth.date, auth.region, auth.service) != expected:
        raise _unauthorized(
            "SignatureDoesNotMatch",
            f"The credential scope {auth.date}/{auth.region}/{auth.service} does not match "
            f"{'/'.join(expected)}.",
        )


def _check_body_hash(request: Received) -> None:
    declared = request.headers["x-content-sha256"].strip().lower()
    if not hmac.compare_digest(declared, signer.sha256_hex(request.body)):
        raise _unauthorized("SignatureDoesNotMatch", "X-Content-Sha256 does not match the body.")


def _check_signature(request: Received, auth: signer.ParsedAuthorization, secret: str) -> None:
    signed = {name: request.headers[name] for name in auth.signed_header_names}
    expected, _ = signer.signature(
        signer.Credentials(auth.access_key, secret),
        signer.SigningInput(
            request.method, request.path, request.query, signed, request.body, auth.region, SERVICE
        ),
    )
    if not hmac.compare_digest(expected, auth.signature.lower()):
        raise _unauthorized("SignatureDoesNotMatch", _SIGNATURE_MESSAGE)


# --- faults ------------------------------------------------------------------------------------


def fault_for(faults: Faults, draw: Callable[[], float]) -> ApiError | None:
    """The injected error for one request, if any (throttling is drawn first)."""
    if draw() < faults.throttle_rate:
        return ApiError(429, "FlowLimitExceeded", "Request rate exceeded the flow limit.")
    if draw() < faults.fail_rate:
        return ApiError(500, "InternalError", "The service met an internal error.")
    return None


LOST_503 = ApiError(503, "ServiceUnavailableTemp", "The service is temporarily unavailable.")


def as_faults_show(action: str, result: Json, faults: Faults, now: datetime) -> Json:
    """A Get or List Result with the job objects as the answer faults show them."""
    if action == GET:
        return _shown_job(result, faults, now)
    items = result.get("Items")
    if action != LIST or not isinstance(items, list):
        return result
    return {**result, "Items": [_shown_job(item, faults, now) for item in items]}


def _shown_job(job: Json, faults: Faults, now: datetime) -> Json:
    shown = dict(job)
    reference = job.get("ModelReference")
    if faults.both_model_fields and isinstance(reference, dict):
        shown["ModelReference"] = {
            "FoundationModel": {"Name": "", "ModelVersion": ""},
            "CustomModelId": "",
            **reference,
        }
    status, hidden = job.get("Status"), faults.unknown_phase
    if (
        isinstance(status, dict)
        and hidden is not None
        and now < hidden.until
        and hidden.job_id in {None, job.get("Id")}
        and not Phase(str(status["Phase"])).is_terminal
    ):
        shown["Status"] = {**status, "Phase": hidden.phase}
    return shown


# --- the engine: state under one lock ----------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """An answer to send; ``document`` None means close the connection without one."""

    status: int
    document: Json | None


def _envelope(meta: Json, result: Json) -> Json:
    return {"ResponseMetadata": meta, "Result": result}


def _error_envelope(meta: Json, error: ApiError) -> Json:
    return {"ResponseMetadata": {**meta, "Error": {"Code": error.code, "Message": error.message}}}


@dataclass
class FaultCounts:
    """What the faults did, for the inspection endpoint. Not thread-safe: the engine's lock."""

    lost_answers: int = 0
    slowed_creates: int = 0
    slowed_creates_under_way: int = 0

    def snapshot(self) -> Json:
        return {
            "lost_answers": self.lost_answers,
            "slowed_creates": self.slowed_creates,
            "slowed_creates_under_way": self.slowed_creates_under_way,
        }


@dataclass(frozen=True)
class _Hooks:
    """Where the engine reaches outside itself: a moment as each Create arrives, and a store
    to read Create inputs from."""

    on_create_received: Callable[[], None] | None = None
    read_input: InputReader | None = None


class _Engine:
    """Everything the HTTP handlers share: keys, faults, the book and the dice, under one lock."""

    def __init__(
        self,
        keys: Mapping[str, str],
        book_of: Callable[[Callable[[], str]], JobBook],
        faults: Faults,
        seed: int | None,
        clock: Callable[[], datetime],
        region: str,
        hooks: _Hooks,
    ) -> None:
        self._lock = threading.Lock()
        self._read_input = hooks.read_input
        self._keys = dict(keys)
        self._faults = faults
        self._random = random.Random(seed)  # noqa: S311 - fault injection, not cryptography
        self._clock = clock
        self._region = region
        self._on_create_received = hooks.on_create_received
        self._requests = 0
        self._counts = FaultCounts()
        self._refusals: dict[str, ApiError] = {}
        self._calls: dict[str, int] = {}  # signed calls by action, answered or refused
        self.book = book_of(self._suffix)

    def now(self) -> datetime:
        moment = self._clock()
        if moment.tzinfo is None:
            raise ValueError("the emulator's clock must return aware datetimes")
        return moment.astimezone(UTC)

    def add_key(self, access_key: str, secret_key: str) -> None:
        with self._lock:
            self._keys[access_key] = secret_key

    def refuse(self, actions: Iterable[str], error: ApiError | None) -> None:
        with self._lock:
            for action in actions:
                if error is None:
                    self._refusals.pop(action, None)
                else:
                    self._refusals[action] = error

    def update_faults(self, change: Callable[[Faults], Faults]) -> Faults:
        with self._lock:
            self._faults = change(self._faults)
            return self._faults

    def state(self) -> Json:
        now = self.now()
        with self._lock:
            return {
                **self.book.snapshot(now),
                **self._counts.snapshot(),
                "calls": dict(self._calls),
            }

    def api(self, request: Received) -> Reply:
        """Answer one API request (any method and path other than the inspection endpoint)."""
        is_create = request.query_value("Action") == CREATE
        if is_create and self._on_create_received is not None:
            self._on_create_received()
        with self._lock:
            latency_ms = self._faults.latency_ms
            slow_s = self._slow_create_s() if is_create else None
        if latency_ms:
            time.sleep(latency_ms / 1000)
        if slow_s is None:
            return self._carry_out(request)
        time.sleep(slow_s)
        try:
            return self._carry_out(request)
        finally:
            with self._lock:
                self._counts.slowed_creates_under_way -= 1

    def _slow_create_s(self) -> float | None:
        """How long to hold this Create, if it is one to slow; counts it. Under the lock."""
        rate = self._faults.slow_create_rate
        # No draw while the fault is off, so seeded runs without it replay as before it existed.
        if rate <= 0 or self._random.random() >= rate:
            return None
        self._counts.slowed_creates += 1
        self._counts.slowed_creates_under_way += 1
        return self._faults.slow_create_s

    def _carry_out(self, request: Received) -> Reply:
        now = self.now()
        action, version = request.query_value("Action"), request.query_value("Version")
        meta = self._metadata(now, action, version)
        try:
            created = self._answer(request, action, version, now)
        except ApiError as error:
            return Reply(error.status, _error_envelope(meta, error))
        if created.job_id is not None and self._lose_answer():
            return self._lost(meta)
        with self._lock:
            faults = self._faults
        return Reply(200, _envelope(meta, as_faults_show(action, created.result, faults, now)))

    def _answer(self, request: Received, action: str, version: str, now: datetime) -> Created:
        if request.method != "POST" or request.path != "/" or version != API_VERSION:
            raise _unknown_action(action, version)
        if action not in {CREATE, GET, LIST, STOP}:
            raise _unknown_action(action, version)
        with self._lock:
            keys = dict(self._keys)
        owner = authenticate(request, keys, now, self._region)
        body = _json_body(request.body)
        # Read outside the lock: a slow store must not hold up other calls.
        seen = self._input_seen(body) if action == CREATE else UNSEEN
        with self._lock:
            self._calls[action] = self._calls.get(action, 0) + 1
            if action == CREATE:
                self.book.count_create_call(body)
            refusal = self._refusals.get(action)
            if refusal is not None:
                raise refusal
            fault = fault_for(self._faults, self._random.random)
            if fault is not None:
                raise fault
            return dispatch(self.book, owner, action, body, now, seen)

    def _input_seen(self, body: Mapping[str, object]) -> InputSeen:
        named = named_input(body)
        if named is None:
            return UNSEEN
        bucket, key = named.split("/", 1)
        return seen_through(self._read_input, bucket, key)

    def _lose_answer(self) -> bool:
        with self._lock:
            lost = self._random.random() < self._faults.lose_answer_rate
            if lost:
                self._counts.lost_answers += 1
            return lost

    def _lost(self, meta: Json) -> Reply:
        with self._lock:
            as_503 = self._random.random() < 0.5
        if as_503:
            return Reply(LOST_503.status, _error_envelope(meta, LOST_503))
        return Reply(0, None)

    def _metadata(self, now: datetime, action: str, version: str) -> Json:
        with self._lock:
            self._requests += 1
            number = self._requests
        return {
            # Shaped like the platform's: a timestamp, then 20 upper-case hex digits.
            "RequestId": f"{now:%Y%m%d%H%M%S}{number:020X}",
            "Action": action,
            "Version": version,
            "Service": SERVICE,
            "Region": self._region,
        }

    def _suffix(self) -> str:
        # Called by the book, so always under the lock already.
        return "".join(self._random.choice(_ID_ALPHABET) for _ in range(5))


def _json_body(body: bytes) -> dict[str, object]:
    if not body.strip():
        return {}
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise ApiError(400, "InvalidParameter", "The request body is not valid JSON.") from exc
    if not isinstance(document, dict):
        raise ApiError(400, "InvalidParameter", "The request body must be a JSON object.")
    return document


# --- HTTP --------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    # Handler threads must not keep a stopping process alive on an idle keep-alive connection.
    daemon_threads = True

    def __init__(self, address: tuple[str, int], engine: _Engine) -> None:
        super().__init__(address, _Handler)
        self.engine = engine

    def handle_error(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: object
    ) -> None:
        # A client that goes away mid-answer (killed on purpose, or tired of waiting for a slow
        # Create) is ordinary here; the stdlib would print a traceback for it.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keeps connections alive, as clients with a pool expect.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: with Nagle on, each answer would wait for
    # the client's delayed ACK (40 ms on Linux).
    disable_nagle_algorithm = True
    server_version = "dropzone-ark-emulator"
    sys_version = ""
    server: _Server

    def do_GET(self) -> None:
        if urlsplit(self.path).path == STATE_PATH:
            self._write(Reply(200, self.server.engine.state()))
        else:
            self._write(self.server.engine.api(self._received(b"")))

    def do_POST(self) -> None:
        length = self.headers.get("Content-Length", "0")
        body = self.rfile.read(int(length)) if length.isdigit() else b""
        self._write(self.server.engine.api(self._received(body)))

    def date_time_string(self, timestamp: float | None = None) -> str:
        # The client measures clock skew from Date: it must come from the emulator's clock.
        del timestamp
        return format_datetime(self.server.engine.now(), usegmt=True)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib's name
        """Requests are not logged: the inspection endpoint shows what happened."""

    def _received(self, body: bytes) -> Received:
        parts = urlsplit(self.path)
        return Received(
            method=self.command,
            path=parts.path or "/",
            query=tuple(parse_qsl(parts.query, keep_blank_values=True)),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
        )

    def _write(self, reply: Reply) -> None:
        if reply.document is None:
            # The lost answer: no status line at all, the connection just ends.
            self.close_connection = True
            return
        data = json.dumps(reply.document, ensure_ascii=False).encode("utf-8")
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class Emulator:
    """The emulator in-process: ``with Emulator("AK", "SK") as ark: ... ark.url ...``."""

    def __init__(  # noqa: PLR0913 - one keyword per independent knob of the stand-in
        self,
        access_key: str,
        secret_key: str,
        *,
        queue_s: float = 2.0,
        run_s: float = 10.0,
        fail_rate: float = 0.0,
        throttle_rate: float = 0.0,
        lose_answer_rate: float = 0.0,
        latency_ms: int = 0,
        slow_create_rate: float = 0.0,
        slow_create_s: float = 0.0,
        seed: int | None = None,
        clock: Callable[[], datetime] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        guard_status: int = 400,
        guard_code: str = GUARD_CODE,
        guard_message: str = GUARD_MESSAGE,
        stop_s: float = 1.0,
        region: str = DEFAULT_REGION,
        known_models: Collection[str] | None = None,
        on_create_received: Callable[[], None] | None = None,
        read_input: InputReader | None = None,
        max_tag_values: int | None = None,
    ) -> None:
        """``on_create_received`` is called on the server's thread as each Create request
        arrives, before its latency, slow-Create hold and signature check: a moment to act at
        while the request is under way (the torture kills a client then).

        ``read_input`` reads a Create's input file (``dropzone.ark.emulator_inputs``): jobs then
        count its request lines in ``RequestCounts`` and fail when it is missing. Without it
        job objects have no ``RequestCounts``.

        ``max_tag_values``: refuse a List whose TagFilters name more values (400
        ``InvalidParameter.TagFilters.Values``), as a platform with such a limit would."""
        timing = Timing(queue_s, run_s, stop_s)
        guard = Guard(guard_status, guard_code, guard_message)
        self._engine = _Engine(
            {access_key: secret_key},
            lambda suffix: JobBook(
                timing,
                guard,
                suffix,
                None if known_models is None else frozenset(known_models),
                max_tag_values,
            ),
            Faults(
                fail_rate,
                throttle_rate,
                lose_answer_rate,
                latency_ms,
                slow_create_rate,
                slow_create_s,
            ),
            seed,
            clock or _utc_now,
            region,
            _Hooks(on_create_received, read_input),
        )
        self._address = (host, port)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        where = self.url if self._server is not None else "not started"
        return f"Emulator({where})"

    def start(self) -> Self:
        """Bind (port 0 picks a free port) and serve on a daemon thread."""
        if self._server is not None:
            raise RuntimeError("the emulator is already started")
        self._server = _Server(self._address, self._engine)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            # A short poll keeps stop() quick; an idle emulator wakes 50 times a second.
            kwargs={"poll_interval": 0.02},
            name="ark-emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def state(self) -> dict[str, Any]:
        """What ``GET /_emulator/state`` answers: all jobs (``jobs``), Create calls per input
        (``create_calls``), and what the faults did: Create answers lost on purpose
        (``lost_answers``), Creates slowed (``slowed_creates``) and those of them not yet carried
        out (``slowed_creates_under_way``)."""
        return self._engine.state()

    def set_faults(
        self,
        *,
        fail_rate: float | None = None,
        throttle_rate: float | None = None,
        lose_answer_rate: float | None = None,
        latency_ms: int | None = None,
        slow_create_rate: float | None = None,
        slow_create_s: float | None = None,
        both_model_fields: bool | None = None,
    ) -> Faults:
        """Change faults while running; None leaves a setting as it is. A Create already held
        keeps its hold."""

        def change(current: Faults) -> Faults:
            return Faults(
                current.fail_rate if fail_rate is None else fail_rate,
                current.throttle_rate if throttle_rate is None else throttle_rate,
                current.lose_answer_rate if lose_answer_rate is None else lose_answer_rate,
                current.latency_ms if latency_ms is None else latency_ms,
                current.slow_create_rate if slow_create_rate is None else slow_create_rate,
                current.slow_create_s if slow_create_s is None else slow_create_s,
                current.both_model_fields if both_model_fields is None else both_model_fields,
                current.unknown_phase,
            )

        return self._engine.update_faults(change)

    def refuse(
        self,
        code: str,
        *,
        status: int,
        message: str = "",
        actions: Iterable[str] = (CREATE,),
    ) -> None:
        """Answer every signed call of ``actions`` with this error, as the platform answers an
        account it refuses (``OperationDenied.ServiceNotOpen``, 403, say), until
        :meth:`stop_refusing`."""
        text = message or f"The request was refused: {code}."
        self._engine.refuse(actions, ApiError(status, code, text))

    def stop_refusing(self, actions: Iterable[str] = (CREATE, GET, LIST, STOP)) -> None:
        self._engine.refuse(actions, None)

    def report_unknown_phase(
        self, phase: str = "Pausing", *, seconds: float, job_id: str | None = None
    ) -> Faults:
        """Show ``job_id`` (every job when None) in ``phase``, a name the API version does not
        document, for ``seconds`` from now by the emulator's clock; replaces an earlier one."""
        if not 0.0 <= seconds < math.inf:
            raise ValueError(f"seconds must be 0 or more, got {seconds}")
        hidden = UnknownPhase(phase, self._engine.now() + timedelta(seconds=seconds), job_id)
        return self._engine.update_faults(lambda current: replace(current, unknown_phase=hidden))

    def add_account(self, access_key: str, secret_key: str) -> None:
        """Accept another key pair: a second account, which sees only its own jobs."""
        self._engine.add_key(access_key, secret_key)


# --- command line ------------------------------------------------------------------------------


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a rate is between 0 and 1, got {text}")
    return value


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > MAX_PORT:
        raise argparse.ArgumentTypeError(f"a port is 0-{MAX_PORT} (0 picks a free one), got {text}")
    return int(text)


def _seconds(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"seconds are a number, 0 or more, got {text}")
    return value


def _not_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number, 0 or more, got {text}")
    return value


def _error_status(text: str) -> int:
    status = int(text)
    if not 400 <= status <= 599:
        raise argparse.ArgumentTypeError(f"an error status is 400..599, got {text}")
    return status


def _actions(text: str) -> tuple[str, ...]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in SHORT_ACTIONS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"actions are {', '.join(SHORT_ACTIONS)} (comma-separated), got {text!r}"
        )
    return tuple(SHORT_ACTIONS[name] for name in names)


def _unknown_phase_name(text: str) -> str:
    if text in {known.value for known in Phase}:
        raise argparse.ArgumentTypeError(f"{text} is a documented phase; give one it is not")
    return text


def _listen_problem(host: str, port: int, exc: OSError) -> str:
    """What to do when the emulator cannot bind ``host:port``, in the words of its options."""
    where = f"cannot listen on {host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"{where}: port {port} is already in use (another emulator?); stop what uses it "
            "or give another --port (--port 0 picks a free one)"
        )
    if exc.errno == errno.EACCES:
        return f"{where}: ports below 1024 need privileges; give --port 1024 or above"
    return f"{where}: {exc.strerror or exc}; check --host and --port"


def _env_first(*names: str) -> str | None:
    return next((os.environ[name] for name in names if os.environ.get(name)), None)


# What `dropzone emulator` offers unless told otherwise: a user's typo in a model name is then
# refused as the platform refuses it, not accepted (the in-process class accepts any name
# unless given ``known_models``, for tests that do not care about models).
CATALOGUE = (
    "doubao-pro-32k",
    "doubao-pro-128k",
    "doubao-lite-32k",
    "doubao-lite-128k",
    "doubao-1-5-pro-32k",
    "deepseek-v3",
    "deepseek-r1",
)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the emulator's options to ``parser`` (the ``dropzone emulator`` sub-command)."""
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    add("--port", type=_port, default=8765, help="port; 0 picks a free one (default: %(default)s)")
    add(
        "--access-key",
        help="the access key to accept (default: $VOLCENGINE_ACCESS_KEY, else $VOLC_ACCESSKEY, "
        "else 'emulator-ak')",
    )
    add(
        "--secret-key",
        help="its secret key (default: $VOLCENGINE_SECRET_KEY, else $VOLC_SECRETKEY, "
        "else 'emulator-sk')",
    )
    add("--region", default=DEFAULT_REGION, help="signing region (default: %(default)s)")
    add("--queue-s", type=_seconds, default=2.0, help="seconds a job stays Queued (default: 2)")
    add("--run-s", type=_seconds, default=10.0, help="seconds a job stays Running (default: 10)")
    add("--fail-rate", type=_rate, default=0.0, help="share of requests answered 500")
    add("--throttle-rate", type=_rate, default=0.0, help="share of requests answered 429")
    add(
        "--lose-answer-rate",
        type=_rate,
        default=0.0,
        help="share of Creates whose job is made but whose answer is lost (503 or a dropped "
        "connection)",
    )
    add("--latency-ms", type=_not_negative_int, default=0, help="delay added to every API request")
    add(
        "--slow-create-rate",
        type=_rate,
        default=0.0,
        help="share of Creates carried out late (the job appears only after --slow-create-s)",
    )
    add(
        "--slow-create-s",
        type=_seconds,
        default=0.0,
        help="how long such a Create is held before it is carried out (default: 0)",
    )
    add(
        "--both-model-fields",
        action="store_true",
        help="show each job's ModelReference with both FoundationModel and CustomModelId, the "
        "one not given empty, as sibling Ark APIs answer",
    )
    add(
        "--unknown-phase",
        type=_unknown_phase_name,
        metavar="NAME",
        help="show every job still under way in this undocumented phase (e.g. Pausing) for "
        "--unknown-phase-s seconds from the start",
    )
    add(
        "--unknown-phase-s",
        type=_seconds,
        default=60.0,
        help="how long jobs show --unknown-phase (default: %(default)s)",
    )
    add(
        "--model",
        action="append",
        metavar="NAME",
        help="a foundation model to offer (repeatable); a Create for another is refused as the "
        f"platform refuses it (default: {', '.join(CATALOGUE)})",
    )
    add("--any-model", action="store_true", help="accept any foundation model name")
    inputs = parser.add_mutually_exclusive_group()
    inputs.add_argument(
        "--inputs-dir",
        type=Path,
        metavar="DIR",
        help="read each job's input file at DIR/<bucket>/<key>: RequestCounts counts its lines "
        "and a missing file fails the job (default: no RequestCounts)",
    )
    inputs.add_argument(
        "--inputs-s3",
        metavar="URL",
        help="read each job's input file from this S3 endpoint (moto, MinIO, TOS) with the "
        "AWS_* credentials of the environment, as --inputs-dir does from a folder",
    )
    add(
        "--refuse",
        metavar="CODE",
        help="answer every call of --refuse-actions with this error code, as the platform "
        "answers an account it refuses (e.g. OperationDenied.ServiceNotOpen); a code dropzone "
        "knows gets the platform's status for it, another needs --refuse-status",
    )
    add("--refuse-status", type=_error_status, metavar="N", help="the status --refuse answers at")
    add(
        "--refuse-actions",
        type=_actions,
        default=(CREATE,),
        metavar="A,B",
        help=f"which actions --refuse answers, of {', '.join(SHORT_ACTIONS)} (default: Create)",
    )
    add("--seed", type=int, default=None, help="seed for faults and job IDs (reproducible runs)")


def _emulator_from(args: argparse.Namespace) -> Emulator:
    """The emulator the options describe; raises CommandUsageError for options at odds."""
    refusal_status = _refusal_status(args)
    access_key = args.access_key or _env_first("VOLCENGINE_ACCESS_KEY", "VOLC_ACCESSKEY")
    secret_key = args.secret_key or _env_first("VOLCENGINE_SECRET_KEY", "VOLC_SECRETKEY")
    emulator = Emulator(
        access_key or "emulator-ak",
        secret_key or "emulator-sk",
        queue_s=args.queue_s,
        run_s=args.run_s,
        fail_rate=args.fail_rate,
        throttle_rate=args.throttle_rate,
        lose_answer_rate=args.lose_answer_rate,
        latency_ms=args.latency_ms,
        slow_create_rate=args.slow_create_rate,
        slow_create_s=args.slow_create_s,
        seed=args.seed,
        host=args.host,
        port=args.port,
        region=args.region,
        known_models=None if args.any_model else (args.model or CATALOGUE),
        read_input=_input_reader_from(args),
    )
    if args.both_model_fields:
        emulator.set_faults(both_model_fields=True)
    if args.unknown_phase:
        emulator.report_unknown_phase(args.unknown_phase, seconds=args.unknown_phase_s)
    if args.refuse is not None and refusal_status is not None:
        emulator.refuse(args.refuse, status=refusal_status, actions=args.refuse_actions)
    return emulator


class CommandUsageError(ValueError):
    """Options that parse one by one but do not go together; the message says what to give."""


def _refusal_status(args: argparse.Namespace) -> int | None:
    """--refuse's status: the option's, else the platform's for a code dropzone knows."""
    if args.refuse is None:
        if args.refuse_status is not None:
            raise CommandUsageError("--refuse-status needs --refuse CODE")
        return None
    if args.refuse_status is not None:
        status: int = args.refuse_status
        return status
    row = errors.known(args.refuse)
    if row is None:
        raise CommandUsageError(
            f"--refuse {args.refuse}: not a code dropzone knows, so its status is unknown; "
            "give it with --refuse-status (say 403)"
        )
    return row.status


def _input_reader_from(args: argparse.Namespace) -> InputReader | None:
    if args.inputs_dir is not None:
        return folder_reader(args.inputs_dir)
    if args.inputs_s3 is not None:
        return s3_reader(args.inputs_s3)
    return None


class _StopServing(Exception):
    """Raised by the SIGTERM/SIGINT handler to leave the serving loop."""


def _stop_serving(signum: int, frame: FrameType | None) -> None:
    del frame
    raise _StopServing(signum)


def command(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or SIGINT; prints one line saying what this is and where it listens."""
    try:
        emulator = _emulator_from(args)
    except CommandUsageError as exc:
        sys.stderr.write(f"dropzone emulator: {exc}\n")
        return 2
    try:
        emulator.start()
    except OSError as exc:
        sys.stderr.write(f"dropzone emulator: {_listen_problem(args.host, args.port, exc)}\n")
        return 2
    # Python runs signal handlers in the main thread whichever thread the signal reached, so
    # raising from the handler ends the wait below even with other threads running.
    previous = {number: signal.signal(number, _stop_serving) for number in STOP_SIGNALS}
    try:
        sys.stdout.write(BANNER.format(url=emulator.url) + "\n")
        sys.stdout.flush()
        while True:
            signal.pause()
    except _StopServing:
        return 0
    finally:
        emulator.stop()
        for number, handler in previous.items():
            signal.signal(number, handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dropzone.ark.emulator",
        description="A local stand-in for the Ark batch inference API, for development and trial.",
    )
    configure_parser(parser)
    return command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
