"""The platform as the second ledger: a version's job found by its tag before it is created.

Every job dropzone creates carries ``dropzone-input`` = a hash of (bucket, key, ETag). Before a
Create, that tag is looked up; a job found is the version's and is adopted instead of making
another, so a ledger lost, restored from a backup, replaced by an empty one or shared by a
second daemon cannot start a second job for a file the platform has already seen.

The look-ups are batched: one List with the tags of up to 100 versions about to be submitted
(the one asked about, then those in ``submitting`` or due that have no answer yet, in the
order workers claim them). An answer "no job" is taken as true for a while; a worker asking
about a version so answered goes straight to its Create. While a backlog lasts, the next batch
is asked for once half of the last one is used, so that no worker waits on a List for its
answer. A platform that refuses a List with that many tag values halves the batch until it
takes it.
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
    from dropzone.ledger import Entry, Version

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


def tag_of(version: Entry | Version) -> str:
    return plan.input_tag(version.bucket, version.key, version.etag)


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
    """Batched, cached look-ups of versions' jobs by tag; safe to share between threads.

    A List is asked outside the lock: the workers whose answers are in hand go on to their
    Creates meanwhile (all of them waited on each List, one stall of every worker per
    batch). While more versions are due than a batch holds, the worker that takes an answer
    with half a batch left asks for the next one, ahead of the others' need."""

    def __init__(
        self,
        *,
        api: TagLookupApi,
        upcoming: Callable[[int, datetime], list[Version]],
        clock: Callable[[], datetime],
    ) -> None:
        """``upcoming``: the oldest entries being submitted or due (``Ledger.upcoming``)."""
        self._api = api
        self._upcoming = upcoming
        self._clock = clock
        self._answers: dict[_Asked, _Answer] = {}
        # Answers served, and when: the versions a worker is creating are still
        # `submitting` and would otherwise be asked about again by the next batch.
        self._served: dict[_Asked, datetime] = {}
        self._batch = MAX_BATCH
        self._more_due = False  # the last batch left due versions unasked
        self._looking = False  # a List is on its way; its answers are awaited, not asked
        # The last look-up's failure, given to the workers waiting meanwhile: each asking
        # again in turn made a silent platform's wait theirs times the time-out.
        self._failure: tuple[datetime, errors.ArkError] | None = None
        self._changed = threading.Condition(threading.Lock())

    def job_for(
        self, entry: Entry, project: str, project_of: Callable[[str], str | None]
    ) -> Job | None:
        """The job the platform holds for this version of this watch, if any; raises
        ArkError when the platform could not say (nothing is known then, and nothing should
        be created). ``project_of``: a watch's Ark project (None for one no longer
        configured), so that a batch asks one project about its own versions only."""
        asked = (project, entry.watch, tag_of(entry))
        with self._changed:
            while (answer := self._take(asked)) is None:
                self._raise_recent_failure()
                if not self._looking:
                    break
                self._changed.wait()
            ahead = answer is not None and self._should_look_ahead()
            self._looking = self._looking or answer is None or ahead
        if answer is not None:
            if ahead:
                self._look_ahead(project, project_of)
            return answer.job
        started = self._clock()
        try:
            found = self._look_up(project, asked, project_of)
        except errors.ArkError as exc:
            with self._changed:
                if self._clock() - started >= SLOW_FAILURE:
                    self._failure = (self._clock(), exc)
                self._done_looking()
            raise
        with self._changed:
            self._failure = None
            self._done_looking()
        return found

    def _take(self, asked: _Asked) -> _Answer | None:
        """The fresh answer for ``asked``, taken: each answer serves one Create."""
        answer = self._answers.pop(asked, None)
        if answer is None or self._clock() - answer.at > ANSWER_STANDS:
            return None
        self._served[asked] = self._clock()
        return answer

    def _should_look_ahead(self) -> bool:
        return self._more_due and not self._looking and len(self._answers) < self._batch // 2

    def _done_looking(self) -> None:
        self._looking = False
        self._changed.notify_all()

    def _raise_recent_failure(self) -> None:
        if self._failure is not None and self._clock() - self._failure[0] <= FAILURE_STANDS:
            raise self._failure[1]

    def _look_ahead(self, project: str, project_of: Callable[[str], str | None]) -> None:
        """The next batch, asked before a worker needs it; a failure is the need's to meet
        (the worker whose version is not answered asks again, and is told)."""
        try:
            self._look_up(project, None, project_of)
        except errors.ArkError:
            pass
        finally:
            with self._changed:
                self._done_looking()

    def _look_up(
        self, project: str, asked: _Asked | None, project_of: Callable[[str], str | None]
    ) -> Job | None:
        """One List for ``asked`` (when given) and the next versions due in ``project``;
        their answers stored, ``asked``'s taken and returned."""
        window = self._batch * 2
        due = self._upcoming(window, self._clock())
        while True:
            batch = self._batch_with(asked, project, due, project_of, window)
            if not batch:
                return None
            tags = list(dict.fromkeys(tag for _, _, tag in batch))
            try:
                found = self._api.find_by_tags(plan.INPUT_TAG_KEY, tags, project)
            except errors.Rejected:
                if self._batch == 1:
                    raise
                with self._changed:
                    self._batch = max(1, self._batch // 2)
                continue
            now = self._clock()
            answers = {
                one: _Answer(prior_job(of_watch(found.get(one[2], ()), one[1])), now)
                for one in batch
            }
            with self._changed:
                self._forget_stale(now)
                self._answers.update(answers)
                if asked is not None:
                    del self._answers[asked]
                    self._served[asked] = now
            return answers[asked].job if asked is not None else None

    def _batch_with(
        self,
        asked: _Asked | None,
        project: str,
        due: list[Version],
        project_of: Callable[[str], str | None],
        window: int,
    ) -> list[_Asked]:
        batch = {} if asked is None else {asked: None}
        with self._changed:
            limit = self._batch
            unasked = 0
            for entry in due if limit > 1 or asked is None else ():
                one = (project, entry.watch, tag_of(entry))
                if one in batch or one in self._answers or one in self._served:
                    continue
                if project_of(entry.watch) != project:
                    continue
                unasked += 1
                if len(batch) < limit:
                    batch[one] = None
            # A full window may have more due beyond it.
            self._more_due = len(due) >= window or unasked > len(batch) - (asked is not None)
        return list(batch)

    def _forget_stale(self, now: datetime) -> None:
        for held in (self._answers, self._served):
            stale = [key for key, value in held.items() if now - _at(value) > ANSWER_STANDS]
            for key in stale:
                del held[key]


def _at(value: _Answer | datetime) -> datetime:
    return value.at if isinstance(value, _Answer) else value
