"""The platform as the second ledger: a version's job found by its tag before it is created.

Every job dropzone creates carries ``dropzone-input`` = a hash of (bucket, key, ETag). Before a
Create, that tag is looked up; a job found is the version's and is adopted instead of making
another, so a ledger lost, restored from a backup, replaced by an empty one or shared by a
second daemon cannot start a second job for a file the platform has already seen.

The look-ups are batched: one List with the tags of up to 100 versions about to be submitted
(the one asked about, those other workers are submitting, and the oldest due ones, the order
workers claim them in). An answer
"no job" is taken as true for a while; a worker asking about a version so answered goes
straight to its Create. A platform that refuses a List with that many tag values halves the
batch until it takes it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from dropzone import plan
from dropzone.ark import errors

if TYPE_CHECKING:
    from collections.abc import Callable, Collection

    from dropzone.ark.models import Job
    from dropzone.ledger import Entry

MAX_BATCH = 100
# How long "no job carries this tag" stands: long enough for the workers to reach the batch's
# versions, short enough that a look-up is never much older than its Create. A job made in
# between by another daemon is still active, and the guard answers for it.
ANSWER_STANDS = timedelta(seconds=60)
# A look-up that failed after this long (a time-out: the platform is silent or slow) is the
# answer for the versions waiting on it for a while; a quick refusal (429) is each one's own,
# or one throttled answer would push every waiting version's backoff up at once.
SLOW_FAILURE = timedelta(seconds=1)
FAILURE_STANDS = timedelta(seconds=5)


class TagLookupApi(Protocol):
    def find_by_tags(
        self, key: str, values: Collection[str], project_name: str | None
    ) -> dict[str, list[Job]]: ...


def tag_of(entry: Entry) -> str:
    return plan.input_tag(entry.bucket, entry.key, entry.etag)


def created_order(job: Job) -> str:
    # RFC 3339 UTC times sort as text; a job without one sorts first (oldest).
    return job.create_time or ""


def prior_job(jobs: Collection[Job]) -> Job | None:
    """The job a version already has: an active one, else the newest (any phase: a job that
    ran, or failed, on this content is its job; running it again is the operator's call)."""
    if not jobs:
        return None
    active = [job for job in jobs if job.phase.is_active]
    return max(active or jobs, key=created_order)


@dataclass(frozen=True)
class _Answer:
    job: Job | None
    at: datetime


# An answer is for one version of one watch in one project: two watches on one prefix (two
# models, say) each have their own job of the same version, and must not adopt the other's.
_Asked = tuple[str, str, str]  # (project, watch, input tag)


def of_watch(jobs: Collection[Job], watch: str) -> list[Job]:
    return [job for job in jobs if job.tag(plan.WATCH_TAG_KEY) == watch]


class PriorJobs:
    """Batched, cached look-ups of versions' jobs by tag; safe to share between threads."""

    def __init__(
        self,
        *,
        api: TagLookupApi,
        upcoming: Callable[[int, datetime], list[Entry]],
        clock: Callable[[], datetime],
    ) -> None:
        """``upcoming``: the oldest entries being submitted or due (``Ledger.upcoming``)."""
        self._api = api
        self._upcoming = upcoming
        self._clock = clock
        self._answers: dict[_Asked, _Answer] = {}
        self._batch = MAX_BATCH
        # The last look-up's failure, given to the workers waiting meanwhile: each asking
        # again in turn made a silent platform's wait theirs times the time-out.
        self._failure: tuple[datetime, errors.ArkError] | None = None
        self._lock = threading.Lock()

    def job_for(
        self, entry: Entry, project: str, project_of: Callable[[str], str | None]
    ) -> Job | None:
        """The job the platform holds for this version of this watch, if any; raises
        ArkError when the platform could not say (nothing is known then, and nothing should
        be created). ``project_of``: a watch's Ark project (None for one no longer
        configured), so that a batch asks one project about its own versions only."""
        asked = (project, entry.watch, tag_of(entry))
        with self._lock:
            answer = self._fresh_answer(asked)
            if answer is None:
                self._raise_recent_failure()
                started = self._clock()
                try:
                    answer = self._look_up(asked, project_of)
                except errors.ArkError as exc:
                    if self._clock() - started >= SLOW_FAILURE:
                        self._failure = (self._clock(), exc)
                    raise
                self._failure = None
            del self._answers[asked]  # each answer serves one Create
            return answer.job

    def _raise_recent_failure(self) -> None:
        if self._failure is not None and self._clock() - self._failure[0] <= FAILURE_STANDS:
            raise self._failure[1]

    def _fresh_answer(self, asked: _Asked) -> _Answer | None:
        answer = self._answers.get(asked)
        if answer is None or self._clock() - answer.at > ANSWER_STANDS:
            return None
        return answer

    def _look_up(self, asked: _Asked, project_of: Callable[[str], str | None]) -> _Answer:
        project = asked[0]
        while True:
            batch = self._batch_with(asked, project_of)
            tags = list(dict.fromkeys(tag for _, _, tag in batch))
            try:
                found = self._api.find_by_tags(plan.INPUT_TAG_KEY, tags, project)
            except errors.Rejected:
                if self._batch == 1:
                    raise
                self._batch = max(1, self._batch // 2)
                continue
            now = self._clock()
            self._forget_stale(now)
            for one in batch:
                jobs = of_watch(found.get(one[2], ()), one[1])
                self._answers[one] = _Answer(prior_job(jobs), now)
            return self._answers[asked]

    def _batch_with(self, asked: _Asked, project_of: Callable[[str], str | None]) -> list[_Asked]:
        batch = {asked: None}
        if self._batch > 1:
            for entry in self._upcoming(self._batch * 2, self._clock()):
                if len(batch) >= self._batch:
                    break
                if project_of(entry.watch) == asked[0]:
                    batch.setdefault((asked[0], entry.watch, tag_of(entry)), None)
        return list(batch)

    def _forget_stale(self, now: datetime) -> None:
        stale = [key for key, answer in self._answers.items() if now - answer.at > ANSWER_STANDS]
        for key in stale:
            del self._answers[key]
