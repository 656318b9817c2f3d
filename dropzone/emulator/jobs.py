"""The jobs: their lifecycle by a given clock, list filtering, and the book that keeps them.

No clock, randomness or I/O here: ``now`` comes with every call.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from dropzone.ark.models import API_VERSION, Phase
from dropzone.emulator.inputs import (
    UNSEEN,
    InputSeen,
)
from dropzone.emulator.requests import (
    CreateSpec,
    ListQuery,
    Location,
    named_input,
    parse_create,
    parse_list,
    required_text,
)
from dropzone.emulator.wire import (
    CREATE,
    GET,
    GUARD_CODE,
    GUARD_MESSAGE,
    LIST,
    STOP,
    ApiError,
    Json,
    invalid,
    rfc3339,
    unknown_action,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping


CREATED_BY_TAG = "sys:ark:createdBy"


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
        self._results_written: set[str] = set()

    def results_due(self, now: datetime) -> list[JobRecord]:
        """Jobs completed by ``now`` whose result file is not written yet; each is marked as
        written (the caller writes it)."""
        due = [
            job
            for job in self._jobs.values()
            if job.id not in self._results_written and phase_at(job, now).phase is Phase.COMPLETED
        ]
        self._results_written.update(job.id for job in due)
        return due

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
            raise invalid("TagFilters.Values", f"at most {self._max_tag_values} values")
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
        job_id = required_text(body.get("Id"), "Id")
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
        raise unknown_action(action, API_VERSION)
    return Created(handler(owner, body, now), None)
